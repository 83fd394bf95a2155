"""``shipyard login``, ``logout`` and ``whoami``."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from shipyard.cli._common import JsonOption, emit_one, err, session
from shipyard.sdk import Profile, Session, delete_profile, save_profile


def login(
    url: Annotated[str, typer.Option(help="The server, e.g. http://127.0.0.1:8080")],
    api_key: Annotated[
        str | None,
        typer.Option(help="An API key (or use --username); default: $SHIPYARD_API_KEY"),
    ] = None,
    username: Annotated[str | None, typer.Option(help="Log in with a password instead")] = None,
    password: Annotated[
        str | None,
        typer.Option(help="The password (prompted when omitted)", envvar="SHIPYARD_PASSWORD"),
    ] = None,
    profile: Annotated[str | None, typer.Option(help="Save under this profile name")] = None,
) -> None:
    """Check credentials against the server and save them as a profile (file mode 0600)."""
    if api_key is None and username is None:
        # Read here, not as the option's envvar: an exported key must not block --username.
        api_key = os.environ.get("SHIPYARD_API_KEY") or None
    if (api_key is None) == (username is None):
        raise typer.BadParameter("give exactly one of --api-key or --username")
    if username is not None:
        secret = password or typer.prompt("Password", hide_input=True)
        client = Session.login(url, username, secret)
    else:
        client = Session.from_profile(Profile(url=url, api_key=api_key))
    with client:
        me = client.whoami()
    path = save_profile(client.profile, profile)
    err.print(f"Logged in to {url} as [bold]{me['username']}[/]; profile saved in {path}")


def logout(
    profile: Annotated[str | None, typer.Option(help="The profile to forget")] = None,
) -> None:
    """Forget the saved credentials of a profile."""
    name = profile or "the current profile"
    if delete_profile(profile):
        err.print(f"Forgot {name}")
    else:
        err.print(f"No saved credentials for {name}")


def whoami(as_json: JsonOption = False) -> None:
    """Who the current credentials belong to, and their role in each team."""
    with session() as client:
        emit_one(client.whoami(), as_json)


def register(app: typer.Typer) -> None:
    app.command()(login)
    app.command()(logout)
    app.command()(whoami)
