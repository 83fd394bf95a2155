"""Datasets: named, immutable versions with a digest, schema and profile.

The bytes live in the artifact store (encrypted, versioned); a dataset version records which
artifact version it is and what is in it. Profiling runs on a plaintext temporary copy in a
worker thread, before anything is recorded, so a file that does not parse records nothing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
from sqlalchemy.orm import Session

from shipyard.db.engine import Database
from shipyard.errors import Conflict, NotFound, PayloadTooLarge, ValidationFailed
from shipyard.storage.models import ArtifactVersion
from shipyard.storage.service import ArtifactService
from shipyard.tracking import schemas
from shipyard.tracking.models import Dataset, DatasetVersion
from shipyard.tracking.profiling import (
    DatasetFormatError,
    DatasetProfile,
    detect_format,
    profile_file,
)
from shipyard.tracking.repository import tracking_repository as repo

CHUNK = 4 * 1024 * 1024


@dataclass
class Spooled:
    """A plaintext temporary copy of an upload, with what is known about it."""

    path: Path
    size: int
    sha256: str


def version_out(dataset: Dataset, row: DatasetVersion) -> schemas.DatasetVersionOut:
    return schemas.DatasetVersionOut(
        dataset=dataset.name,
        version=row.version,
        artifact_path=row.artifact_path,
        artifact_version=row.artifact_version,
        format=row.format,
        digest=row.digest,
        size=row.size,
        row_count=row.row_count,
        schema_=row.schema_,
        profile=row.profile,
        description=row.description,
        created_by=row.created_by,
        created_at=row.created_at,
    )


@contextmanager
def temporary_file() -> Iterator[Path]:
    fd, name = tempfile.mkstemp(prefix="shipyard-dataset-")
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


async def spool(body: AsyncIterator[bytes], path: Path, max_bytes: int) -> Spooled:
    """Copy a streamed body to ``path``, hashing as it goes; refuse more than ``max_bytes``."""
    digest, size = hashlib.sha256(), 0
    async with await anyio.open_file(path, "wb") as out:
        async for piece in body:
            size += len(piece)
            if size > max_bytes:
                raise PayloadTooLarge(
                    f"the body exceeds the limit of {max_bytes} bytes", field="body"
                )
            digest.update(piece)
            await out.write(piece)
    return Spooled(path, size, digest.hexdigest())


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        while piece := await f.read(CHUNK):
            yield piece


def profile(
    spooled: Spooled, filename: str | None, content_type: str | None, fmt: str | None
) -> DatasetProfile:
    with spooled.path.open("rb") as f:
        head = f.read(8)
    chosen = fmt or detect_format(filename, content_type, head)
    try:
        return profile_file(spooled.path, chosen)  # type: ignore[arg-type]
    except DatasetFormatError as exc:
        raise ValidationFailed(f"the {chosen} file cannot be read: {exc}", field="body") from exc


class DatasetService:
    def __init__(self, artifacts: ArtifactService) -> None:
        self.artifacts = artifacts

    def create(
        self, s: Session, project_id: str, body: schemas.DatasetCreate, actor: str
    ) -> Dataset:
        if repo.dataset(s, project_id, body.name) is not None:
            raise Conflict(f"dataset {body.name!r} already exists", field="name")
        row = Dataset(
            project_id=project_id,
            name=body.name,
            description=body.description,
            tags=dict(body.tags),
            created_by=actor,
        )
        s.add(row)
        s.flush()
        return row

    def ensure(self, s: Session, project_id: str, name: str, actor: str) -> Dataset:
        found = repo.dataset(s, project_id, name)
        if found is not None:
            return found
        return self.create(s, project_id, schemas.DatasetCreate(name=name), actor)

    def get(self, s: Session, project_id: str, name: str) -> Dataset:
        row = repo.dataset(s, project_id, name)
        if row is None:
            raise NotFound(f"dataset {name!r} not found", field="dataset")
        return row

    def listing(self, s: Session, project_id: str) -> list[schemas.DatasetOut]:
        return self._described(s, repo.datasets(s, project_id))

    def describe(self, s: Session, project_id: str, name: str) -> schemas.DatasetOut:
        return self._described(s, [self.get(s, project_id, name)])[0]

    def _described(self, s: Session, rows: Sequence[Dataset]) -> list[schemas.DatasetOut]:
        latest = repo.latest_version_numbers(s, [r.id for r in rows])
        return [
            schemas.DatasetOut.model_validate(r).model_copy(
                update={"latest_version": latest.get(r.id)}
            )
            for r in rows
        ]

    def versions(self, s: Session, project_id: str, name: str) -> list[schemas.DatasetVersionOut]:
        dataset = self.get(s, project_id, name)
        return [version_out(dataset, v) for v in repo.dataset_versions(s, dataset.id)]

    def version(
        self, s: Session, project_id: str, name: str, number: int
    ) -> tuple[Dataset, DatasetVersion]:
        dataset = self.get(s, project_id, name)
        row = repo.dataset_version(s, dataset.id, number)
        if row is None:
            raise NotFound(f"dataset {name!r} has no version {number}", field="version")
        return dataset, row

    def recorder(
        self,
        dataset_id: str,
        spooled: Spooled,
        facts: DatasetProfile,
        description: str,
        actor: str,
        out: list[DatasetVersion],
    ) -> Callable[[Session, ArtifactVersion], None]:
        """What runs inside the artifact's recording transaction: the version row itself."""

        def record(s: Session, artifact: ArtifactVersion) -> None:
            repo.lock_dataset(s, dataset_id)
            row = DatasetVersion(
                dataset_id=dataset_id,
                version=repo.next_dataset_version(s, dataset_id),
                artifact_path=artifact.path,
                artifact_version=artifact.version,
                format=facts.format,
                digest=spooled.sha256,
                size=spooled.size,
                row_count=facts.row_count,
                schema_=facts.schema(),
                profile=facts.as_dict(),
                description=description,
                created_by=actor,
            )
            s.add(row)
            s.flush()
            out.append(row)

        return record

    async def upload(
        self,
        db: Database,
        project_id: str,
        name: str,
        body: AsyncIterator[bytes],
        *,
        filename: str | None,
        content_type: str | None,
        fmt: str | None,
        description: str,
        actor: str,
        max_bytes: int,
    ) -> schemas.DatasetVersionOut:
        with db.transaction() as s:
            dataset = self.ensure(s, project_id, name, actor)
        with temporary_file() as path:
            spooled = await spool(body, path, max_bytes)
            facts = await anyio.to_thread.run_sync(profile, spooled, filename, content_type, fmt)
            made: list[DatasetVersion] = []
            await self.artifacts.upload(
                db,
                project_id,
                f"datasets/{name}/data.{facts.format}",
                file_chunks(path),
                content_type=_MEDIA[facts.format],
                actor=actor,
                then=self.recorder(dataset.id, spooled, facts, description, actor, made),
            )
        return version_out(dataset, made[0])

    async def register(
        self, db: Database, project_id: str, name: str, body: schemas.DatasetRegister, actor: str
    ) -> schemas.DatasetVersionOut:
        """A version from an artifact already stored: read it back, verify, profile, record."""
        path = self.artifacts.clean_path(body.artifact_path)
        with db.read() as s:
            artifact = self.artifacts.find(s, project_id, path, body.artifact_version)
            download = await self.artifacts.open_download(s, artifact)
        with db.transaction() as s:
            dataset = self.ensure(s, project_id, name, actor)
        with temporary_file() as tmp:
            spooled = await spool(download.__aiter__(), tmp, 2**63)
            facts = await anyio.to_thread.run_sync(
                profile, spooled, path, artifact.content_type, body.format
            )
            made: list[DatasetVersion] = []
            record = self.recorder(dataset.id, spooled, facts, body.description, actor, made)

            def commit() -> None:
                with db.transaction() as s:
                    record(s, artifact)

            await anyio.to_thread.run_sync(commit)
        return version_out(dataset, made[0])

    def usage(
        self, s: Session, project_id: str, name: str, number: int
    ) -> tuple[Dataset, list[str]]:
        dataset, row = self.version(s, project_id, name, number)
        return dataset, repo.runs_reading(s, row.id)


_MEDIA = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
