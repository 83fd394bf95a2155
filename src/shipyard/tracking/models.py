"""Tables of tracking: experiments, runs, params, tags, metrics, datasets and lineage.

Metrics are split in two so neither listings nor history pay for the other:
``metric_series`` holds one row per (run, key) with the latest value inline (what listings,
search and ordering read), and ``metric_blocks`` holds the history: each logged batch of a
series as packed arrays, read back as arrays (what charts and history pages read).
Times that MLflow exchanges are kept as epoch milliseconds, exactly as clients send them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.db.base import Base, IdMixin
from shipyard.kit.ids import utcnow

# SQLite only auto-increments an INTEGER PRIMARY KEY; BIGINT elsewhere.
AutoBigInt = BigInteger().with_variant(Integer(), "sqlite")


class Experiment(IdMixin, Base):
    __tablename__ = "experiments"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    lifecycle_stage: Mapped[str] = mapped_column(String(16), default="active")
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Run(IdMixin, Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_experiment_start", "experiment_id", "start_time"),
        Index("ix_runs_project_start", "project_id", "start_time"),
    )

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256), default="")
    status: Mapped[str] = mapped_column(String(16), default="RUNNING")
    start_time: Mapped[int] = mapped_column(BigInteger)
    end_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    user_id: Mapped[str] = mapped_column(String(64), default="")
    parent_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    source_name: Mapped[str] = mapped_column(String(512), default="")
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    git_dirty: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    lifecycle_stage: Mapped[str] = mapped_column(String(16), default="active")
    artifact_root: Mapped[str] = mapped_column(String(512), default="")


class RunParam(Base):
    """Params are write-once, as in MLflow: a different value for a logged key is refused."""

    __tablename__ = "run_params"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RunTag(Base):
    __tablename__ = "run_tags"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class MetricSeries(Base):
    """One metric of one run, with its latest point (max step, then time, then value)."""

    __tablename__ = "metric_series"
    __table_args__ = (
        UniqueConstraint("run_id", "key"),
        Index("ix_metric_series_key_value", "key", "latest_value"),
    )

    id: Mapped[int] = mapped_column(AutoBigInt, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(250))
    latest_value: Mapped[float] = mapped_column(Float)
    latest_is_nan: Mapped[bool] = mapped_column(Boolean, default=False)
    latest_step: Mapped[int] = mapped_column(BigInteger)
    latest_timestamp: Mapped[int] = mapped_column(BigInteger)
    point_count: Mapped[int] = mapped_column(BigInteger, default=0)


class MetricBlock(Base):
    """One logged batch of one series as packed arrays.

    A history is a few blobs per series turned into arrays, without a Python object or a
    database row per point; writing a 10,000-point batch is one row. Values keep NaN and
    infinities natively (IEEE 754 in the blob).
    """

    __tablename__ = "metric_blocks"
    __table_args__ = (Index("ix_metric_blocks_series", "series_id", "id"),)

    id: Mapped[int] = mapped_column(AutoBigInt, primary_key=True, autoincrement=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("metric_series.id", ondelete="CASCADE"))
    count: Mapped[int]
    steps: Mapped[bytes] = mapped_column(LargeBinary)  # int64, little-endian
    timestamps: Mapped[bytes] = mapped_column(LargeBinary)  # int64 epoch ms
    values: Mapped[bytes] = mapped_column(LargeBinary)  # float64


class Dataset(IdMixin, Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetVersion(IdMixin, Base):
    """An immutable version: the bytes live in the artifact store, the facts live here."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)

    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    version: Mapped[int]
    artifact_path: Mapped[str] = mapped_column(String(1024))
    artifact_version: Mapped[int]
    format: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    row_count: Mapped[int] = mapped_column(BigInteger, default=0)
    schema_: Mapped[list[dict[str, str]]] = mapped_column("schema", JSON, default=list)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunInput(Base):
    """Lineage: this run read this dataset version (with a context such as training/eval)."""

    __tablename__ = "run_inputs"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    dataset_version_id: Mapped[str] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    context: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
