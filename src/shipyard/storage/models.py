"""Artifact versions and per-project data keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.db.base import Base, IdMixin
from shipyard.kit.ids import utcnow


class ProjectDataKey(Base):
    """A project's AES-256 data key, wrapped by the master key identified by ``master_key_id``.

    Rotating the master key re-wraps these rows; blobs are never re-encrypted.
    """

    __tablename__ = "project_data_keys"

    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    key_version: Mapped[int] = mapped_column(primary_key=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ArtifactVersion(IdMixin, Base):
    """One immutable version of a path; a delete is a version with ``deleted`` set."""

    __tablename__ = "artifact_versions"
    __table_args__ = (
        UniqueConstraint("project_id", "path", "version"),
        Index("ix_artifact_versions_project_path", "project_id", "path"),
    )

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(1024))
    version: Mapped[int]
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    blob_key: Mapped[str] = mapped_column(String(128), default="")
    key_version: Mapped[int] = mapped_column(default=1)
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
