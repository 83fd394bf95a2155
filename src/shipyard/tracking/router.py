"""Routes of tracking: experiments, runs, batched logging, search, history, compare."""

from __future__ import annotations

from typing import Annotated

import anyio
import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from shipyard.api.body import json_body, parse_body
from shipyard.api.deps import PlatformDep, ProjectAccess, project_access
from shipyard.api.middleware import audited_transaction
from shipyard.kit.gcpause import paused_gc
from shipyard.security.permissions import Permission
from shipyard.tracking import schemas

router = APIRouter(prefix="/api/v1/projects/{team}/{project}", tags=["tracking"])
Readable = Annotated[ProjectAccess, Depends(project_access(Permission.TRACKING_READ))]
Writable = Annotated[ProjectAccess, Depends(project_access(Permission.TRACKING_WRITE))]
RunId = Annotated[str, Path(max_length=64, description="a run id")]


@router.post("/experiments", status_code=status.HTTP_201_CREATED)
def create_experiment(
    body: schemas.ExperimentCreate, access: Writable, platform: PlatformDep
) -> schemas.ExperimentOut:
    """Create an experiment (a named group of runs) in the project."""
    with platform.db.transaction() as s:
        row = platform.tracking.create_experiment(
            s, access.project.id, body, access.principal.username
        )
        return schemas.ExperimentOut.model_validate(row)


@router.get("/experiments")
def list_experiments(
    access: Readable,
    platform: PlatformDep,
    view: Annotated[str, Query(pattern="^(active|deleted|all)$")] = "active",
) -> list[schemas.ExperimentOut]:
    """List the project's experiments."""
    with platform.db.read() as s:
        rows = platform.tracking.experiments(s, access.project.id, view)
        return [schemas.ExperimentOut.model_validate(r) for r in rows]


@router.get("/experiments/{experiment}")
def get_experiment(
    experiment: Annotated[str, Path(max_length=256)], access: Readable, platform: PlatformDep
) -> schemas.ExperimentOut:
    """One experiment, by name or id."""
    with platform.db.read() as s:
        row = platform.tracking.experiment(s, access.project.id, experiment)
        return schemas.ExperimentOut.model_validate(row)


@router.post("/runs", status_code=status.HTTP_201_CREATED)
def create_run(body: schemas.RunCreate, access: Writable, platform: PlatformDep) -> schemas.RunOut:
    """Start a run (status RUNNING); the experiment is created if it does not exist."""
    with platform.db.transaction() as s:
        run = platform.tracking.create_run(s, access.project.id, body, access.principal.username)
        return platform.tracking.views(s, [run])[0]


@router.post("/runs/search")
def search_runs(
    body: schemas.RunSearch, access: Readable, platform: PlatformDep
) -> schemas.RunPage:
    """Runs matching a filter (`metrics.auc > 0.9 AND params.model = 'rf'`), ordered, paged."""
    with platform.db.read() as s:
        runs, token = platform.tracking.search(s, access.project.id, body)
        return schemas.RunPage(runs=platform.tracking.views(s, runs), next_page_token=token)


@router.get("/runs")
def list_runs(
    access: Readable,
    platform: PlatformDep,
    experiment: Annotated[list[str] | None, Query(max_length=100)] = None,
    filter: Annotated[str, Query(max_length=10_000)] = "",
    order_by: Annotated[list[str] | None, Query(max_length=20)] = None,
    max_results: Annotated[int, Query(ge=1, le=50_000)] = 100,
    page_token: Annotated[str | None, Query(max_length=64)] = None,
) -> schemas.RunPage:
    """The same as `POST /runs/search`, with the query in the URL."""
    body = schemas.RunSearch(
        experiments=experiment,
        filter=filter,
        order_by=order_by or [],
        max_results=max_results,
        page_token=page_token,
    )
    return search_runs(body, access, platform)


@router.get("/runs/compare")
def compare_runs(
    access: Readable,
    platform: PlatformDep,
    run_id: Annotated[list[str], Query(min_length=1, max_length=50)],
) -> schemas.Comparison:
    """Runs side by side: every param and latest metric, one column per run."""
    with platform.db.read() as s:
        return platform.tracking.compare(s, access.project.id, run_id)


@router.get("/runs/{run_id}")
def get_run(run_id: RunId, access: Readable, platform: PlatformDep) -> schemas.RunOut:
    """A run with its params, tags, latest metrics and dataset inputs."""
    with platform.db.read() as s:
        return platform.tracking.view(s, access.project.id, run_id)


@router.patch("/runs/{run_id}")
def update_run(
    run_id: RunId, body: schemas.RunUpdate, access: Writable, platform: PlatformDep
) -> schemas.RunOut:
    """Rename a run or end it (FINISHED, FAILED, KILLED)."""
    with platform.db.transaction() as s:
        run = platform.tracking.update_run(s, access.project.id, run_id, body)
        return platform.tracking.views(s, [run])[0]


@router.post(
    "/runs/{run_id}/log",
    status_code=status.HTTP_204_NO_CONTENT,
    openapi_extra=json_body(schemas.LogBatch),
)
async def log_batch(
    run_id: RunId, request: Request, access: Writable, platform: PlatformDep
) -> Response:
    """Log params, tags and metric points in one transaction (at most 10,000 items)."""
    raw = await request.body()
    with paused_gc():
        body = parse_body(schemas.LogBatch, raw)

    def write() -> None:
        with audited_transaction(platform, request, status.HTTP_204_NO_CONTENT) as s:
            platform.tracking.log_batch(s, access.project.id, run_id, body)

    await anyio.to_thread.run_sync(write)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/runs/{run_id}/inputs", status_code=status.HTTP_204_NO_CONTENT)
def log_input(
    run_id: RunId, body: schemas.DatasetInput, access: Writable, platform: PlatformDep
) -> Response:
    """Record that the run read a dataset version (lineage)."""
    with platform.db.transaction() as s:
        platform.tracking.record_input(s, access.project.id, run_id, body)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/runs/{run_id}/tags/{key}", status_code=status.HTTP_204_NO_CONTENT)
def delete_tag(
    run_id: RunId,
    key: Annotated[str, Path(max_length=250)],
    access: Writable,
    platform: PlatformDep,
) -> Response:
    """Remove a tag from a run."""
    with platform.db.transaction() as s:
        platform.tracking.delete_tag(s, access.project.id, run_id, key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/runs/{run_id}/metrics")
def metric_keys(run_id: RunId, access: Readable, platform: PlatformDep) -> list[str]:
    """The names of the run's metrics."""
    with platform.db.read() as s:
        return platform.tracking.metric_keys(s, access.project.id, run_id)


@router.get(
    "/runs/{run_id}/metrics/{key}/history",
    responses={200: {"description": "columnar history: steps, values, timestamps"}},
)
def metric_history(
    run_id: RunId,
    key: Annotated[str, Path(max_length=250)],
    access: Readable,
    platform: PlatformDep,
    page_size: Annotated[int, Query(ge=1, le=1_000_000)] = 100_000,
    page_token: Annotated[str | None, Query(max_length=128)] = None,
    max_points: Annotated[int | None, Query(ge=2, le=100_000)] = None,
) -> Response:
    """A metric's history as arrays; `max_points` downsamples to that many buckets."""
    with platform.db.read() as s:
        body = platform.tracking.history(
            s,
            access.project.id,
            run_id,
            key,
            page_size=page_size,
            page_token=page_token,
            max_points=max_points,
        )
    return Response(orjson.dumps(body), media_type="application/json")
