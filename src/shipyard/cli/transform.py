"""``shipyard transform``: batch transforms, a registry version over a whole dataset.

``create --wait`` follows the job's log: its progress lines (``transform: 120/300 records``)
drive a Rich progress bar on a terminal, and ``--logs`` prints the lines themselves (to
stderr with ``--json``, so stdout stays JSON). Log lines are printed as text, never as Rich
markup. Logs and stop are the job's: ``shipyard jobs logs NAME``, ``shipyard jobs stop NAME``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from shipyard.cli._common import JsonOption, err, out, print_json, session
from shipyard.cli.jobs import pairs
from shipyard.sdk import JobFailed
from shipyard.sdk._transform import TransformJob, model_ref

transform = typer.Typer(
    help="Batch transforms: run a registered model over every record of a dataset.",
    no_args_is_help=True,
)

ProjectOption = Annotated[
    str,
    typer.Option(
        "--project", "-p", envvar="SHIPYARD_PROJECT", help="TEAM/PROJECT [env: SHIPYARD_PROJECT]"
    ),
]
NameArg = Annotated[str, typer.Argument(help="The transform job's name")]
LIST_COLUMNS = ("name", "status", "model", "input", "instances", "created_at")
_PROGRESS = re.compile(r"^(?:\[(?P<host>algo-\d+)\] )?transform: (?P<done>\d+)/(?P<total>\d+) ")
_FAILURE = "Failure reason: "


# --- showing -------------------------------------------------------------------------------


def _model(job: TransformJob) -> str:
    return f"{job.model['group']}:{job.model['version']}" if job.model else "-"


def _batching(data: dict[str, Any]) -> str:
    if data["split_type"] == "None":
        return "a file a request"
    if data["strategy"] == "SingleRecord":
        return "a record a request"
    return f"up to {data['max_payload_records']} records a request"


def transform_view(job: TransformJob) -> dict[str, Any]:
    """What ``show`` prints for a person: the status first, the options summed up."""
    data = job.data
    return {
        "name": job.name,
        "status": job.status,
        "reason": why(job.reason) or None,
        "model": _model(job),
        "input": job.input,
        "records": f"{data['content_type']} → {data['accept']}, {_batching(data)}"
        + (", header skipped" if data["skip_header"] else ""),
        "instances": f"{data['instance_count']} x {data['instance_type']}",
        "output_path": job.output_path,
        "outputs": ", ".join(job.outputs) or None,
        "created_by": data["created_by"],
        "created_at": str(data["created_at"])[:19],
    }


def why(reason: str) -> str:
    """The line of a job's reason that says what went wrong: the runner's own failure
    reason when it wrote one (it names the file and line), else the first line."""
    for line in reason.splitlines():
        if line.startswith(_FAILURE):
            return line.removeprefix(_FAILURE)
    return reason.splitlines()[0] if reason else ""


def emit_transform(job: TransformJob, as_json: bool) -> None:
    if as_json:
        print_json(job.as_dict())
        return
    for key, value in transform_view(job).items():
        shown = "-" if value is None else str(value)
        out.print(f"[bold]{key}[/]: {escape(shown)}", highlight=False)


def emit_transforms(found: Sequence[TransformJob], as_json: bool) -> None:
    if as_json:
        print_json([job.as_dict() for job in found])
        return
    table = Table(*LIST_COLUMNS, show_edge=False, pad_edge=False, header_style="bold")
    for job in found:
        view = transform_view(job)
        table.add_row(*(escape(str(view.get(column) or "-")) for column in LIST_COLUMNS))
    out.print(table, highlight=False)


# --- waiting -------------------------------------------------------------------------------


@contextmanager
def progress_bar(name: str) -> Iterator[Callable[[str], None]]:
    """A feed for log lines that moves a Rich bar by their progress lines (the instances'
    counts summed); a no-op when stderr is not a terminal."""
    if not err.is_terminal:
        yield lambda line: None
        return
    counts: dict[str, tuple[int, int]] = {}
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(f"transform {name}", total=None)

        def feed(line: str) -> None:
            found = _PROGRESS.match(line)
            if found is None:
                return
            counts[found["host"] or ""] = (int(found["done"]), int(found["total"]))
            done = sum(count[0] for count in counts.values())
            total = sum(count[1] for count in counts.values())
            bar.update(task, completed=done, total=total or None)

        yield feed


def follow(job: TransformJob, *, logs: bool, as_json: bool) -> TransformJob:
    """Follow the job's log until it ends; the job, or exit 1 with one error line when it
    ended Failed or Stopped."""
    stream = sys.stderr if as_json else sys.stdout
    with progress_bar(job.name) if not logs else _no_bar() as feed:
        for line in job.logs(follow=True):
            feed(line)
            if logs:
                stream.write(line + "\n")
                stream.flush()
    try:
        return job.wait()
    except JobFailed as failed:
        emit_transform(job.refresh(), as_json)
        sys.stderr.write(
            f"error: transform job {job.name} ended {failed.status}: {why(failed.reason)}\n"
        )
        raise typer.Exit(1) from None


@contextmanager
def _no_bar() -> Iterator[Callable[[str], None]]:
    yield lambda line: None


# --- commands ------------------------------------------------------------------------------


@transform.command("create")
def create(
    name: NameArg,
    project: ProjectOption,
    model: Annotated[str, typer.Option(help="The registry version, GROUP:VERSION")],
    input_: Annotated[
        str,
        typer.Option("--input", help="dataset:NAME:VERSION, an artifact PATH[@VERSION] or prefix"),
    ],
    content_type: Annotated[
        str, typer.Option(help="text/csv, application/json or application/jsonlines")
    ] = "text/csv",
    accept: Annotated[
        str | None, typer.Option(help="Output type (default: CSV for CSV, else JSON Lines)")
    ] = None,
    split_type: Annotated[
        str, typer.Option(help="Line (a record a line) or None (a file a request)")
    ] = "Line",
    strategy: Annotated[str, typer.Option(help="MultiRecord or SingleRecord")] = "MultiRecord",
    max_payload_records: Annotated[
        int, typer.Option(min=1, help="Records per request with MultiRecord")
    ] = 100,
    skip_header: Annotated[
        bool, typer.Option("--skip-header", help="The first line of each file is a header")
    ] = False,
    predict: Annotated[str, typer.Option(help="predict, or proba for probabilities")] = "predict",
    output_path: Annotated[
        str | None, typer.Option(help="Artifact prefix of the output (default transform/NAME)")
    ] = None,
    instance_type: Annotated[str, typer.Option(help="e.g. cpu.small, cpu.large")] = "cpu.small",
    instance_count: Annotated[
        int, typer.Option(min=1, help="Instances; the input files are shared among them")
    ] = 1,
    env: Annotated[list[str] | None, typer.Option(help="Variable K=V (repeatable)")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the job to end")] = False,
    logs: Annotated[
        bool, typer.Option("--logs", help="Print the job's log while waiting (implies --wait)")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run a registry version over every record of the input (--wait: exit 1 unless done).

    Example: shipyard transform create score-1 -p ml/churn --model churn:1
    --input dataset:to-score:1 --skip-header --wait
    """
    try:
        ref = model_ref(model)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from None
    with session() as client:
        job = client.transformer(project).transform(
            input_,
            model=(ref["group"], ref["version"]),
            name=name,
            content_type=content_type,
            accept=accept,
            split_type=split_type,
            strategy=strategy,
            max_payload_records=max_payload_records,
            skip_header=skip_header,
            predict=predict,
            output_path=output_path,
            instance_type=instance_type,
            instance_count=instance_count,
            environment=pairs(env, "--env"),
        )
        if wait or logs:
            if not as_json:
                err.print(f"submitted transform job {escape(job.name)}", highlight=False)
            job = follow(job, logs=logs, as_json=as_json)
    emit_transform(job, as_json)


@transform.command("ls")
def list_transforms(
    project: ProjectOption,
    status: Annotated[
        str | None, typer.Option(help="Only jobs in this status, e.g. Running")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List the project's transform jobs, newest first."""
    with session() as client:
        emit_transforms(client.transformer(project).list(status, limit=limit), as_json)


@transform.command("show")
def show(name: NameArg, project: ProjectOption, as_json: JsonOption = False) -> None:
    """Show a transform job: status, reason, model, options and its output files."""
    with session() as client:
        emit_transform(client.transformer(project).get(name), as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(transform, name="transform")
