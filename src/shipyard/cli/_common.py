"""What every command group shares: the session, output (tables or ``--json``), progress."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from shipyard.sdk import ConfigurationError, Profile, Session, load_profile

# Piped output gets wide tables rather than Rich's 80-column default, so rows stay on one line.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)
err = Console(stderr=True, soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _local_admin_profile() -> Profile | None:
    """On the machine that runs ``shipyard up``, its admin credentials file is a last resort."""
    from shipyard.config import Settings  # the server's own idea of where its home is

    creds = Settings().credentials_path
    try:
        data = json.loads(creds.read_text())
        return Profile(url=data["url"], api_key=data["api_key"], username=data.get("username"))
    except (OSError, ValueError, KeyError):
        return None


def session() -> Session:
    """The session of the current profile, env vars, or the local admin credentials."""
    try:
        return Session()
    except ConfigurationError:
        if load_profile() is not None:
            raise
        local = _local_admin_profile()
        if local is None:
            raise
        err.print(f"[dim]using the local admin credentials of {local.url}[/]")
        return Session.from_profile(local)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def emit(rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    """Rows as JSON (every field) or as a table of ``columns``."""
    if as_json:
        print_json(list(rows))
        return
    table = Table(*columns, show_edge=False, pad_edge=False, header_style="bold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    out.print(table)


def emit_one(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(row)
        return
    for key, value in row.items():
        out.print(f"[bold]{key}[/]: {_cell(value)}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def parse_tags(pairs: Sequence[str]) -> dict[str, str]:
    """``["K=V", ...]`` → ``{"K": "V"}``; a pair without ``=`` is a usage error."""
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"tags are KEY=VALUE, got {pair!r}", param_hint="--tag")
        tags[key] = value
    return tags


@contextmanager
def transfer_progress(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A Rich progress bar on a terminal; nothing when output is piped or captured."""
    if not err.is_terminal:
        yield None
        return
    columns = (
        "{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update
