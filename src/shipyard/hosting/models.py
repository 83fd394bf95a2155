"""Tables of the hosting tier: models, endpoint configs, endpoints, replicas, traffic,
promotions (DESIGN §2: spec and status; controllers make status follow spec).

An endpoint's name is unique on the platform, not only in its project: the gateway's path
``/endpoints/{name}/invocations`` carries no team or project, as in SageMaker Runtime.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.db.base import Base, IdMixin, TaggedMixin, TimestampMixin, VersionedMixin
from shipyard.kit.ids import utcnow


class HostedModel(IdMixin, TimestampMixin, TaggedMixin, Base):
    """A deployable model: a registry version, or (dev only) an artifact and a flavor."""

    __tablename__ = "hosted_models"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    # {"kind": "registry", "group": "churn", "version": 23}
    # | {"kind": "artifact", "path": "models/m.tar.gz", "version": 3}
    source: Mapped[dict[str, Any]] = mapped_column(JSON)
    flavor: Mapped[str] = mapped_column(String(32))
    predict: Mapped[str] = mapped_column(String(16), default="predict")  # or "proba"
    environment: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(64), default="")


class EndpointConfig(IdMixin, TimestampMixin, TaggedMixin, Base):
    """Immutable, like SageMaker's: an update points the endpoint at a new config."""

    __tablename__ = "endpoint_configs"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    # {"variants": [{name, model, instance_type, initial_instance_count, initial_weight,
    #   serverless?: {max_concurrency, idle_timeout_s}}], "shadow": {...} | None,
    #  "shadow_percent": 100, "data_capture": {enabled, sampling_percent, capture: [...]}}
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(64), default="")


class Endpoint(IdMixin, TimestampMixin, TaggedMixin, VersionedMixin, Base):
    __tablename__ = "endpoints"
    __table_args__ = (UniqueConstraint("name"), Index("ix_endpoints_status", "status"))

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(16))  # dev | staging | prod
    # What the user wants (config_name) and what serves now (current_config); during an
    # update both fleets run, and a rollback returns to current_config.
    config_name: Mapped[str] = mapped_column(String(63))
    current_config: Mapped[str | None] = mapped_column(String(63), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="Creating")
    reason: Mapped[str] = mapped_column(Text, default="")
    # {"strategy": "all_at_once" | "blue_green" | "canary" | "linear", "bake_s",
    #  "max_error_rate", "canary_percent", "linear_step_percent", "linear_interval_s"}
    deployment: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # {variant: {min, max, target_invocations_per_instance_per_minute, target_cpu_percent,
    #  scale_out_cooldown_s, scale_in_cooldown_s}}
    autoscaling: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The published routing table entry (hosting/routes.py EndpointRoute as JSON).
    routes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The controller that drives this endpoint, until when (adopted after a lapse).
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    request: Mapped[str | None] = mapped_column(String(16), nullable=True)  # "delete"
    # Progress of the current deployment (phase, traffic shift step, bake start, counts).
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(64), default="")


class Replica(IdMixin, Base):
    """One model-server process of an endpoint's fleet, so a controller that adopts the
    endpoint after a crash finds (and ends or keeps) what its predecessor started."""

    __tablename__ = "endpoint_replicas"
    __table_args__ = (Index("ix_endpoint_replicas_endpoint", "endpoint_id"),)

    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    config_name: Mapped[str] = mapped_column(String(63))
    variant: Mapped[str] = mapped_column(String(63))
    shadow: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="Starting")  # Ready, Failed, ...
    host: Mapped[str] = mapped_column(String(255), default="127.0.0.1")
    port: Mapped[int] = mapped_column(Integer, default=0)
    pid: Mapped[int] = mapped_column(Integer, default=0)
    cwd: Mapped[str] = mapped_column(String(1024), default="")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(nullable=True)


class EndpointTraffic(Base):
    """Cumulative per-variant counters, added by each gateway every few seconds; the
    autoscaler and the bake-time error check read rates from them."""

    __tablename__ = "endpoint_traffic"

    gateway_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(
        ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True
    )
    variant: Mapped[str] = mapped_column(String(63), primary_key=True)
    invocations: Mapped[int] = mapped_column(Integer, default=0)
    errors_4xx: Mapped[int] = mapped_column(Integer, default=0)
    errors_5xx: Mapped[int] = mapped_column(Integer, default=0)
    model_latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    # A serverless variant at zero that a request is waiting for (cold start).
    wanted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Promotion(IdMixin, TimestampMixin, Base):
    """One run of the deployment pipeline for a model version into an environment."""

    __tablename__ = "promotions"
    __table_args__ = (Index("ix_promotions_version", "project_id", "group_name", "version"),)

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    group_name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    environment: Mapped[str] = mapped_column(String(16))
    endpoint_name: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(16), default="Running")  # Succeeded, Failed
    # [{"step": "verify", "status": "ok", "detail": "...", "at": iso}, ...]
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    reason: Mapped[str] = mapped_column(Text, default="")
    requested_by: Mapped[str] = mapped_column(String(64), default="")
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class AsyncInvocation(IdMixin, TimestampMixin, Base):
    """One queued request of ``POST /endpoints/{name}/async-invocations`` (InvokeEndpointAsync).

    The row is written before the gateway answers 202, so an accepted request survives any
    crash; a gateway claims it with a lease (a dead gateway's claims lapse and are taken
    again), writes the answer to ``output_path`` or the error to ``failure_path``, and marks
    it done in the same transaction as its completion event.
    """

    __tablename__ = "async_invocations"
    __table_args__ = (
        Index("ix_async_invocations_queue", "status", "lease_until"),
        Index("ix_async_invocations_endpoint", "endpoint_id", "created_at"),
    )

    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    endpoint_name: Mapped[str] = mapped_column(String(63))
    inference_id: Mapped[str] = mapped_column(String(64))
    input_path: Mapped[str] = mapped_column(String(1024))
    input_version: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(String(256), nullable=True)
    accept: Mapped[str | None] = mapped_column(String(256), nullable=True)
    custom_attributes: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    output_path: Mapped[str] = mapped_column(String(1024))
    failure_path: Mapped[str] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(16), default="Queued")  # Running, Completed, Failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    variant: Mapped[str | None] = mapped_column(String(63), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    not_before: Mapped[datetime | None] = mapped_column(nullable=True)  # retry backoff
    expires_at: Mapped[datetime] = mapped_column()
    timeout_s: Mapped[int] = mapped_column(Integer, default=900)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_by: Mapped[str] = mapped_column(String(64), default="")
