"""The ``shipyard`` command: one Typer app, one module per command group.

Errors from the SDK end a command with one clear line on stderr and a non-zero exit, never a
traceback: 1 for an error the server reported, 2 for a usage or configuration error, 3 when
the server could not be reached.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from shipyard import __version__
from shipyard.cli import (
    artifacts,
    audit,
    auth,
    datasets,
    endpoints,
    events,
    gateway,
    identity,
    jobs,
    keys,
    lineage,
    models,
    monitors,
    tracking,
    transform,
    up,
)
from shipyard.sdk import APIError, ConfigurationError, ShipyardError, TransportError

_SETTINGS: dict[str, Any] = {
    "name": "shipyard",
    "no_args_is_help": True,
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "help": "Shipyard: a self-hosted ML platform.",
}
app = typer.Typer(**_SETTINGS)


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"shipyard {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Shipyard: a self-hosted ML platform."""


for group in (
    up,
    gateway,
    auth,
    identity,
    keys,
    artifacts,
    tracking,
    datasets,
    jobs,
    models,
    endpoints,
    transform,
    monitors,
    lineage,
    events,
    audit,
):
    group.register(app)


def _describe(exc: ShipyardError) -> tuple[str, int]:
    if isinstance(exc, APIError):
        where = f" [field: {exc.field}]" if exc.field else ""
        ref = f" (request {exc.request_id})" if exc.request_id else ""
        return f"error: {exc.message}{where} — {exc.status} {exc.code}{ref}", 1
    if isinstance(exc, ConfigurationError):
        return f"error: {exc}", 2
    if isinstance(exc, TransportError):
        return f"error: {exc}", 3
    return f"error: {exc}", 1


def invoked(argv: list[str]) -> typer.Typer:
    """The app to run for ``argv``: only the group (or command) it names, when it names one.

    Typer turns every command of an app into a Click command before it parses anything: for
    the whole CLI that is a tenth of a second of every call, for a group a few milliseconds.
    ``shipyard --help`` (no name), an option first or an unknown name get the whole app, so
    listings and "no such command" hints stay as they are.
    """
    name = argv[0] if argv and not argv[0].startswith("-") else None
    groups = [g for g in app.registered_groups if g.name == name]
    commands = [c for c in app.registered_commands if _command_name(c) == name]
    if name is None or not (groups or commands):
        return app
    narrow = typer.Typer(**_SETTINGS)
    narrow.registered_callback = app.registered_callback
    narrow.registered_groups = groups
    narrow.registered_commands = commands
    return narrow


def _command_name(info: typer.models.CommandInfo) -> str | None:
    if info.name:
        return info.name
    callback = info.callback
    return callback.__name__.replace("_", "-") if callback is not None else None


def main() -> None:
    try:
        invoked(sys.argv[1:])(prog_name="shipyard")
    except ShipyardError as exc:
        message, code = _describe(exc)
        sys.stderr.write(message + "\n")
        sys.exit(code)
    except (ValueError, FileNotFoundError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
