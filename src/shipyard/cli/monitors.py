"""``shipyard monitors``: baselines, monitors of endpoints, runs, executions, reports, labels."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from shipyard.cli._common import JsonOption, emit, emit_one, out, print_json, session
from shipyard.cli.jobs import ProjectOption

monitors = typer.Typer(help="Model monitoring: baselines, monitors, executions, reports.")
NameArg = Annotated[str, typer.Argument(help="The monitor's name")]
_RULE = re.compile(r"^(?P<metric>[a-z_0-9]+)(\[(?P<feature>[^\]]+)\])?(?P<op>>=|<=|>|<)(?P<t>.+)$")
EXECUTION_COLUMNS = ("id", "schedule", "status", "verdict", "window_end", "alerts", "retrain_job")


def parse_rule(text: str) -> dict[str, Any]:
    """``drifted_features>0``, ``psi[age]>=0.25``, ``accuracy<0.8``."""
    found = _RULE.match(text.replace(" ", ""))
    if not found:
        raise typer.BadParameter(
            f"{text!r}: a rule is METRIC[FEATURE]OP THRESHOLD, e.g. psi[age]>0.2",
            param_hint="--rule",
        )
    try:
        threshold = float(found["t"])
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: the threshold is a number", param_hint="--rule"
        ) from None
    rule: dict[str, Any] = {"metric": found["metric"], "op": found["op"], "threshold": threshold}
    if found["feature"]:
        rule["feature"] = found["feature"]
    return rule


@monitors.command("baseline")
def baseline(
    name: Annotated[str, typer.Argument(help="The baseline's name (each call: a new version)")],
    project: ProjectOption,
    dataset: Annotated[str | None, typer.Option(help="A dataset version: NAME:VERSION")] = None,
    artifact: Annotated[str | None, typer.Option(help="Or an artifact (CSV or Parquet)")] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="A column that is not a model input")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Profile a dataset version: statistics.json and suggested constraints.json.

    Example: shipyard monitors baseline marketing -p ml/churn --dataset marketing:1 --exclude churn
    """
    if (dataset is None) == (artifact is None):
        raise typer.BadParameter("give --dataset or --artifact")
    with session() as client:
        row = client.monitoring(project).create_baseline(
            name, dataset=dataset, artifact_path=artifact, exclude=exclude or []
        )
    emit_one(row, as_json)


@monitors.command("constraints")
def constraints(
    name: Annotated[str, typer.Argument(help="The baseline's name")],
    version: Annotated[int, typer.Argument(min=1, help="The baseline's version")],
    project: ProjectOption,
    set_file: Annotated[
        Path | None,
        typer.Option(
            "--set", help="Replace them with this edited constraints.json", dir_okay=False
        ),
    ] = None,
) -> None:
    """Print a baseline's constraints.json, or replace it with an edited copy (--set).

    Example: shipyard monitors constraints marketing 1 -p ml/churn > constraints.json
    """
    with session() as client:
        monitoring = client.monitoring(project)
        if set_file is None:
            print_json(monitoring.constraints(name, version))
            return
        print_json(monitoring.put_constraints(name, version, json.loads(set_file.read_text())))


@monitors.command("create")
def create(
    name: NameArg,
    project: ProjectOption,
    endpoint: Annotated[str, typer.Option(help="The endpoint whose captured traffic to check")],
    baseline: Annotated[str | None, typer.Option(help="Baseline name (data quality)")] = None,
    kind: Annotated[str, typer.Option(help="data_quality or model_quality")] = "data_quality",
    problem_type: Annotated[
        str | None, typer.Option(help="model_quality: classification or regression")
    ] = None,
    cron: Annotated[str, typer.Option(help="Five-field cron, UTC")] = "0 * * * *",
    window_s: Annotated[int, typer.Option(help="Seconds of traffic each execution reads")] = 3600,
    rule: Annotated[
        list[str] | None, typer.Option("--rule", help="An alert rule, e.g. 'psi[age]>0.2'")
    ] = None,
    retrain_job: Annotated[
        Path | None,
        typer.Option(help="A job spec (JSON) to start when a rule breaks", dir_okay=False),
    ] = None,
    register_group: Annotated[
        str | None, typer.Option(help="Register the retrained model in this group")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Monitor an endpoint on a schedule; alert (monitor.violation) when a rule breaks.

    Example: shipyard monitors create churn-drift -p ml/churn --endpoint customer-churn-v23 \\
      --baseline marketing --rule 'drifted_features>0'
    """
    job = json.loads(retrain_job.read_text()) if retrain_job else None
    with session() as client:
        monitor = client.monitoring(project).create_monitor(
            name,
            endpoint=endpoint,
            baseline=baseline,
            kind=kind,
            problem_type=problem_type,
            cron=cron,
            window_s=window_s,
            rules=[parse_rule(text) for text in rule] if rule else None,
            retrain_job=job,
            register_group=register_group,
        )
    emit_one(monitor.as_dict(), as_json)


@monitors.command("ls")
def list_monitors(project: ProjectOption, as_json: JsonOption = False) -> None:
    """The project's monitors."""
    with session() as client:
        rows = [m.as_dict() for m in client.monitoring(project).monitors()]
    emit(rows, ("name", "endpoint", "kind", "cron", "enabled", "next_run_at"), as_json)


@monitors.command("run")
def run(
    name: NameArg,
    project: ProjectOption,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the verdict")] = True,
    as_json: JsonOption = False,
) -> None:
    """Run a monitor now, over its window ending now; print the execution.

    Example: shipyard monitors run churn-drift -p ml/churn
    """
    with session() as client:
        monitoring = client.monitoring(project)
        with out.status(f"running monitor {name}…"):
            execution = monitoring.monitor(name).run(wait=wait)
    _emit_execution(execution, as_json)
    if execution["status"] == "Failed":
        raise typer.Exit(1)


@monitors.command("executions")
def executions(
    project: ProjectOption,
    name: Annotated[str | None, typer.Argument(help="Only this monitor's")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonOption = False,
) -> None:
    """Executions, newest first, with their verdicts and the alerts they raised."""
    with session() as client:
        rows = client.monitoring(project).executions(name, limit=limit)
    if as_json:
        print_json(rows)
        return
    emit([{**row, "alerts": _alerts(row)} for row in rows], EXECUTION_COLUMNS, False)


@monitors.command("report")
def report(
    project: ProjectOption,
    execution_id: Annotated[
        str | None, typer.Argument(help="An execution's id (default: --monitor's latest)")
    ] = None,
    monitor: Annotated[
        str | None, typer.Option("--monitor", help="The latest execution of this monitor")
    ] = None,
    html: Annotated[bool, typer.Option("--html", help="The HTML report (with plots)")] = False,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write it to this file", dir_okay=False)
    ] = None,
) -> None:
    """An execution's report: JSON (per-feature drift, violations), or HTML with plots.

    Example: shipyard monitors report -p ml/churn --monitor churn-drift --html -o report.html
    """
    if (execution_id is None) == (monitor is None):
        raise typer.BadParameter("give an EXECUTION_ID or --monitor NAME")
    with session() as client:
        monitoring = client.monitoring(project)
        if execution_id is None:
            latest = monitoring.executions(monitor, limit=1)
            if not latest:
                raise typer.BadParameter(f"monitor {monitor!r} has no execution yet")
            execution_id = str(latest[0]["id"])
        found = monitoring.report(execution_id, html=html)
    text = found if isinstance(found, str) else json.dumps(found, indent=2)
    if output is None:
        typer.echo(text)
        return
    output.write_text(text)
    out.print(f"wrote {escape(str(output))}", highlight=False)


@monitors.command("ground-truth")
def ground_truth(
    endpoint: Annotated[str, typer.Argument(help="The endpoint whose predictions they label")],
    project: ProjectOption,
    file: Annotated[
        Path, typer.Option(help="JSON lines of {event_id, label}", dir_okay=False, exists=True)
    ],
    as_json: JsonOption = False,
) -> None:
    """Upload labels for captured predictions (keyed by the capture's event id)."""
    rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    pairs = [(str(row["event_id"]), row["label"]) for row in rows]
    with session() as client:
        result = client.monitoring(project).upload_ground_truth(endpoint, pairs)
    emit_one(result, as_json)


def _alerts(row: dict[str, Any]) -> str:
    return "; ".join(
        f"{a['metric']}{'[' + a['feature'] + ']' if a.get('feature') else ''}={a['value']:g}"
        for a in row.get("alerts", [])
    )


def _emit_execution(execution: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(execution)
        return
    summary = execution.get("summary", {})
    shown = {
        "id": execution["id"],
        "monitor": execution["schedule"],
        "status": execution["status"],
        "verdict": execution.get("verdict"),
        "window": f"{execution['window_start']} → {execution['window_end']}",
        "records": summary.get("records", summary.get("matched")),
        "drifted_features": summary.get("drifted_features"),
        "violations": summary.get("violations"),
        "metrics": summary.get("metrics"),
        "alerts": _alerts(execution) or "-",
        "retrain_job": execution.get("retrain_job"),
        "error": execution.get("error") or "-",
    }
    emit_one({k: v for k, v in shown.items() if v is not None}, False)


def register(app: typer.Typer) -> None:
    app.add_typer(monitors, name="monitors")
