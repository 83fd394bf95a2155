"""Routes of the artifact store. Bodies stream in both directions; see ``transfer``."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials

from shipyard.api.deps import (
    PlatformDep,
    ProjectAccess,
    authenticate_now,
    bearer_scheme,
    project_access,
    resolve_project_access,
)
from shipyard.bootstrap import Platform
from shipyard.errors import PayloadTooLarge
from shipyard.security.permissions import Permission
from shipyard.storage import schemas
from shipyard.storage.models import ArtifactVersion
from shipyard.storage.service import ArtifactService

router = APIRouter(prefix="/api/v1", tags=["artifacts"])
BASE = "/projects/{team}/{project}"
ArtifactPath = Annotated[str, Path(max_length=4096, description="the artifact's path")]
VersionQuery = Annotated[int | None, Query(ge=1, description="a version number")]
Readable = Annotated[ProjectAccess, Depends(project_access(Permission.ARTIFACT_READ))]
Writable = Annotated[ProjectAccess, Depends(project_access(Permission.ARTIFACT_WRITE))]
Deletable = Annotated[ProjectAccess, Depends(project_access(Permission.ARTIFACT_DELETE))]


def _service(platform: Platform) -> ArtifactService:
    return platform.artifacts


def _out(row: ArtifactVersion) -> schemas.ArtifactVersionOut:
    return schemas.ArtifactVersionOut.model_validate(row)


def _headers(row: ArtifactVersion) -> dict[str, str]:
    return {
        "Content-Length": str(row.size),
        "ETag": f'"{row.sha256}"',
        "X-Shipyard-Version": str(row.version),
        "X-Shipyard-SHA256": row.sha256,
        "Content-Type": row.content_type or "application/octet-stream",
    }


def _read_access(
    request: Request,
    platform: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    team: Annotated[str, Path(max_length=64)],
    project: Annotated[str, Path(max_length=64)],
    path: ArtifactPath,
    version: VersionQuery = None,
    expires: Annotated[int | None, Query(description="presigned URL expiry (unix time)")] = None,
    signature: Annotated[str | None, Query(max_length=128)] = None,
) -> str:
    """A bearer token with artifact:read, or a valid presigned signature; returns project id."""
    if signature is None:
        principal = authenticate_now(request, platform, credentials)
        access = resolve_project_access(
            request, platform, principal, team, project, Permission.ARTIFACT_READ
        )
        return access.project.id
    with platform.db.read() as s:
        _, found = platform.identity.resolve_project(s, team, project)
    clean = ArtifactService.clean_path(path)
    _service(platform).check_presigned(found.id, clean, version, expires or 0, signature)
    return found.id


ReadAccess = Annotated[str, Depends(_read_access)]


_BINARY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.put(
    BASE + "/artifacts/{path:path}",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_BINARY_BODY,
)
async def put_artifact(
    request: Request, path: ArtifactPath, access: Writable, platform: PlatformDep
) -> schemas.ArtifactVersionOut:
    """Upload a new immutable version of an artifact (the raw request body)."""
    service = _service(platform)
    clean = service.clean_path(path)
    declared = int(request.headers.get("content-length") or 0)
    if declared > platform.settings.max_upload_bytes:
        limit = platform.settings.max_upload_bytes
        raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes", field="body")
    content_type = request.headers.get("content-type") or "application/octet-stream"
    row = await service.upload(
        platform.db,
        access.project.id,
        clean,
        request.stream(),
        content_type=content_type,
        actor=access.principal.username,
    )
    return _out(row)


@router.head(BASE + "/artifacts/{path:path}")
def head_artifact(
    path: ArtifactPath, project_id: ReadAccess, platform: PlatformDep, version: VersionQuery = None
) -> Response:
    """The headers of a download (size, version, SHA-256) without the body."""
    with platform.db.read() as s:
        row = _service(platform).find(s, project_id, ArtifactService.clean_path(path), version)
    return Response(headers=_headers(row))


@router.get(BASE + "/artifacts/{path:path}", response_class=StreamingResponse)
async def get_artifact(
    path: ArtifactPath, project_id: ReadAccess, platform: PlatformDep, version: VersionQuery = None
) -> StreamingResponse:
    """Download a version of an artifact (the latest unless `version` is given)."""
    service = _service(platform)
    clean = service.clean_path(path)

    def find() -> ArtifactVersion:
        with platform.db.read() as s:
            return service.find(s, project_id, clean, version)

    return await download_response(platform, await anyio.to_thread.run_sync(find))


async def download_response(platform: Platform, row: ArtifactVersion) -> StreamingResponse:
    """A stored version's bytes, streamed, with its size, version and digest as headers
    (also how other domains hand out artifacts they point at)."""
    with platform.db.read() as s:
        download = await _service(platform).open_download(s, row)
    headers = _headers(row)
    media_type = headers.pop("Content-Type")
    return StreamingResponse(download, headers=headers, media_type=media_type)


@router.delete(BASE + "/artifacts/{path:path}")
def delete_artifact(
    path: ArtifactPath, access: Deletable, platform: PlatformDep
) -> schemas.ArtifactVersionOut:
    """Delete an artifact: writes a delete marker; earlier versions stay readable."""
    service = _service(platform)
    with platform.db.transaction() as s:
        row = service.delete(
            s, access.project.id, service.clean_path(path), access.principal.username
        )
        return _out(row)


@router.get(BASE + "/artifacts")
def list_artifacts(
    access: Readable,
    platform: PlatformDep,
    prefix: Annotated[str, Query(max_length=1024)] = "",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[schemas.ArtifactVersionOut]:
    """List the latest live version of each artifact under a prefix."""
    with platform.db.read() as s:
        rows = _service(platform).list_latest(s, access.project.id, prefix, limit)
        return [_out(r) for r in rows]


@router.get(BASE + "/artifact-versions/{path:path}")
def list_versions(
    path: ArtifactPath, access: Readable, platform: PlatformDep
) -> list[schemas.ArtifactVersionOut]:
    """Every version of an artifact, delete markers included, oldest first."""
    service = _service(platform)
    with platform.db.read() as s:
        rows = service.versions(s, access.project.id, service.clean_path(path))
        return [_out(r) for r in rows]


@router.post(BASE + "/artifact-presign/{path:path}")
def presign(
    path: ArtifactPath,
    data: schemas.PresignRequest,
    request: Request,
    access: Readable,
    platform: PlatformDep,
) -> schemas.PresignOut:
    """An expiring URL that downloads one version without a token."""
    service = _service(platform)
    with platform.db.read() as s:
        row = service.find(s, access.project.id, service.clean_path(path), data.version)
    return service.presign(
        row,
        base_url=str(request.base_url),
        team=access.team.name,
        project=access.project.name,
        expires_in=data.expires_in,
    )
