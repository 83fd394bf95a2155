"""Routes of the model registry: groups, versions, approve/reject."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from shipyard.api.deps import PlatformDep, ProjectAccess, project_access
from shipyard.registry import schemas
from shipyard.registry.models import ModelGroup, ModelVersion
from shipyard.security.permissions import Permission

router = APIRouter(prefix="/api/v1/projects/{team}/{project}/models", tags=["models"])
Readable = Annotated[ProjectAccess, Depends(project_access(Permission.MODEL_READ))]
Registrable = Annotated[ProjectAccess, Depends(project_access(Permission.MODEL_REGISTER))]
Approver = Annotated[ProjectAccess, Depends(project_access(Permission.MODEL_APPROVE))]
Group = Annotated[str, Path(max_length=128, description="a model group's name")]
Number = Annotated[int, Path(ge=1, le=2**31 - 1, description="a version number")]


def _group(row: ModelGroup) -> schemas.ModelGroupOut:
    return schemas.ModelGroupOut.model_validate(row)


def _version(row: ModelVersion, group: str) -> schemas.ModelVersionOut:
    data = {c: getattr(row, c) for c in schemas.ModelVersionOut.model_fields if c != "group"}
    return schemas.ModelVersionOut.model_validate({**data, "group": group})


@router.post("", status_code=status.HTTP_201_CREATED)
def create_group(
    body: schemas.ModelGroupCreate, access: Registrable, platform: PlatformDep
) -> schemas.ModelGroupOut:
    """Create a model group: the versions of one model, numbered 1, 2, 3…"""
    with platform.db.transaction() as s:
        row = platform.registry.create_group(s, access.project.id, body, access.principal.username)
        return _group(row)


@router.get("")
def list_groups(access: Readable, platform: PlatformDep) -> list[schemas.ModelGroupOut]:
    """The project's model groups."""
    with platform.db.read() as s:
        return [_group(g) for g in platform.registry.groups(s, access.project.id)]


@router.get("/{group}")
def get_group(group: Group, access: Readable, platform: PlatformDep) -> schemas.ModelGroupOut:
    with platform.db.read() as s:
        return _group(platform.registry.group(s, access.project.id, group))


@router.post("/{group}/versions", status_code=status.HTTP_201_CREATED)
async def register_version(
    group: Group, body: schemas.ModelVersionCreate, access: Registrable, platform: PlatformDep
) -> schemas.ModelVersionOut:
    """Register a version from a completed job, a run's artifact or an artifact: its files
    are hashed into a manifest and scanned for unsafe pickles; a dangerous finding makes it
    Blocked, otherwise it waits for approval."""
    row = await platform.registry.register(
        platform.db, access.project.id, group, body, access.principal.username
    )
    return _version(row, group)


@router.get("/{group}/versions")
def list_versions(
    group: Group, access: Readable, platform: PlatformDep
) -> list[schemas.ModelVersionOut]:
    """The group's versions, newest first."""
    with platform.db.read() as s:
        rows = platform.registry.versions(s, access.project.id, group)
        return [_version(r, group) for r in rows]


@router.get("/{group}/versions/{version}")
def get_version(
    group: Group, version: Number, access: Readable, platform: PlatformDep
) -> schemas.ModelVersionOut:
    with platform.db.read() as s:
        return _version(platform.registry.version(s, access.project.id, group, version), group)


def _decide(
    platform: PlatformDep,
    access: ProjectAccess,
    group: str,
    version: int,
    body: schemas.Decision,
    *,
    approve: bool,
) -> schemas.ModelVersionOut:
    with platform.db.transaction() as s:
        row = platform.registry.decide(
            s,
            access.project.id,
            group,
            version,
            approve=approve,
            actor=access.principal.username,
            comment=body.comment,
        )
        return _version(row, group)


@router.post("/{group}/versions/{version}/approve")
def approve_version(
    group: Group, version: Number, body: schemas.Decision, access: Approver, platform: PlatformDep
) -> schemas.ModelVersionOut:
    """Approve a pending version (a lead or admin other than its registrant)."""
    return _decide(platform, access, group, version, body, approve=True)


@router.post("/{group}/versions/{version}/reject")
def reject_version(
    group: Group, version: Number, body: schemas.Decision, access: Approver, platform: PlatformDep
) -> schemas.ModelVersionOut:
    """Reject a pending version; the comment saying why is required."""
    return _decide(platform, access, group, version, body, approve=False)
