"""``shipyard audit``: read and verify the hash-chained, signed audit trail."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli._common import JsonOption, emit, err, out, print_json, session

audit = typer.Typer(help="The append-only, hash-chained audit trail.", no_args_is_help=True)
TAIL_COLUMNS = ("seq", "at", "actor", "action", "resource", "outcome", "status_code", "client")


@audit.command("tail")
def tail(
    n: Annotated[int, typer.Option("-n", help="How many of the newest entries")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Print the newest audit entries, oldest first."""
    with session() as client:
        rows = client.audit_tail(n)
    emit(sorted(rows, key=lambda r: int(r["seq"])), TAIL_COLUMNS, as_json)


@audit.command("verify")
def verify(
    home: Annotated[
        Path | None,
        typer.Option(help="Check the database of this home directly, without a server"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Exit 0 when the chain and signatures hold; exit 1 naming the first bad entry."""
    if home is not None:
        from shipyard.bootstrap import verify_audit_offline

        result: dict[str, Any] = verify_audit_offline(home.expanduser().resolve())
    else:
        with session() as client:
            result = client.audit_verify()
    if as_json:
        print_json(result)
    elif result["ok"]:
        out.print(
            f"[green]audit trail intact[/]: {result['checked']} entries, "
            f"{result['digests']} signed digests"
        )
    else:
        err.print(
            f"[red]audit trail broken at entry {result['first_bad_seq']}[/]: {result['reason']}"
        )
    raise typer.Exit(0 if result["ok"] else 1)


def register(app: typer.Typer) -> None:
    app.add_typer(audit, name="audit")
