"""Artifact store logic: immutable versions, encrypted blobs, presigned URLs.

User paths are metadata only: blobs live under server-generated keys
(``blobs/<project id>/<random id>``), so no user input ever becomes a filesystem path.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from urllib.parse import quote

import anyio
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.db.engine import Database
from shipyard.errors import Conflict, NotFound, PermissionDenied
from shipyard.kit.ids import new_id
from shipyard.kit.paths import validate_artifact_path
from shipyard.storage import schemas
from shipyard.storage.backends import BlobStore
from shipyard.storage.datakeys import DataKeys
from shipyard.storage.models import ArtifactVersion
from shipyard.storage.repository import storage_repository as repo
from shipyard.storage.transfer import BlobDownload, BlobUpload, WrittenBlob


class ArtifactService:
    def __init__(
        self,
        *,
        blobs: BlobStore,
        data_keys: DataKeys,
        presign_secret: Callable[[], bytes],
        max_upload_bytes: int,
    ) -> None:
        self.blobs = blobs
        self.data_keys = data_keys
        self._presign_secret = presign_secret
        self._max_upload = max_upload_bytes

    @staticmethod
    def clean_path(raw: str) -> str:
        return validate_artifact_path(raw)

    def begin_upload(self, s: Session, project_id: str) -> tuple[BlobUpload, int]:
        key_version, data_key = self.data_keys.current(s, project_id)
        blob_key = f"blobs/{project_id}/{new_id()}"
        return BlobUpload(self.blobs, blob_key, data_key, self._max_upload), key_version

    def record_version(
        self,
        s: Session,
        project_id: str,
        path: str,
        blob: WrittenBlob,
        *,
        key_version: int,
        content_type: str,
        actor: str,
    ) -> ArtifactVersion:
        """Give the written blob the next version number of its path, never reused."""
        repo.lock_path(s, project_id, path)
        row = ArtifactVersion(
            project_id=project_id,
            path=path,
            version=repo.next_version(s, project_id, path),
            size=blob.size,
            sha256=blob.sha256,
            blob_key=blob.blob_key,
            key_version=key_version,
            content_type=content_type,
            created_by=actor,
        )
        try:
            with s.begin_nested():
                repo.add(s, row)
        except IntegrityError as exc:  # only if a writer bypassed the lock
            raise Conflict(f"a concurrent write to {path!r} won; retry", field="path") from exc
        return row

    async def upload(
        self,
        db: Database,
        project_id: str,
        path: str,
        body: AsyncIterator[bytes],
        *,
        content_type: str,
        actor: str,
        then: Callable[[Session, ArtifactVersion], None] | None = None,
    ) -> ArtifactVersion:
        """Stream ``body`` into a new version of ``path``; ``then`` runs in the recording
        transaction, so a domain row that points at the version commits with it or not at all.
        The blob is written before any transaction opens: a slow upload holds no lock."""
        with db.transaction() as s:
            upload, key_version = self.begin_upload(s, project_id)
        written = await upload.write_all(body)

        def record() -> ArtifactVersion:
            with db.transaction() as s:
                row = self.record_version(
                    s,
                    project_id,
                    path,
                    written,
                    key_version=key_version,
                    content_type=content_type[:255],
                    actor=actor,
                )
                if then is not None:
                    then(s, row)
                return row

        try:
            return await anyio.to_thread.run_sync(record)
        except BaseException:
            await anyio.to_thread.run_sync(self.discard_blob, written.blob_key)
            raise

    async def put(
        self,
        db: Database,
        project_id: str,
        path: str,
        data: bytes,
        *,
        content_type: str,
        actor: str,
        then: Callable[[Session, ArtifactVersion], None] | None = None,
    ) -> ArtifactVersion:
        """``upload`` of bytes already in memory (a report, a capture batch, a small body)."""

        async def whole() -> AsyncIterator[bytes]:
            yield data

        return await self.upload(
            db, project_id, path, whole(), content_type=content_type, actor=actor, then=then
        )

    def discard_blob(self, blob_key: str) -> None:
        self.blobs.delete(blob_key)

    def find(self, s: Session, project_id: str, path: str, version: int | None) -> ArtifactVersion:
        row = repo.version(s, project_id, path, version)
        if row is None or (row.deleted and version is None):
            raise NotFound(f"artifact {path!r} not found", field="path")
        if row.deleted:
            raise NotFound(f"version {version} of {path!r} is a delete marker", field="version")
        return row

    async def open_download(self, s: Session, row: ArtifactVersion) -> BlobDownload:
        data_key = self.data_keys.get(s, row.project_id, row.key_version)
        download = BlobDownload(self.blobs, row.blob_key, data_key, row.sha256)
        await download.start()
        return download

    def delete(self, s: Session, project_id: str, path: str, actor: str) -> ArtifactVersion:
        """Write a delete marker; earlier versions stay readable by number."""
        self.find(s, project_id, path, None)
        blob = WrittenBlob(blob_key="", size=0, sha256="")
        row = self.record_version(
            s, project_id, path, blob, key_version=0, content_type="", actor=actor
        )
        row.deleted = True
        s.flush()
        return row

    def list_latest(
        self, s: Session, project_id: str, prefix: str, limit: int
    ) -> Sequence[ArtifactVersion]:
        return repo.latest_live(s, project_id, prefix, limit)

    def versions(self, s: Session, project_id: str, path: str) -> Sequence[ArtifactVersion]:
        rows = repo.versions(s, project_id, path)
        if not rows:
            raise NotFound(f"artifact {path!r} not found", field="path")
        return rows

    # --- presigned URLs ----------------------------------------------------------------

    def _signature(self, project_id: str, path: str, version: int, expires: int) -> str:
        message = f"{project_id}\n{path}\n{version}\n{expires}".encode()
        return hmac.new(self._presign_secret(), message, hashlib.sha256).hexdigest()

    def presign(
        self, row: ArtifactVersion, *, base_url: str, team: str, project: str, expires_in: int
    ) -> schemas.PresignOut:
        expires = int(time.time()) + expires_in
        signature = self._signature(row.project_id, row.path, row.version, expires)
        url = (
            f"{base_url.rstrip('/')}/api/v1/projects/{quote(team)}/{quote(project)}/artifacts/"
            f"{quote(row.path)}?version={row.version}&expires={expires}&signature={signature}"
        )
        return schemas.PresignOut(
            url=url, version=row.version, expires_at=datetime.fromtimestamp(expires, UTC)
        )

    def check_presigned(
        self, project_id: str, path: str, version: int | None, expires: int, signature: str
    ) -> None:
        if version is None:
            raise PermissionDenied("a presigned URL must name a version", field="version")
        expected = self._signature(project_id, path, version, expires)
        if not hmac.compare_digest(expected, signature):
            raise PermissionDenied("the presigned URL's signature is not valid", field="signature")
        if expires < time.time():
            raise PermissionDenied("the presigned URL has expired", field="expires")
