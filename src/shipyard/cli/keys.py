"""``shipyard keys``: API keys for automation, and master-key rotation."""

from __future__ import annotations

from typing import Annotated

import typer

from shipyard.cli._common import JsonOption, emit, emit_one, err, session

keys = typer.Typer(help="API keys: scoped, expiring, revocable.", no_args_is_help=True)
KEY_COLUMNS = ("key_id", "name", "username", "scope", "role", "expires_at", "revoked_at")


@keys.command("create")
def create_key(
    role: Annotated[str, typer.Option(help="No higher than your own role in the scope")],
    team: Annotated[str | None, typer.Option(help="Scope the key to a team")] = None,
    project: Annotated[str | None, typer.Option(help="Scope the key to TEAM/PROJECT")] = None,
    name: Annotated[str, typer.Option(help="A label to recognise the key by")] = "",
    expires_in_days: Annotated[int | None, typer.Option(help="Default: 90 days")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key; its secret is shown once, now."""
    if (team is None) == (project is None):
        raise typer.BadParameter("give exactly one of --team or --project")
    with session() as client:
        created = client.create_key(
            role=role, team=team, project=project, name=name, expires_in_days=expires_in_days
        )
    if as_json:
        emit_one(created, True)
        return
    emit_one({k: v for k, v in created.items() if k != "secret_access_key"}, False)
    err.print("[yellow]Store the api_key now: it is not shown again.[/]")


@keys.command("ls")
def list_keys(as_json: JsonOption = False) -> None:
    """List your API keys (every key for platform admins)."""
    with session() as client:
        emit(client.list_keys(), KEY_COLUMNS, as_json)


@keys.command("revoke")
def revoke_key(key_id: str, as_json: JsonOption = False) -> None:
    """Revoke an API key; it stops working at once."""
    with session() as client:
        emit_one(client.revoke_key(key_id), as_json)


@keys.command("rotate-master")
def rotate_master(as_json: JsonOption = False) -> None:
    """Re-wrap every data key under a new master key; no data is re-encrypted."""
    with session() as client:
        emit_one(client.rotate_master_key(), as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(keys, name="keys")
