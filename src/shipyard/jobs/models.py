"""The job table: one row per job, its spec as submitted and its status as the controller
sees it (DESIGN §2: spec and status, optimistic concurrency on ``row_version``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.db.base import Base, IdMixin, TimestampMixin, VersionedMixin


class Job(IdMixin, TimestampMixin, VersionedMixin, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        Index("ix_jobs_status", "status"),
    )

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="Pending")
    reason: Mapped[str] = mapped_column(Text, default="")
    attempt: Mapped[int] = mapped_column(default=1)
    retries: Mapped[int] = mapped_column(default=0)
    run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    model_artifact: Mapped[str | None] = mapped_column(String(1100), nullable=True)
    phase_times: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Which controller drives the job and until when; a lapsed lease is adopted on restart.
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    # What a user asked of a running job ("stop" or "interrupt"); its controller acts on it.
    request: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # The processes of the current attempt ({"host", "pid", "cwd"}), so a controller that
    # adopts the job after a crash can end what its predecessor left running.
    instances: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    # The API key the job's code logs with; revoked when the job ends.
    token_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # What the job stored: {"model": "path@v", "output": ["path@v", ...], "logs": [...]}.
    output_artifacts: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
