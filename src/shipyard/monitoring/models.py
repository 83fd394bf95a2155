"""Tables of model monitoring: baselines, monitoring schedules, their executions.

The heavy data never lives here: a baseline's ``statistics.json`` and ``constraints.json``,
an execution's JSON and HTML reports, and uploaded ground truth are artifacts of the project
(encrypted, versioned); these rows point at them and hold what lists and alerts need.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.db.base import Base, IdMixin, TimestampMixin


class Baseline(IdMixin, TimestampMixin, Base):
    """One version of a named baseline: statistics and suggested constraints of a dataset."""

    __tablename__ = "monitoring_baselines"
    __table_args__ = (UniqueConstraint("project_id", "name", "version"),)

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    version: Mapped[int] = mapped_column(Integer)
    # {"dataset": "marketing", "version": 3} | {"artifact": "data/x.csv", "version": 2}
    source: Mapped[dict[str, Any]] = mapped_column(JSON)
    features: Mapped[list[str]] = mapped_column(JSON)  # in the model's input order
    excluded: Mapped[list[str]] = mapped_column(JSON, default=list)  # the label, ids
    statistics_path: Mapped[str] = mapped_column(String(1024))
    constraints_path: Mapped[str] = mapped_column(String(1024))
    rows: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(64), default="")


class Schedule(IdMixin, TimestampMixin, Base):
    """A monitor of one endpoint: what it checks, when, what it alerts on and does."""

    __tablename__ = "monitoring_schedules"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        Index("ix_monitoring_schedules_due", "enabled", "next_run_at"),
    )

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    endpoint_name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))  # data_quality | model_quality
    baseline_name: Mapped[str | None] = mapped_column(String(63), nullable=True)
    baseline_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    problem_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    cron: Mapped[str] = mapped_column(String(128))
    window_s: Mapped[int] = mapped_column(Integer)
    # [{"metric": "drifted_features", "op": ">", "threshold": 0, "feature": null}, ...]
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # {"retrain": {"job": JobCreate as JSON, "register_group": "churn"} | None}
    actions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(default=True)
    next_run_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_by: Mapped[str] = mapped_column(String(64), default="")


class Execution(IdMixin, TimestampMixin, Base):
    """One run of a schedule over one window of captured traffic."""

    __tablename__ = "monitoring_executions"
    __table_args__ = (
        Index("ix_monitoring_executions_schedule", "schedule_id", "created_at"),
        Index("ix_monitoring_executions_status", "status"),
    )

    schedule_id: Mapped[str] = mapped_column(
        ForeignKey("monitoring_schedules.id", ondelete="CASCADE")
    )
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | manual
    status: Mapped[str] = mapped_column(String(16), default="Pending")
    window_start: Mapped[datetime] = mapped_column()
    window_end: Mapped[datetime] = mapped_column()
    verdict: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # counts, drifted features, violation counts, model-quality metrics: what lists and
    # Prometheus show without opening the report
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # the alert rules this execution broke: [{"metric", "op", "threshold", "value", ...}]
    alerts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    report_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    html_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    # the retraining job an action started, and the model version it became
    retrain_job: Mapped[str | None] = mapped_column(String(63), nullable=True)
    retrain_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    requested_by: Mapped[str] = mapped_column(String(64), default="")
