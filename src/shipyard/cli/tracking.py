"""``shipyard experiments``, ``runs`` and ``metrics``: experiment tracking of a project."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import typer
from rich.table import Table

from shipyard.cli._common import JsonOption, emit, emit_one, err, out, parse_tags, session
from shipyard.sdk import APIError, BadRequest

experiments = typer.Typer(help="Experiments: named groups of runs.", no_args_is_help=True)
runs = typer.Typer(help="Runs: the params, metrics and tags of one try.", no_args_is_help=True)
metrics = typer.Typer(help="Metric histories of runs.", no_args_is_help=True)

Project = Annotated[str, typer.Argument(help="TEAM/PROJECT")]
RunId = Annotated[str, typer.Argument(help="A run id")]
EXPERIMENT_COLUMNS = ("id", "name", "description", "tags", "created_by", "created_at")
RUN_COLUMNS = ("id", "name", "experiment", "status", "started", "user", "metrics")


def when(epoch_ms: int | None) -> str | None:
    """Epoch milliseconds as a UTC timestamp to the second, for tables."""
    if epoch_ms is None:
        return None
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def jsonable(data: Any) -> Any:
    """Non-finite floats as the strings the API uses, so ``--json`` output stays valid JSON."""
    if isinstance(data, float) and not math.isfinite(data):
        return "NaN" if math.isnan(data) else ("Infinity" if data > 0 else "-Infinity")
    if isinstance(data, dict):
        return {k: jsonable(v) for k, v in data.items()}
    if isinstance(data, list):
        return [jsonable(v) for v in data]
    return data


def run_row(run: dict[str, Any]) -> dict[str, Any]:
    """The table view of a run: times readable, latest metric values inline."""
    latest = {k: f"{m['value']:.6g}" for k, m in sorted(run["metrics"].items())}
    return {**run, "started": when(run["start_time"]), "metrics": latest}


# --- experiments -----------------------------------------------------------------------------


@experiments.command("ls")
def list_experiments(project: Project, as_json: JsonOption = False) -> None:
    """List the project's experiments."""
    with session() as client:
        emit(client.tracking(project).experiments(), EXPERIMENT_COLUMNS, as_json)


@experiments.command("create")
def create_experiment(
    project: Project,
    name: Annotated[str, typer.Argument(help="The experiment's name")],
    description: Annotated[str, typer.Option(help="What the experiment is about")] = "",
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE (repeatable)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create an experiment (runs also create theirs when it is missing)."""
    tags = parse_tags(tag or [])
    with session() as client:
        created = client.tracking(project).create_experiment(
            name, description=description, tags=tags
        )
    emit_one(created, as_json)


@experiments.command("show")
def show_experiment(
    project: Project,
    name: Annotated[str, typer.Argument(help="An experiment name or id")],
    as_json: JsonOption = False,
) -> None:
    """Show one experiment."""
    with session() as client:
        emit_one(client.tracking(project).experiment(name), as_json)


# --- runs ------------------------------------------------------------------------------------

ExperimentOption = Annotated[
    list[str] | None, typer.Option("--experiment", "-e", help="Only this experiment (repeatable)")
]
MaxOption = Annotated[int, typer.Option("--max", min=1, help="At most this many runs")]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print only run ids, one a line (for scripts).")
]


@runs.command("ls")
def list_runs(
    project: Project,
    experiment: ExperimentOption = None,
    max_results: MaxOption = 100,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """List runs, newest first."""
    with session() as client:
        found = client.tracking(project).search_runs(
            experiments=experiment, max_results=max_results
        )
    emit_runs(found, as_json, quiet)


def emit_runs(found: list[dict[str, Any]], as_json: bool, quiet: bool = False) -> None:
    """Runs as ids only (``-q``), as JSON, or as a table."""
    if quiet:
        sys.stdout.write("".join(f"{r['id']}\n" for r in found))
    elif as_json:
        emit(jsonable(found), RUN_COLUMNS, True)
    else:
        emit([run_row(r) for r in found], RUN_COLUMNS, False)


@runs.command("search")
def search_runs(
    project: Project,
    filter: Annotated[str, typer.Argument(help="e.g. \"metrics.auc > 0.9 AND params.C = '1'\"")],
    order_by: Annotated[
        list[str] | None,
        typer.Option("--order-by", help="e.g. 'metrics.auc DESC' (repeatable)"),
    ] = None,
    experiment: ExperimentOption = None,
    max_results: MaxOption = 100,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Find runs with a filter; a mistake in it is pointed at with a caret."""
    with session() as client:
        try:
            found = client.tracking(project).search_runs(
                filter, experiments=experiment, order_by=order_by, max_results=max_results
            )
        except BadRequest as exc:
            if "position" not in exc.details:
                raise
            _point_at(exc, filter, order_by or [])
    emit_runs(found, as_json, quiet)


def _point_at(exc: APIError, filter: str, order_by: Sequence[str]) -> NoReturn:
    """Print the error, then the text it is about with a caret under the offending character."""
    text = filter
    item = re.match(r"order_by\[(\d+)\]", exc.message)
    if exc.field == "order_by" and item and int(item.group(1)) < len(order_by):
        text = order_by[int(item.group(1))]
    text = text.replace("\n", " ").replace("\t", " ")
    position = min(max(int(exc.details["position"]), 0), len(text))
    where = f" [field: {exc.field}]" if exc.field else ""
    ref = f" (request {exc.request_id})" if exc.request_id else ""
    sys.stderr.write(
        f"error: {exc.message}{where} — {exc.status} {exc.code}{ref}\n"
        f"  {text}\n  {' ' * position}^\n"
    )
    raise typer.Exit(1)


@runs.command("create")
def create_run(
    project: Project,
    experiment: Annotated[
        str, typer.Option("--experiment", "-e", help="Created when missing")
    ] = "Default",
    name: Annotated[str | None, typer.Option(help="Default: run-<id>")] = None,
    param: Annotated[list[str] | None, typer.Option(help="KEY=VALUE (repeatable)")] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(help="KEY=NUMBER (repeatable; a repeated key logs steps 0, 1, 2, ...)"),
    ] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE (repeatable)")] = None,
    status: Annotated[
        str, typer.Option(help="FINISHED, FAILED or KILLED: how the run ends")
    ] = "FINISHED",
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Record a run from the shell, e.g. the result of a job that is not written in Python."""
    if status not in ("FINISHED", "FAILED", "KILLED"):
        raise typer.BadParameter("FINISHED, FAILED or KILLED", param_hint="--status")
    params, tags = parse_pairs(param or [], "--param"), parse_pairs(tag or [], "--tag")
    points = _metric_points(metric or [])
    with session() as client:
        tracking = client.tracking(project)
        run = tracking.start_run(
            experiment, name=name, params=params, tags=tags, source="shipyard runs create"
        )
        for key, value, step in points:
            run.log_metric(key, value, step=step)
        run.end(status)
        made = tracking.get_run(run.id)
    if quiet:
        sys.stdout.write(made["id"] + "\n")
    else:
        print_run(made, as_json)


def parse_pairs(pairs: Sequence[str], option: str) -> dict[str, str]:
    """``["K=V", ...]`` → ``{"K": "V"}``; a pair without ``=`` is a usage error."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=option)
        parsed[key] = value
    return parsed


def _metric_points(pairs: Sequence[str]) -> list[tuple[str, float, int]]:
    """``["loss=0.9", "loss=0.5"]`` → ``[("loss", 0.9, 0), ("loss", 0.5, 1)]``."""
    steps: dict[str, int] = {}
    points = []
    for pair in pairs:
        key, sep, text = pair.partition("=")
        try:
            value = float(text) if key and sep else None
        except ValueError:
            value = None
        if value is None:
            raise typer.BadParameter(f"expected KEY=NUMBER, got {pair!r}", param_hint="--metric")
        points.append((key, value, steps.get(key, 0)))
        steps[key] = steps.get(key, 0) + 1
    return points


@runs.command("show")
def show_run(project: Project, run_id: RunId, as_json: JsonOption = False) -> None:
    """Show a run: its attributes, params, latest metrics, tags and dataset inputs."""
    with session() as client:
        print_run(client.tracking(project).get_run(run_id), as_json)


def print_run(run: dict[str, Any], as_json: bool) -> None:
    """A run as JSON, or its attributes followed by tables of params, metrics and inputs."""
    if as_json:
        emit_one(jsonable(run), True)
        return
    keys = ("id", "name", "experiment", "status", "user", "parent_run_id", "artifact_uri")
    emit_one({k: run[k] for k in keys}, False)
    emit_one({"started": when(run["start_time"]), "ended": when(run["end_time"])}, False)
    emit_one({"source": run["source"], "tags": run["tags"]}, False)
    _key_values("param", run["params"])
    latest = sorted(run["metrics"].items())
    if latest:
        rows = [{"metric": k, "value": f"{m['value']:.6g}", "step": m["step"]} for k, m in latest]
        emit(rows, ("metric", "value", "step"), False)
    if run["inputs"]:
        emit(run["inputs"], ("dataset", "version", "context", "digest"), False)


def _key_values(name: str, values: dict[str, str]) -> None:
    if values:
        emit([{name: k, "value": v} for k, v in sorted(values.items())], (name, "value"), False)


@runs.command("compare")
def compare_runs(
    project: Project,
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids")],
    as_json: JsonOption = False,
) -> None:
    """Runs side by side: one row per param and metric, one column per run."""
    with session() as client:
        table = client.tracking(project).compare(run_ids)
    if as_json:
        emit_one(jsonable(table), True)
        return
    out.print(comparison_table(table))


def _run_header(run: dict[str, Any]) -> str:
    short = run["id"][:8]
    return run["name"] if run["name"] == f"run-{short}" else f"{run['name']}\n{short}"


def comparison_table(comparison: dict[str, Any]) -> Table:
    headers = [_run_header(r) for r in comparison["runs"]]
    table = Table("", *headers, show_edge=False, pad_edge=False, header_style="bold")
    for key, values in comparison["params"].items():
        table.add_row(f"params.{key}", *("-" if v is None else str(v) for v in values))
    if comparison["params"] and comparison["metrics"]:
        table.add_section()
    for key, numbers in comparison["metrics"].items():
        table.add_row(f"metrics.{key}", *("-" if v is None else f"{v:.6g}" for v in numbers))
    return table


# --- metrics ---------------------------------------------------------------------------------


@metrics.command("history")
def metric_history(
    project: Project,
    run_id: RunId,
    name: Annotated[str, typer.Argument(help="The metric's name")],
    max_points: Annotated[
        int | None,
        typer.Option(min=2, help="Downsample a longer history to this many buckets"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Print a metric's history (step, value, time), downsampled with --max-points."""
    with session() as client:
        history = client.tracking(project).metric_history(run_id, name, max_points=max_points)
    if as_json:
        emit_one(jsonable(history), True)
        return
    emit(history_rows(history), _history_columns(history), False)
    shown, total = len(history["steps"]), history["total_points"]
    points = f"{total} point{'' if total == 1 else 's'}"
    note = f"{shown} buckets of {points}" if history["downsampled"] else points
    err.print(f"[dim]{name}: {note}[/]")


def _history_columns(history: dict[str, Any]) -> tuple[str, ...]:
    base = ("step", "value", "time")
    return (*base, "min", "max", "count") if history["downsampled"] else base


def history_rows(history: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for i, step in enumerate(history["steps"]):
        row = {
            "step": step,
            "value": f"{history['values'][i]:.6g}",
            "time": when(history["timestamps"][i]),
        }
        if history["downsampled"]:
            row.update(
                min=f"{history['min'][i]:.6g}",
                max=f"{history['max'][i]:.6g}",
                count=history["counts"][i],
            )
        rows.append(row)
    return rows


def register(app: typer.Typer) -> None:
    app.add_typer(experiments, name="experiments")
    app.add_typer(runs, name="runs")
    app.add_typer(metrics, name="metrics")
