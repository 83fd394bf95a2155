"""``shipyard models``: the model registry — groups, versions, approval, cards, the dashboard.

Text a registrant typed (descriptions, comments, card text) is printed as text, never as Rich
markup, so ``[bold]`` in a description reaches the terminal unchanged.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli import endpoints
from shipyard.cli._common import JsonOption, err, out, parse_tags, print_json, session
from shipyard.cli.jobs import ProjectOption
from shipyard.sdk import ModelVersion

models = typer.Typer(
    help="The model registry: groups, versions, scanning, four-eyes approval, model cards.",
    no_args_is_help=True,
)
GroupArg = Annotated[str, typer.Argument(help="The model group's name")]
VersionArg = Annotated[int, typer.Argument(min=1, help="A version number")]
GROUP_COLUMNS = ("name", "last_version", "description", "created_by", "created_at")
VERSION_COLUMNS = ("version", "status", "flavor", "scan", "source", "registered_by", "decided_by")
RISK_RATINGS = ("unknown", "low", "medium", "high")


def _text(value: Any) -> str:
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_number(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _number(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def _lines(view: dict[str, Any]) -> None:
    for key, value in view.items():
        out.print(f"[bold]{key}[/]: {escape(_text(value))}", highlight=False)


def _table(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    table = Table(*columns, show_edge=False, pad_edge=False, header_style="bold")
    for row in rows:
        table.add_row(*(escape(_text(row.get(c))) for c in columns))
    out.print(table, highlight=False)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)}"


def scan_summary(scan: dict[str, Any]) -> str:
    """``clean (1 file scanned)``, ``nothing dangerous, 1 finding to review (…)`` or
    ``DANGEROUS: 2 findings (…)``."""
    findings = len(scan.get("findings") or [])
    files = f"({_count(int(scan.get('scanned_files', 0)), 'file')} scanned)"
    if scan.get("dangerous"):
        return f"DANGEROUS: {_count(findings, 'finding')} {files}"
    if findings:
        return f"nothing dangerous, {_count(findings, 'finding')} to review {files}"
    return f"clean {files}"


def source_of(version: ModelVersion) -> str:
    if version.job_name:
        return f"job:{version.job_name}"
    if version.run_id:
        return f"run:{version.run_id}"
    return f"{version.artifact_path}@{version.artifact_version}"


def version_view(v: ModelVersion) -> dict[str, Any]:
    """What ``show`` prints for a person: the state first, then where it came from."""
    datasets = [
        f"{d['dataset']} v{d['version']}" + (f" ({d['context']})" if d.get("context") else "")
        for d in v.dataset_versions
    ]
    return {
        "group": v.group,
        "version": v.version,
        "status": v.status,
        "scan": scan_summary(v.scan),
        "flavor": v.flavor,
        "artifact": f"{v.artifact_path}@{v.artifact_version}",
        "manifest_digest": v.manifest_digest,
        "job": v.job_name,
        "run": v.run_id,
        "datasets": datasets,
        "metrics": v.metrics,
        "description": v.description,
        "registered_by": v.registered_by,
        "created_at": v.created_at.isoformat(timespec="seconds") if v.created_at else None,
        "decided_by": v.decided_by,
        "decided_at": v.decided_at.isoformat(timespec="seconds") if v.decided_at else None,
        "comment": v.decision_comment,
    }


def emit_version(v: ModelVersion, as_json: bool) -> None:
    if as_json:
        print_json(v.as_dict())
        return
    _lines(version_view(v))
    findings = v.scan.get("findings") or []
    if findings:
        out.print("[bold]findings[/]:", highlight=False)
        _table(("severity", "path", "kind", "detail"), findings)


# --- groups ----------------------------------------------------------------------------------


@models.command("create")
def create(
    group: GroupArg,
    project: ProjectOption,
    description: Annotated[str, typer.Option(help="What the model is for")] = "",
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE (repeatable)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a model group: the versions of one model, numbered 1, 2, 3…"""
    tags = parse_tags(tag or [])
    with session() as client:
        created = client.models(project).create_group(group, description=description, tags=tags)
    if as_json:
        print_json(created)
        return
    err.print(f"Created model group {escape(group)}", highlight=False)


@models.command("ls")
def ls(
    project: ProjectOption,
    group: Annotated[
        str | None, typer.Argument(help="A group: list its versions instead", show_default=False)
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the project's model groups, or with GROUP its versions (newest first)."""
    with session() as client:
        registry = client.models(project)
        if group is None:
            groups = registry.groups()
            if as_json:
                print_json(groups)
            else:
                _table(GROUP_COLUMNS, groups)
            return
        found = registry.versions(group)
    if as_json:
        print_json([v.as_dict() for v in found])
        return
    rows = [{**v.as_dict(), "scan": scan_summary(v.scan), "source": source_of(v)} for v in found]
    _table(VERSION_COLUMNS, rows)


# --- versions --------------------------------------------------------------------------------


def _example(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(
            f"{path}: not a JSON file ({exc})", param_hint="--example-file"
        ) from exc


@models.command("register")
def register_version(
    group: GroupArg,
    project: ProjectOption,
    job: Annotated[str | None, typer.Option(help="A completed training job")] = None,
    run_id: Annotated[
        str | None, typer.Option(help="A run; --path is then a file among its artifacts")
    ] = None,
    path: Annotated[str | None, typer.Option(help="An artifact path (or a run's file)")] = None,
    artifact_version: Annotated[
        int | None, typer.Option(min=1, help="The artifact's version (default: the latest)")
    ] = None,
    flavor: Annotated[
        str, typer.Option(help="sklearn, xgboost, pytorch, onnx or custom")
    ] = "sklearn",
    example_file: Annotated[
        Path | None, typer.Option(help="A JSON file with an example input", dir_okay=False)
    ] = None,
    description: Annotated[str, typer.Option(help="What changed in this version")] = "",
    create_group: Annotated[
        bool, typer.Option("--create-group", help="Create the group if it does not exist")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Register the next version from a job, a run's file or an artifact.

    Give --job NAME (a completed training job), --run-id ID --path FILE (a file among the
    run's artifacts) or --path PATH (an artifact). The version is scanned, then waits for
    approval (or is Blocked when the scan found something dangerous).

    Example: shipyard models register churn -p ml/churn --path models/churn/model.pkl
    """
    if (job is None) == (path is None):
        raise typer.BadParameter("give --job NAME, or --path PATH (with --run-id for a run's file)")
    if run_id is not None and path is None:
        raise typer.BadParameter("--run-id needs --path: a file among the run's artifacts")
    with session() as client:
        version = client.models(project).register(
            group,
            job=job,
            run_id=run_id,
            artifact_path=path,
            artifact_version=artifact_version,
            flavor=flavor,
            example=_example(example_file),
            description=description,
            create_group=create_group,
        )
    emit_version(version, as_json)


@models.command("show")
def show(
    group: GroupArg, version: VersionArg, project: ProjectOption, as_json: JsonOption = False
) -> None:
    """Show a version: status, scan result and findings, lineage, metrics, decision."""
    with session() as client:
        emit_version(client.models(project).version(group, version), as_json)


@models.command("approve")
def approve(
    group: GroupArg,
    version: VersionArg,
    project: ProjectOption,
    comment: Annotated[str, typer.Option(help="What was reviewed")] = "",
    as_json: JsonOption = False,
) -> None:
    """Approve a pending version (a lead or admin other than its registrant)."""
    with session() as client:
        emit_version(client.models(project).approve(group, version, comment), as_json)


@models.command("reject")
def reject(
    group: GroupArg,
    version: VersionArg,
    project: ProjectOption,
    comment: Annotated[str, typer.Option(help="Why it is rejected (required)")],
    as_json: JsonOption = False,
) -> None:
    """Reject a pending version, saying why (a lead or admin other than its registrant)."""
    with session() as client:
        emit_version(client.models(project).reject(group, version, comment), as_json)


@models.command("delete")
def delete(
    group: GroupArg, version: VersionArg, project: ProjectOption, as_json: JsonOption = False
) -> None:
    """Delete a version; its number is never handed out again."""
    with session() as client:
        client.models(project).delete(group, version)
    if as_json:
        print_json({"group": group, "version": version, "deleted": True})
        return
    err.print(f"Deleted {escape(group)} v{version}", highlight=False)


@models.command("verify")
def verify(
    group: GroupArg, version: VersionArg, project: ProjectOption, as_json: JsonOption = False
) -> None:
    """Re-hash the stored files; exit 1 naming every file that changed since registration."""
    with session() as client:
        result = client.models(project).verify(group, version)
    if as_json:
        print_json(result)
        return
    out.print(
        f"verified: {escape(group)} v{version}, {result['files']} file(s) match manifest "
        f"{result['manifest_digest']}",
        highlight=False,
    )


# --- model cards -----------------------------------------------------------------------------

CARD_ORDER = (
    "group",
    "version",
    "revision",
    "frozen",
    "risk_rating",
    "intended_use",
    "training_data",
    "evaluation_results",
    "evaluation_notes",
    "ethical_considerations",
    "caveats",
    "updated_by",
    "created_at",
)


def emit_card(card: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(card)
        return
    _lines({key: card.get(key) for key in CARD_ORDER})


@models.command("card")
def card(
    group: GroupArg,
    version: VersionArg,
    project: ProjectOption,
    revision: Annotated[
        int | None, typer.Option(min=1, help="A revision (default: the newest)")
    ] = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print it as Markdown")] = False,
    html_out: Annotated[
        Path | None, typer.Option(help="Write it as a standalone HTML page to this file")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a version's model card (or print it as Markdown, or write it as HTML)."""
    if markdown and html_out is not None:
        raise typer.BadParameter("give --markdown or --html-out, not both")
    with session() as client:
        registry = client.models(project)
        if markdown:
            sys.stdout.write(registry.card_markdown(group, version, revision))
            return
        if html_out is not None:
            html_out.write_text(registry.card_html(group, version, revision))
            err.print(f"Wrote the card of {escape(group)} v{version} to {html_out}")
            return
        emit_card(registry.card(group, version, revision), as_json)


@models.command("card-edit")
def card_edit(
    group: GroupArg,
    version: VersionArg,
    project: ProjectOption,
    intended_use: Annotated[str | None, typer.Option(help="What it is (not) for")] = None,
    risk_rating: Annotated[str | None, typer.Option(help="unknown, low, medium or high")] = None,
    training_data: Annotated[str | None, typer.Option(help="What it learned from")] = None,
    evaluation_notes: Annotated[str | None, typer.Option(help="How it was evaluated")] = None,
    ethical_considerations: Annotated[
        str | None, typer.Option(help="Who could be harmed, and how")
    ] = None,
    caveats: Annotated[str | None, typer.Option(help="Limits and recommendations")] = None,
    base_revision: Annotated[
        int | None, typer.Option(min=1, help="Refuse the edit if the card moved past this")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Edit the card of a pending version: a new revision; fields not given stay as they are."""
    if risk_rating is not None and risk_rating not in RISK_RATINGS:
        raise typer.BadParameter(", ".join(RISK_RATINGS), param_hint="--risk-rating")
    fields = {
        "intended_use": intended_use,
        "risk_rating": risk_rating,
        "training_data": training_data,
        "evaluation_notes": evaluation_notes,
        "ethical_considerations": ethical_considerations,
        "caveats": caveats,
        "base_revision": base_revision,
    }
    if all(value is None for value in fields.values()):
        raise typer.BadParameter("nothing to change: give at least one field, e.g. --caveats")
    with session() as client:
        emit_card(client.models(project).edit_card(group, version, **fields), as_json)


# --- the dashboard ---------------------------------------------------------------------------

DASHBOARD_COLUMNS = ("group", "last", "approved", "pending", "newest versions")


def dashboard_rows(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for g in groups:
        newest = "; ".join(
            f"v{v['version']} {v['status']}" + (" DANGEROUS" if v["scan"] == "dangerous" else "")
            for v in g["versions"]
        )
        rows.append(
            {
                "group": g["name"],
                "last": g["last_version"],
                "approved": g["latest_approved"],
                "pending": g["pending"],
                "newest versions": newest,
            }
        )
    return rows


@models.command("dashboard")
def dashboard(project: ProjectOption, as_json: JsonOption = False) -> None:
    """Every group's newest versions with their approval and scan state."""
    with session() as client:
        groups = client.models(project).dashboard()
    if as_json:
        print_json(groups)
        return
    _table(DASHBOARD_COLUMNS, dashboard_rows(groups))


# --- promotion (the hosting tier's; see cli/endpoints.py) --------------------------------------

models.command("promote")(endpoints.promote)
models.command("promotions")(endpoints.promotions)


def register(app: typer.Typer) -> None:
    app.add_typer(models, name="models")
