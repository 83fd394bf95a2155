"""Routes of batch transforms: create, list, show. Logs, stop and events are the job's
(``/jobs/{name}/logs``, ``/jobs/{name}/stop``): a transform job is a job of the project."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from shipyard.api.deps import PlatformDep, ProjectAccess, project_access
from shipyard.bootstrap import Platform
from shipyard.hosting.transform import schemas
from shipyard.hosting.transform.service import TransformService, view
from shipyard.jobs.schemas import JobStatus
from shipyard.security.permissions import Permission

router = APIRouter(prefix="/api/v1/projects/{team}/{project}/transform-jobs", tags=["transform"])
Readable = Annotated[ProjectAccess, Depends(project_access(Permission.JOB_READ))]
Runnable = Annotated[ProjectAccess, Depends(project_access(Permission.JOB_RUN))]
Name = Annotated[str, Path(max_length=63, description="the transform job's name")]


def _service(platform: Platform) -> TransformService:
    """Built per request from the platform's services: it holds no state of its own."""
    return TransformService(registry=platform.registry, jobs=platform.jobs)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_transform_job(
    body: schemas.TransformJobCreate, access: Runnable, platform: PlatformDep
) -> schemas.TransformJobOut:
    """Run a registry version over every record of the input; the job starts at once."""
    job = await _service(platform).create(
        platform.db, access.team, access.project, body, access.principal.username
    )
    platform.wake_jobs()
    return view(job)


@router.get("")
def list_transform_jobs(
    access: Readable,
    platform: PlatformDep,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[schemas.TransformJobOut]:
    """The project's transform jobs, newest first."""
    with platform.db.read() as s:
        rows = _service(platform).listing(
            s, access.project.id, limit, status_.value if status_ else None
        )
        return [view(row) for row in rows]


@router.get("/{name}")
def get_transform_job(
    name: Name, access: Readable, platform: PlatformDep
) -> schemas.TransformJobOut:
    """One transform job: its status and reason, its options, and its stored outputs."""
    with platform.db.read() as s:
        return view(_service(platform).get(s, access.project.id, name))
