"""All SQL of the artifact store."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from shipyard.storage.models import ArtifactVersion, ProjectDataKey


def _escape_like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class StorageRepository:
    def latest_data_key(self, s: Session, project_id: str) -> ProjectDataKey | None:
        return s.scalar(
            select(ProjectDataKey)
            .where(ProjectDataKey.project_id == project_id)
            .order_by(ProjectDataKey.key_version.desc())
            .limit(1)
        )

    def data_key(self, s: Session, project_id: str, key_version: int) -> ProjectDataKey | None:
        return s.get(ProjectDataKey, (project_id, key_version))

    def all_data_keys(self, s: Session) -> Sequence[ProjectDataKey]:
        return s.scalars(select(ProjectDataKey)).all()

    def lock_path(self, s: Session, project_id: str, path: str) -> None:
        """Serialize version numbering of one path until the transaction ends.

        PostgreSQL takes a transaction-scoped advisory lock on a hash of the path; SQLite
        needs nothing, its writers already run one at a time (BEGIN IMMEDIATE).
        """
        if s.get_bind().dialect.name == "postgresql":
            s.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                {"key": f"artifact:{project_id}:{path}"},
            )

    def next_version(self, s: Session, project_id: str, path: str) -> int:
        current = s.scalar(
            select(func.max(ArtifactVersion.version)).where(
                ArtifactVersion.project_id == project_id, ArtifactVersion.path == path
            )
        )
        return int(current or 0) + 1

    def version(
        self, s: Session, project_id: str, path: str, version: int | None
    ) -> ArtifactVersion | None:
        query = select(ArtifactVersion).where(
            ArtifactVersion.project_id == project_id, ArtifactVersion.path == path
        )
        if version is not None:
            return s.scalar(query.where(ArtifactVersion.version == version))
        return s.scalar(query.order_by(ArtifactVersion.version.desc()).limit(1))

    def versions(self, s: Session, project_id: str, path: str) -> Sequence[ArtifactVersion]:
        return s.scalars(
            select(ArtifactVersion)
            .where(ArtifactVersion.project_id == project_id, ArtifactVersion.path == path)
            .order_by(ArtifactVersion.version)
        ).all()

    def latest_live(
        self, s: Session, project_id: str, prefix: str, limit: int
    ) -> Sequence[ArtifactVersion]:
        """The newest version of each path under ``prefix`` that is not a delete marker."""
        newest = (
            select(ArtifactVersion.path, func.max(ArtifactVersion.version).label("v"))
            .where(ArtifactVersion.project_id == project_id)
            .where(ArtifactVersion.path.like(_escape_like(prefix) + "%", escape="\\"))
            .group_by(ArtifactVersion.path)
            .subquery()
        )
        return s.scalars(
            select(ArtifactVersion)
            .join(
                newest,
                (ArtifactVersion.path == newest.c.path) & (ArtifactVersion.version == newest.c.v),
            )
            .where(ArtifactVersion.project_id == project_id, ArtifactVersion.deleted.is_(False))
            .order_by(ArtifactVersion.path)
            .limit(limit)
        ).all()

    def add(self, s: Session, row: object) -> None:
        s.add(row)
        s.flush()


storage_repository = StorageRepository()
