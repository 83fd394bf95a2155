"""Routes of monitoring, under a project: baselines, monitors (schedules), executions and
their reports, and ground truth for an endpoint's captured predictions."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Body, Depends, Path, Query, Response, status
from fastapi.responses import StreamingResponse

from shipyard.api.deps import PlatformDep, ProjectAccess, project_access
from shipyard.monitoring import schemas
from shipyard.monitoring.models import Baseline, Execution, Schedule
from shipyard.security.permissions import Permission
from shipyard.storage.models import ArtifactVersion
from shipyard.storage.router import download_response

router = APIRouter(prefix="/api/v1/projects/{team}/{project}", tags=["monitoring"])
Readable = Annotated[ProjectAccess, Depends(project_access(Permission.MONITOR_READ))]
Manager = Annotated[ProjectAccess, Depends(project_access(Permission.MONITOR_MANAGE))]
Invoker = Annotated[ProjectAccess, Depends(project_access(Permission.ENDPOINT_INVOKE))]
Name = Annotated[str, Path(max_length=63, description="a resource name")]
Number = Annotated[int, Path(ge=1, le=2**31 - 1, description="a version number")]
ExecutionId = Annotated[str, Path(max_length=32, description="an execution's id")]


def _baseline(row: Baseline) -> schemas.BaselineOut:
    return schemas.BaselineOut.model_validate(row)


def _schedule(row: Schedule) -> schemas.ScheduleOut:
    baseline = (
        schemas.BaselineRef(name=row.baseline_name, version=row.baseline_version)
        if row.baseline_name
        else None
    )
    return schemas.ScheduleOut(
        name=row.name,
        endpoint=row.endpoint_name,
        kind=schemas.Kind(row.kind),
        baseline=baseline,
        problem_type=row.problem_type,
        cron=row.cron,
        window_s=row.window_s,
        rules=[schemas.Rule.model_validate(rule) for rule in row.rules],
        actions=schemas.Actions.model_validate(row.actions or {}),
        enabled=row.enabled,
        next_run_at=row.next_run_at,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _execution(row: Execution, schedule: Schedule) -> schemas.ExecutionOut:
    return schemas.ExecutionOut(
        id=row.id,
        schedule=schedule.name,
        endpoint=schedule.endpoint_name,
        kind=schemas.Kind(schedule.kind),
        trigger=row.trigger,
        status=schemas.ExecutionStatus(row.status),
        window_start=row.window_start,
        window_end=row.window_end,
        verdict=row.verdict,
        summary=dict(row.summary or {}),
        alerts=list(row.alerts or []),
        report_path=row.report_path,
        html_path=row.html_path,
        error=row.error,
        retrain_job=row.retrain_job,
        retrain_version=row.retrain_version,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


# --- baselines -------------------------------------------------------------------------------


@router.post("/monitoring/baselines", status_code=status.HTTP_201_CREATED)
async def create_baseline(
    body: schemas.BaselineCreate, access: Manager, platform: PlatformDep
) -> schemas.BaselineOut:
    """Profile a dataset version: statistics.json and suggested constraints.json (a new
    version of the named baseline)."""
    row = await platform.monitoring.create_baseline(
        platform.db, access.project.id, body, access.principal.username
    )
    return _baseline(row)


@router.get("/monitoring/baselines")
def list_baselines(access: Readable, platform: PlatformDep) -> list[schemas.BaselineOut]:
    with platform.db.read() as s:
        return [_baseline(row) for row in platform.monitoring.baselines(s, access.project.id)]


@router.get("/monitoring/baselines/{name}")
def get_baseline(
    name: Name,
    access: Readable,
    platform: PlatformDep,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> schemas.BaselineOut:
    with platform.db.read() as s:
        return _baseline(platform.monitoring.baseline(s, access.project.id, name, version))


@router.get("/monitoring/baselines/{name}/versions/{version}/statistics")
async def get_statistics(
    name: Name, version: Number, access: Readable, platform: PlatformDep
) -> dict[str, Any]:
    with platform.db.read() as s:
        row = platform.monitoring.baseline(s, access.project.id, name, version)
    return await platform.monitoring.read_json(platform.db, access.project.id, row.statistics_path)


@router.get("/monitoring/baselines/{name}/versions/{version}/constraints")
async def get_constraints(
    name: Name, version: Number, access: Readable, platform: PlatformDep
) -> dict[str, Any]:
    with platform.db.read() as s:
        row = platform.monitoring.baseline(s, access.project.id, name, version)
    return await platform.monitoring.constraints(platform.db, access.project.id, row)


@router.put("/monitoring/baselines/{name}/versions/{version}/constraints")
async def put_constraints(
    name: Name,
    version: Number,
    access: Manager,
    platform: PlatformDep,
    document: Annotated[dict[str, Any], Body(description="the whole constraints.json")],
) -> dict[str, Any]:
    """Replace the constraints (loosen a range, drop a category check): checked whole, kept
    as a new artifact version; executions from now on use it."""
    with platform.db.read() as s:
        row = platform.monitoring.baseline(s, access.project.id, name, version)
    return await platform.monitoring.replace_constraints(
        platform.db, access.project.id, row, document, access.principal.username
    )


# --- monitors (schedules) --------------------------------------------------------------------


@router.post("/monitoring/schedules", status_code=status.HTTP_201_CREATED)
def create_schedule(
    body: schemas.ScheduleCreate, access: Manager, platform: PlatformDep
) -> schemas.ScheduleOut:
    """A monitor of an endpoint: data quality against a baseline, or model quality against
    uploaded ground truth; a cron schedule, alert rules and actions."""
    with platform.db.transaction() as s:
        row = platform.monitoring.create_schedule(
            s, access.team.id, access.project.id, body, access.principal.username
        )
        return _schedule(row)


@router.get("/monitoring/schedules")
def list_schedules(access: Readable, platform: PlatformDep) -> list[schemas.ScheduleOut]:
    with platform.db.read() as s:
        return [_schedule(row) for row in platform.monitoring.schedules(s, access.project.id)]


@router.get("/monitoring/schedules/{name}")
def get_schedule(name: Name, access: Readable, platform: PlatformDep) -> schemas.ScheduleOut:
    with platform.db.read() as s:
        return _schedule(platform.monitoring.schedule(s, access.project.id, name))


@router.patch("/monitoring/schedules/{name}")
def update_schedule(
    name: Name, body: schemas.ScheduleUpdate, access: Manager, platform: PlatformDep
) -> schemas.ScheduleOut:
    with platform.db.transaction() as s:
        return _schedule(platform.monitoring.update_schedule(s, access.project.id, name, body))


@router.delete("/monitoring/schedules/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_schedule(name: Name, access: Manager, platform: PlatformDep) -> Response:
    with platform.db.transaction() as s:
        platform.monitoring.delete_schedule(s, access.project.id, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/monitoring/schedules/{name}/run", status_code=status.HTTP_202_ACCEPTED)
def run_schedule(
    name: Name,
    access: Manager,
    platform: PlatformDep,
    body: schemas.RunRequest | None = None,
) -> schemas.ExecutionOut:
    """Run now, over the monitor's window ending now (or the window given)."""
    with platform.db.transaction() as s:
        schedule = platform.monitoring.schedule(s, access.project.id, name)
        row = platform.monitoring.run_now(
            s, access.project.id, name, body or schemas.RunRequest(), access.principal.username
        )
        out = _execution(row, schedule)
    platform.monitoring_controller.wake()
    return out


# --- executions ------------------------------------------------------------------------------


@router.get("/monitoring/executions")
def list_executions(
    access: Readable,
    platform: PlatformDep,
    monitor: Annotated[str | None, Query(max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[schemas.ExecutionOut]:
    """Executions, newest first (of one monitor, or of all the project's)."""
    with platform.db.read() as s:
        schedules = {row.id: row for row in platform.monitoring.schedules(s, access.project.id)}
        rows = platform.monitoring.executions(s, access.project.id, monitor, limit)
        return [_execution(row, schedules[row.schedule_id]) for row in rows]


@router.get("/monitoring/executions/{execution_id}")
def get_execution(
    execution_id: ExecutionId, access: Readable, platform: PlatformDep
) -> schemas.ExecutionOut:
    with platform.db.read() as s:
        row = platform.monitoring.execution(s, access.project.id, execution_id)
        schedule = platform.monitoring.schedule_by_id(s, row.schedule_id)
        return _execution(row, schedule)


async def _report(
    platform: Any, project_id: str, execution_id: str, html: bool
) -> StreamingResponse:
    def find() -> ArtifactVersion:
        with platform.db.read() as s:
            row: ArtifactVersion = platform.monitoring.report_row(s, project_id, execution_id, html)
            return row

    return await download_response(platform, await anyio.to_thread.run_sync(find))


@router.get("/monitoring/executions/{execution_id}/report", response_class=StreamingResponse)
async def get_report(
    execution_id: ExecutionId, access: Readable, platform: PlatformDep
) -> StreamingResponse:
    """The execution's JSON report (per-feature statistics, drift, violations)."""
    return await _report(platform, access.project.id, execution_id, html=False)


@router.get("/monitoring/executions/{execution_id}/report.html", response_class=StreamingResponse)
async def get_report_html(
    execution_id: ExecutionId, access: Readable, platform: PlatformDep
) -> StreamingResponse:
    """The execution's HTML report: distribution overlays and drift per feature."""
    response = await _report(platform, access.project.id, execution_id, html=True)
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response


# --- ground truth ----------------------------------------------------------------------------


@router.post("/endpoints/{name}/ground-truth", status_code=status.HTTP_201_CREATED)
async def upload_ground_truth(
    name: Name, body: schemas.GroundTruthUpload, access: Invoker, platform: PlatformDep
) -> schemas.GroundTruthOut:
    """Labels for captured predictions, keyed by the capture's event id (the
    ``x-shipyard-event-id`` of the answer, or the ``InferenceId`` the caller sent)."""
    return await platform.monitoring.upload_ground_truth(
        platform.db, access.project.id, name, body, access.principal.username
    )
