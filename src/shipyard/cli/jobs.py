"""``shipyard jobs``: submit training and processing jobs, follow their logs, stop them.

``submit`` packs a source directory and uploads it exactly like ``shipyard.Estimator`` does
(it is the same code), so a job submitted from the CLI and one submitted from a notebook are
the same job. Job output is printed as text, never as Rich markup: a log line such as
``[algo-1] loss=[0.3]`` must reach the terminal unchanged.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli._common import JsonOption, err, out, print_json, session
from shipyard.sdk import Estimator, Job, JobFailed, Jobs, Processor

jobs = typer.Typer(
    help="Training and processing jobs: SageMaker-style scripts on the platform's instances.",
    no_args_is_help=True,
)

ProjectOption = Annotated[
    str,
    typer.Option(
        "--project", "-p", envvar="SHIPYARD_PROJECT", help="TEAM/PROJECT [env: SHIPYARD_PROJECT]"
    ),
]
NameArg = Annotated[str, typer.Argument(help="The job's name")]
DAY_S = 24 * 3600
LIST_COLUMNS = ("name", "kind", "status", "instances", "attempt", "created_by", "created_at")


# --- parsing -------------------------------------------------------------------------------


def pairs(values: Sequence[str] | None, option: str, what: str = "KEY=VALUE") -> dict[str, str]:
    """``["k=v", ...]`` → ``{"k": "v"}``, split at the first ``=`` (a regex may hold more)."""
    found: dict[str, str] = {}
    for pair in values or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected {what}, got {pair!r}", param_hint=option)
        found[key] = value
    return found


def hp_value(text: str) -> str | int | float | bool:
    """A hyperparameter as typed on a command line: true/false, an integer, a finite float,
    else the text itself."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


# --- showing -------------------------------------------------------------------------------


def _phases(job: Job) -> str:
    """``Pending 0.1s → Running 12.3s → Completed``: how long each phase took, in order."""
    ordered = sorted(job.phase_times.items(), key=lambda item: item[1])
    parts = []
    for (phase, at), following in zip(ordered, [*ordered[1:], None], strict=True):
        took = f" {(following[1] - at).total_seconds():.1f}s" if following else ""
        parts.append(f"{phase}{took}")
    return " → ".join(parts)


def job_view(job: Job) -> dict[str, Any]:
    """What ``show`` prints for a person: the status first, the spec summed up."""
    spec = job.spec
    return {
        "name": job.name,
        "kind": job.kind,
        "status": job.status,
        "reason": job.reason or None,
        "attempt": job.attempt,
        "retries": f"{job.retries}/{spec.get('max_retries', 0)}",
        "instances": f"{spec.get('instance_count', 1)} x {spec.get('instance_type', '')}"
        + (" (spot)" if spec.get("spot") else ""),
        "entry_point": spec.get("entry_point"),
        "inputs": spec.get("inputs") or None,
        "hyperparameters": spec.get("hyperparameters") or None,
        "run_id": job.run_id,
        "model_artifact": job.model_artifact,
        "outputs": job.output_artifacts.get("output") or None,
        "phases": _phases(job),
        "created_by": job.created_by,
        "created_at": job.created_at.isoformat(timespec="seconds"),
    }


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def emit_job(job: Job, as_json: bool) -> None:
    if as_json:
        print_json(job.as_dict())
        return
    for key, value in job_view(job).items():
        out.print(f"[bold]{key}[/]: {escape(_text(value))}", highlight=False)


def emit_jobs(found: Sequence[Job], as_json: bool) -> None:
    if as_json:
        print_json([j.as_dict() for j in found])
        return
    table = Table(*LIST_COLUMNS, "reason", show_edge=False, pad_edge=False, header_style="bold")
    for job in found:
        row = {
            **job.as_dict(),
            "instances": f"{job.spec.get('instance_count', 1)} x {job.spec.get('instance_type')}",
            "created_at": job.created_at.isoformat(timespec="seconds"),
        }
        reason = job.reason.splitlines()[0] if job.reason else "-"
        table.add_row(*(escape(_text(row.get(c))) for c in LIST_COLUMNS), escape(reason))
    out.print(table, highlight=False)


def print_lines(lines: Iterator[str], stream: TextIO) -> None:
    for line in lines:
        stream.write(line + "\n")
        stream.flush()


@contextmanager
def _spinner(text: str) -> Iterator[Any]:
    """A Rich status spinner on stderr when it is a terminal; a no-op otherwise."""
    if not err.is_terminal:
        yield None
        return
    with err.status(text) as status:
        yield status


def wait_for(client_jobs: Jobs, job: Job, *, logs: bool, as_json: bool) -> Job:
    """Wait for the job to end (logs streamed, or a spinner with its status); the job, or
    exit 1 with one error line when it ended Failed or Stopped."""
    try:
        if logs:  # with --json, stdout is for the JSON: the logs go to stderr
            print_lines(
                client_jobs.logs(job.name, follow=True), sys.stderr if as_json else sys.stdout
            )
            job.wait()
        else:
            with _spinner(f"job {job.name}: {job.status}") as status:

                def show(current: Job) -> None:
                    if status is not None:
                        status.update(
                            f"job {current.name}: {current.status} (attempt {current.attempt})"
                        )

                job.wait(progress=show)
    except JobFailed as failed:
        emit_job(failed.job, as_json)
        first = failed.reason.splitlines()[0] if failed.reason else "no reason given"
        sys.stderr.write(f"error: job {failed.job.name} ended {failed.status}: {first}\n")
        raise typer.Exit(1) from None
    return job


# --- commands ------------------------------------------------------------------------------


@jobs.command("submit")
def submit(
    project: ProjectOption,
    arguments: Annotated[
        list[str] | None,
        typer.Argument(
            help="Arguments for the entry point (put them after --)", show_default=False
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Job name (default: ENTRY-yyyymmdd-hhmmss-mmm)")
    ] = None,
    entry_point: Annotated[
        str, typer.Option(help="A script in the source, or a module")
    ] = "train.py",
    source_dir: Annotated[
        Path, typer.Option(help="Directory packed and uploaded as the job's code")
    ] = Path("."),
    kind: Annotated[str, typer.Option(help="training or processing")] = "training",
    instance_type: Annotated[str, typer.Option(help="e.g. cpu.small, cpu.large")] = "cpu.small",
    instance_count: Annotated[int, typer.Option(min=1, help="Instances (distributed if > 1)")] = 1,
    hp: Annotated[
        list[str] | None, typer.Option(help="Hyperparameter KEY=VALUE (repeatable)")
    ] = None,
    input_: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            help="CHANNEL=dataset:NAME:VERSION, CHANNEL=PATH or CHANNEL=PATH@VERSION (repeatable)",
        ),
    ] = None,
    requirements: Annotated[
        str | None, typer.Option(help="Requirements file inside the source directory")
    ] = None,
    spot: Annotated[bool, typer.Option("--spot", help="Run on reclaimable capacity")] = False,
    checkpointing: Annotated[
        bool, typer.Option("--checkpointing", help="Sync SM_CHECKPOINT_DIR; resume from it")
    ] = False,
    metric: Annotated[
        list[str] | None, typer.Option(help="NAME=REGEX read from the logs (repeatable)")
    ] = None,
    max_runtime: Annotated[
        int, typer.Option(min=1, help="Seconds before the job is stopped")
    ] = DAY_S,
    max_retries: Annotated[int, typer.Option(min=0, help="Retries after a failure")] = 0,
    network_isolation: Annotated[
        bool, typer.Option("--network-isolation", help="No network inside the instances")
    ] = False,
    env: Annotated[list[str] | None, typer.Option(help="Variable K=V (repeatable)")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Tag K=V (repeatable)")] = None,
    output_path: Annotated[
        str | None, typer.Option(help="Artifact prefix for model and output (default jobs/NAME)")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the job to end")] = False,
    logs: Annotated[
        bool, typer.Option("--logs", help="Stream the logs while waiting (implies --wait)")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Pack SOURCE_DIR, upload it and submit a job; with --wait, exit 1 unless it completes.

    Example: shipyard jobs submit -p ml/churn --source-dir churn --hp epochs=5
    --input train=dataset:marketing:1 --wait --logs
    """
    if kind not in ("training", "processing"):
        raise typer.BadParameter("training or processing", param_hint="--kind")
    if kind == "processing" and hp:
        raise typer.BadParameter(
            "processing jobs take arguments, not hyperparameters", param_hint="--hp"
        )
    common: dict[str, Any] = {
        "instance_type": instance_type,
        "instance_count": instance_count,
        "requirements": requirements,
        "spot": spot,
        "max_runtime_s": max_runtime,
        "max_retries": max_retries,
        "network_isolation": network_isolation,
        "environment": pairs(env, "--env"),
        "tags": pairs(tag, "--tag"),
        "output_path": output_path,
        "arguments": arguments or [],
        "project": project,
    }
    metrics = [{"name": k, "regex": v} for k, v in pairs(metric, "--metric", "NAME=REGEX").items()]
    inputs = pairs(input_, "--input", "CHANNEL=SOURCE")
    hyperparameters = {k: hp_value(v) for k, v in pairs(hp, "--hp").items()}
    with session() as client:
        common["session"] = client
        with _spinner(f"packing {source_dir} and submitting"):
            if kind == "processing":
                job = Processor(entry_point, source_dir, **common).run(
                    inputs, wait=False, job_name=name
                )
            else:
                estimator = Estimator(
                    entry_point,
                    source_dir,
                    hyperparameters=hyperparameters,
                    checkpointing=checkpointing,
                    metric_definitions=metrics,
                    **common,
                )
                job = estimator.fit(inputs, wait=False, job_name=name)
        if not (wait or logs):
            emit_job(job, as_json)
            return
        if not as_json:
            err.print(f"submitted job {escape(job.name)}", highlight=False)
        job = wait_for(client.jobs(project), job, logs=logs, as_json=as_json)
    emit_job(job, as_json)


@jobs.command("ls")
def list_jobs(
    project: ProjectOption,
    status: Annotated[
        str | None, typer.Option(help="Only jobs in this status, e.g. Running")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many jobs")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List the project's jobs, newest first."""
    with session() as client:
        emit_jobs(client.jobs(project).list(status, limit=limit), as_json)


@jobs.command("show")
def show(name: NameArg, project: ProjectOption, as_json: JsonOption = False) -> None:
    """Show a job: status, reason, phases, run, model and outputs (--json: everything)."""
    with session() as client:
        emit_job(client.jobs(project).get(name), as_json)


@jobs.command("logs")
def show_logs(
    name: NameArg,
    project: ProjectOption,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the job ends")
    ] = False,
    instance: Annotated[
        str | None, typer.Option(help="Only this instance's lines, e.g. algo-2")
    ] = None,
) -> None:
    """Print a job's logs (each line prefixed [algo-N] when it has several instances)."""
    with session() as client:
        print_lines(client.jobs(project).logs(name, follow=follow, instance=instance), sys.stdout)


@jobs.command("wait")
def wait_job(
    name: NameArg,
    project: ProjectOption,
    logs: Annotated[bool, typer.Option("--logs", help="Stream the logs while waiting")] = False,
    as_json: JsonOption = False,
) -> None:
    """Wait for a job to end; exit 1 unless it completed."""
    with session() as client:
        client_jobs = client.jobs(project)
        job = wait_for(client_jobs, client_jobs.get(name), logs=logs, as_json=as_json)
    emit_job(job, as_json)


@jobs.command("stop")
def stop(name: NameArg, project: ProjectOption, as_json: JsonOption = False) -> None:
    """Stop a job: SIGTERM, a grace period, then SIGKILL; it ends Stopped."""
    with session() as client:
        job = client.jobs(project).stop(name)
    if as_json:
        print_json(job.as_dict())
        return
    err.print(f"Stopping job {escape(name)} (it ends Stopped)", highlight=False)


@jobs.command("interrupt")
def interrupt(name: NameArg, project: ProjectOption, as_json: JsonOption = False) -> None:
    """Kill a job's instances like a spot reclaim; it resumes from its last checkpoint."""
    with session() as client:
        job = client.jobs(project).interrupt(name)
    if as_json:
        print_json(job.as_dict())
        return
    err.print(
        f"Interrupted job {escape(name)}; it resumes from its last checkpoint", highlight=False
    )


def register(app: typer.Typer) -> None:
    app.add_typer(jobs, name="jobs")
