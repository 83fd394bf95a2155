"""Tables of the model registry.

A version's number comes from its group's counter (``next_version``), which only ever
grows: numbers are unique and increasing even under concurrent registration, and never
reused after a delete. Approval binds to ``manifest_digest`` (every file's SHA-256), so bytes
changed after approval fail verification.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.db.base import Base, IdMixin, TaggedMixin, TimestampMixin, VersionedMixin
from shipyard.kit.ids import utcnow


class ModelGroup(IdMixin, TimestampMixin, TaggedMixin, VersionedMixin, Base):
    __tablename__ = "model_groups"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    # The last number handed out; bumped atomically, never lowered.
    last_version: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(64), default="")


class ModelVersion(IdMixin, TimestampMixin, VersionedMixin, Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("group_id", "version"),
        Index("ix_model_versions_status", "status"),
    )

    group_id: Mapped[str] = mapped_column(ForeignKey("model_groups.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    artifact_path: Mapped[str] = mapped_column(String(1024))
    artifact_version: Mapped[int] = mapped_column(Integer)
    # {"files": {member: sha256}, "artifact_sha256": ...}; its digest is what approval binds to
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    manifest_digest: Mapped[str] = mapped_column(String(64))
    flavor: Mapped[str] = mapped_column(String(32))
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    example: Mapped[Any | None] = mapped_column(JSON, nullable=True)
    metrics: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    job_name: Mapped[str | None] = mapped_column(String(63), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    dataset_versions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    scan: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    registered_by: Mapped[str] = mapped_column(String(64))
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    decision_comment: Mapped[str] = mapped_column(Text, default="")
    deleted: Mapped[bool] = mapped_column(default=False)


class ModelCard(IdMixin, Base):
    """One revision of a version's model card. Every edit adds a revision (the card's
    history is kept); edits stop once the version is decided, so what a lead approved is
    what the card says forever."""

    __tablename__ = "model_cards"
    __table_args__ = (UniqueConstraint("version_id", "revision"),)

    version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
