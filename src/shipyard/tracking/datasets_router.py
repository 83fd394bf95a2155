"""Routes of datasets: create, upload versions (CSV/Parquet body), register, list, lineage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status

from shipyard.api.deps import PlatformDep, ProjectAccess, project_access
from shipyard.security.permissions import Permission
from shipyard.tracking import schemas
from shipyard.tracking.datasets import version_out

router = APIRouter(prefix="/api/v1/projects/{team}/{project}/datasets", tags=["datasets"])
Readable = Annotated[ProjectAccess, Depends(project_access(Permission.TRACKING_READ))]
Writable = Annotated[ProjectAccess, Depends(project_access(Permission.TRACKING_WRITE))]
Name = Annotated[
    str, Path(pattern=schemas.DATASET_NAME, max_length=128, description="the dataset's name")
]
Version = Annotated[int, Path(ge=1, description="a version number")]
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
            "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post("", status_code=status.HTTP_201_CREATED)
def create_dataset(
    body: schemas.DatasetCreate, access: Writable, platform: PlatformDep
) -> schemas.DatasetOut:
    """Create an empty named dataset; versions are uploaded into it."""
    with platform.db.transaction() as s:
        row = platform.datasets.create(s, access.project.id, body, access.principal.username)
        return schemas.DatasetOut.model_validate(row)


@router.get("")
def list_datasets(access: Readable, platform: PlatformDep) -> list[schemas.DatasetOut]:
    """The project's datasets with their latest version number."""
    with platform.db.read() as s:
        return platform.datasets.listing(s, access.project.id)


@router.get("/{name}")
def get_dataset(name: Name, access: Readable, platform: PlatformDep) -> schemas.DatasetOut:
    """One dataset."""
    with platform.db.read() as s:
        return platform.datasets.describe(s, access.project.id, name)


@router.put("/{name}/versions", status_code=status.HTTP_201_CREATED, openapi_extra=_BODY)
async def upload_version(
    name: Name,
    request: Request,
    access: Writable,
    platform: PlatformDep,
    format: Annotated[str | None, Query(pattern="^(csv|parquet)$")] = None,
    filename: Annotated[str | None, Query(max_length=256)] = None,
    description: Annotated[str, Query(max_length=10_000)] = "",
) -> schemas.DatasetVersionOut:
    """Upload a CSV or Parquet file (the body) as the next immutable version, profiled."""
    return await platform.datasets.upload(
        platform.db,
        access.project.id,
        name,
        request.stream(),
        filename=filename,
        content_type=request.headers.get("content-type"),
        fmt=format,
        description=description,
        actor=access.principal.username,
        max_bytes=platform.settings.max_upload_bytes,
    )


@router.post("/{name}/versions", status_code=status.HTTP_201_CREATED)
async def register_version(
    name: Name, body: schemas.DatasetRegister, access: Writable, platform: PlatformDep
) -> schemas.DatasetVersionOut:
    """Make the next version from a file already in the artifact store."""
    return await platform.datasets.register(
        platform.db, access.project.id, name, body, access.principal.username
    )


@router.get("/{name}/versions")
def list_versions(
    name: Name, access: Readable, platform: PlatformDep
) -> list[schemas.DatasetVersionOut]:
    """Every version of a dataset, oldest first."""
    with platform.db.read() as s:
        return platform.datasets.versions(s, access.project.id, name)


@router.get("/{name}/versions/{version}")
def get_version(
    name: Name, version: Version, access: Readable, platform: PlatformDep
) -> schemas.DatasetVersionOut:
    """One version with its schema and profile."""
    with platform.db.read() as s:
        dataset, row = platform.datasets.version(s, access.project.id, name, version)
        return version_out(dataset, row)


@router.get("/{name}/versions/{version}/runs")
def version_usage(
    name: Name, version: Version, access: Readable, platform: PlatformDep
) -> schemas.DatasetUsage:
    """Lineage: the runs that read this dataset version."""
    with platform.db.read() as s:
        dataset, run_ids = platform.datasets.usage(s, access.project.id, name, version)
        runs = [platform.tracking.run(s, access.project.id, r) for r in run_ids]
        return schemas.DatasetUsage(
            dataset=dataset.name, version=version, runs=platform.tracking.views(s, runs)
        )
