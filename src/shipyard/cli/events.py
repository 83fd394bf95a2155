"""``shipyard events`` and ``shipyard webhooks``: the event log, webhooks and their deliveries,
and the admin's webhook allow-list.

Text from the server that users typed or receivers answered (URLs, descriptions, delivery
errors) is printed as text, never as Rich markup.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli._common import JsonOption, err, out, print_json, session
from shipyard.cli.jobs import ProjectOption

events = typer.Typer(
    help="The project's event log: every state change, oldest first.", no_args_is_help=True
)
webhooks = typer.Typer(
    help="Webhooks: the project's events, signed, POSTed to a URL of yours.",
    no_args_is_help=True,
)
allowlist = typer.Typer(
    help="Hosts and ranges webhooks may target although they are not public (platform admins)."
)
HookArg = Annotated[str, typer.Argument(help="The webhook's id")]
EVENT_COLUMNS = ("id", "type", "subject", "actor", "created_at")
HOOK_COLUMNS = ("id", "url", "event_types", "description", "created_by", "created_at")
DELIVERY_COLUMNS = ("id", "event type", "state", "attempts", "last status", "last error")


def _text(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _table(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    table = Table(*columns, show_edge=False, pad_edge=False, header_style="bold")
    for row in rows:
        table.add_row(*(escape(_text(row.get(c))) for c in columns))
    out.print(table, highlight=False)


def _lines(view: dict[str, Any]) -> None:
    for key, value in view.items():
        out.print(f"[bold]{key}[/]: {escape(_text(value))}", highlight=False)


def _hook_view(hook: dict[str, Any]) -> dict[str, Any]:
    """A webhook for a person: every event when it names no type."""
    return {**hook, "event_types": hook["event_types"] or "every event"}


# --- events ----------------------------------------------------------------------------------


@events.command("ls")
def list_events(
    project: ProjectOption,
    type_: Annotated[
        str | None,
        typer.Option("--type", help="An exact type or a prefix wildcard like 'job.*'"),
    ] = None,
    after: Annotated[
        str | None, typer.Option(help="Start after this event id (the last one you saw)")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List the project's events, oldest first; page with --after the last id shown.

    Example: shipyard events ls -p ml/churn --type 'model.version.*'
    """
    with session() as client:
        found = client.events(project).list(type=type_, after=after, limit=limit)
    if as_json:
        print_json(found)
        return
    _table(EVENT_COLUMNS, found)
    if len(found) == limit:
        err.print(f"[dim]more may follow: --after {found[-1]['id']}[/]", highlight=False)


# --- webhooks --------------------------------------------------------------------------------


@webhooks.command("create")
def create(
    url: Annotated[str, typer.Argument(help="The receiver's http(s) URL")],
    project: ProjectOption,
    event_type: Annotated[
        list[str] | None,
        typer.Option(
            "--event-type",
            "-t",
            help="An exact type or a prefix wildcard like 'job.*' (repeatable; default: all)",
            show_default=False,
        ),
    ] = None,
    description: Annotated[str, typer.Option(help="What receives it, for whom")] = "",
    as_json: JsonOption = False,
) -> None:
    """Subscribe URL to the project's events; prints the signing secret, this once.

    Example: shipyard webhooks create https://hooks.example.com/shipyard -t 'job.*'
    """
    with session() as client:
        hook = client.events(project).create_webhook(
            url, event_types=event_type or [], description=description
        )
    if as_json:
        print_json(hook)
    else:
        _lines(_hook_view(hook))
    err.print(
        "[yellow]Store the secret now: it is not shown again. Receivers check each request's "
        "X-Shipyard-Signature with it (docs/events.md).[/]",
        highlight=False,
    )


@webhooks.command("ls")
def list_hooks(project: ProjectOption, as_json: JsonOption = False) -> None:
    """List the project's webhooks (never their secrets)."""
    with session() as client:
        found = client.events(project).webhooks()
    if as_json:
        print_json(found)
        return
    _table(HOOK_COLUMNS, [_hook_view(hook) for hook in found])


@webhooks.command("show")
def show(hook_id: HookArg, project: ProjectOption, as_json: JsonOption = False) -> None:
    """Show a webhook: its URL, event types, who made it."""
    with session() as client:
        hook = client.events(project).webhook(hook_id)
    if as_json:
        print_json(hook)
        return
    _lines(_hook_view(hook))


@webhooks.command("rm")
def remove(hook_id: HookArg, project: ProjectOption, as_json: JsonOption = False) -> None:
    """Stop delivering to a webhook; its pending deliveries end Failed."""
    with session() as client:
        client.events(project).delete_webhook(hook_id)
    if as_json:
        print_json({"id": hook_id, "deleted": True})
        return
    err.print(f"Deleted webhook {escape(hook_id)}", highlight=False)


def delivery_rows(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": d["id"],
            "event type": d["event_type"],
            "state": d["state"],
            "attempts": d["attempts"],
            "last status": d["last_status_code"],
            "last error": d["last_error"],
        }
        for d in found
    ]


@webhooks.command("deliveries")
def deliveries(
    hook_id: HookArg,
    project: ProjectOption,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List a webhook's deliveries, newest first (--json adds every attempt)."""
    with session() as client:
        found = client.events(project).deliveries(hook_id, limit=limit)
    if as_json:
        print_json(found)
        return
    _table(DELIVERY_COLUMNS, delivery_rows(found))


@webhooks.command("ping")
def ping(hook_id: HookArg, project: ProjectOption, as_json: JsonOption = False) -> None:
    """Send a webhook.ping event to this webhook alone, to test its receiver."""
    with session() as client:
        sent = client.events(project).ping(hook_id)
    if as_json:
        print_json(sent)
        return
    out.print(f"delivery: {sent['delivery_id']}\nevent: {sent['event_id']}", highlight=False)
    err.print(
        f"[dim]follow it with: shipyard webhooks deliveries {escape(hook_id)}[/]",
        highlight=False,
    )


# --- the allow-list --------------------------------------------------------------------------


def _emit_entries(entries: list[str], as_json: bool) -> None:
    if as_json:
        print_json({"entries": entries})
        return
    if not entries:
        err.print("[dim]the allow-list is empty: only public addresses are allowed[/]")
    for entry in entries:
        out.print(escape(entry), highlight=False)


@allowlist.callback(invoke_without_command=True)
def show_allowlist(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the allow-list, one entry a line (platform admins)."""
    if ctx.invoked_subcommand is not None:
        return
    with session() as client:
        _emit_entries(client.webhook_allowlist(), as_json)


@allowlist.command("set")
def set_allowlist(
    entries: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ENTRY",
            help="Exact host names, IP addresses or CIDR ranges",
            show_default=False,
        ),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Empty the allow-list")] = False,
    as_json: JsonOption = False,
) -> None:
    """Replace the whole allow-list with ENTRY... (or empty it with --clear).

    Example: shipyard webhooks allowlist set 10.20.0.0/16 hooks.internal
    """
    if entries and clear:
        raise typer.BadParameter("give the entries or --clear, not both")
    if not entries and not clear:
        raise typer.BadParameter("give the entries, or --clear to empty the list")
    with session() as client:
        _emit_entries(client.set_webhook_allowlist(entries or []), as_json)


def register(app: typer.Typer) -> None:
    webhooks.add_typer(allowlist, name="allowlist")
    app.add_typer(events, name="events")
    app.add_typer(webhooks, name="webhooks")
