"""API shapes of hosting: models, endpoint configs, endpoints, deployments, promotions.

What can be checked without the database is checked here (a 422 naming the field); what needs
the catalog, the registry or other rows (instance types, models, approval) is the service's.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from shipyard.errors import InvalidPath
from shipyard.kit.paths import validate_artifact_path

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", max_length=63)]
VersionLabel = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")]
VariantName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$", max_length=63)
]
GroupName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
Tags = dict[Annotated[str, StringConstraints(min_length=1, max_length=128)], str]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Variables that would let a model's settings change what runs or where it listens: a
# staging/prod replica must run exactly the approved bytes, whatever the model row says.
_RESERVED_ENV = ("LD_", "PYTHON", "SM_", "SAGEMAKER_", "SHIPYARD_")
_RESERVED_NAMES = frozenset({"PATH", "HOME"})


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)


class Environment(StrEnum):
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"

    @property
    def gated(self) -> bool:
        """Only approved, verified registry versions may be deployed here (DESIGN §5)."""
        return self is not Environment.DEV


class EndpointStatus(StrEnum):
    CREATING = "Creating"
    IN_SERVICE = "InService"
    UPDATING = "Updating"
    ROLLING_BACK = "RollingBack"
    FAILED = "Failed"
    DELETING = "Deleting"


class Strategy(StrEnum):
    ALL_AT_ONCE = "all_at_once"  # switch everything once the new fleet is up; no bake
    BLUE_GREEN = "blue_green"  # switch everything, bake, roll back on errors
    CANARY = "canary"  # canary_percent first, bake, then the rest, bake
    LINEAR = "linear"  # linear_step_percent every linear_interval_s, then bake


class ReplicaStatus(StrEnum):
    STARTING = "Starting"
    READY = "Ready"
    STOPPING = "Stopping"


class PromotionStatus(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


# --- hosted models -----------------------------------------------------------------------------


class HostedModelCreate(Schema):
    """A registry version (``group`` + ``version``), or — dev only — an artifact and a flavor."""

    name: Name
    group: GroupName | None = None
    version: int | None = Field(default=None, ge=1)
    artifact_path: str | None = Field(default=None, max_length=1024)
    artifact_version: int | None = Field(default=None, ge=1)
    flavor: Literal["sklearn", "xgboost", "pytorch", "onnx", "custom"] | None = Field(
        default=None, description="required for an artifact; a registry version has its own"
    )
    predict: Literal["predict", "proba"] = "predict"
    model_version_label: VersionLabel | None = Field(
        default=None, description="what answers carry as model_version (default v<version>)"
    )
    environment: dict[str, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict, max_length=50, description="extra variables for the replicas"
    )
    tags: Tags = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> HostedModelCreate:
        registry = self.group is not None or self.version is not None
        if registry and self.artifact_path is not None:
            raise ValueError("give group and version, or artifact_path, not both")
        if registry and (self.group is None or self.version is None):
            raise ValueError("a registry model needs both group and version")
        if not registry and self.artifact_path is None:
            raise ValueError("a model needs a source: group and version, or artifact_path")
        if self.artifact_path is None and self.artifact_version is not None:
            raise ValueError("artifact_version goes with artifact_path")
        return self

    @field_validator("artifact_path")
    @classmethod
    def _clean_path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_artifact_path(value)
        except InvalidPath as exc:
            raise ValueError(exc.message) from None

    @field_validator("environment")
    @classmethod
    def _safe_environment(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"environment variable {name!r}: letters, digits and '_'")
            if name.upper().startswith(_RESERVED_ENV) or name.upper() in _RESERVED_NAMES:
                raise ValueError(f"environment variable {name!r} is reserved by the platform")
            if "\x00" in text:
                raise ValueError(f"environment variable {name!r}: the value holds a NUL")
        return value


class HostedModelOut(Schema):
    name: str
    source: dict[str, Any]
    flavor: str
    predict: str
    environment: dict[str, str]
    model_version: str = Field(description="what answers carry: 'v23', or 'dev' for artifacts")
    tags: dict[str, str]
    created_by: str
    created_at: datetime


# --- endpoint configs ---------------------------------------------------------------------------


class Serverless(Schema):
    """Scale to zero: no replica while idle; the first request starts one (a cold start)."""

    max_concurrency: int = Field(default=10, ge=1, le=1000, description="per replica")
    idle_timeout_s: float = Field(default=300.0, ge=1, le=86_400)


class VariantSpec(Schema):
    name: VariantName = "AllTraffic"
    model: Name
    instance_type: str = Field(default="cpu.small", max_length=64)
    initial_instance_count: int = Field(default=1, ge=0, le=32)
    initial_weight: float = Field(default=1.0, ge=0, le=1000)
    serverless: Serverless | None = None

    @model_validator(mode="after")
    def _some_instances(self) -> VariantSpec:
        if self.serverless is None and self.initial_instance_count < 1:
            raise ValueError("initial_instance_count must be at least 1 (or make it serverless)")
        return self


class DataCapture(Schema):
    enabled: bool = False
    sampling_percent: float = Field(default=100.0, ge=0, le=100)
    capture_input: bool = True
    capture_output: bool = True


class EndpointConfigCreate(Schema):
    name: Name
    variants: list[VariantSpec] = Field(min_length=1, max_length=10)
    shadow: VariantSpec | None = Field(
        default=None, description="gets a copy of production requests; its answers are dropped"
    )
    shadow_percent: float = Field(default=100.0, ge=0, le=100)
    data_capture: DataCapture = Field(default_factory=DataCapture)
    tags: Tags = Field(default_factory=dict)

    @model_validator(mode="after")
    def _distinct_variants(self) -> EndpointConfigCreate:
        names = [v.name for v in self.variants] + ([self.shadow.name] if self.shadow else [])
        if len(set(names)) != len(names):
            raise ValueError("variant names (the shadow's included) must be distinct")
        if not any(v.initial_weight > 0 for v in self.variants):
            raise ValueError("at least one variant needs a weight above 0")
        if self.shadow is not None and self.shadow.serverless is not None:
            raise ValueError("a shadow variant cannot be serverless")
        return self

    def spec(self) -> dict[str, Any]:
        """What is stored (``endpoint_configs.spec``)."""
        return self.model_dump(mode="json", exclude={"name", "tags"})


class EndpointConfigOut(Schema):
    name: str
    variants: list[VariantSpec]
    shadow: VariantSpec | None
    shadow_percent: float
    data_capture: DataCapture
    tags: dict[str, str]
    created_by: str
    created_at: datetime


# --- endpoints -----------------------------------------------------------------------------------


class DeploymentPolicy(Schema):
    """How an update shifts traffic to the new fleet, and when it gives up and rolls back."""

    strategy: Strategy = Strategy.BLUE_GREEN
    bake_s: float = Field(default=60.0, ge=0, le=86_400, description="watch after each shift")
    max_error_rate: float = Field(
        default=0.05, ge=0, le=1, description="4xx+5xx of the new fleet over its invocations"
    )
    canary_percent: float = Field(default=10.0, gt=0, lt=100)
    linear_step_percent: float = Field(default=20.0, gt=0, le=100)
    linear_interval_s: float = Field(default=30.0, ge=0, le=86_400)


class ScalingPolicy(Schema):
    """Target tracking for one variant: keep the metric near its target between min and max."""

    min_instance_count: int = Field(default=1, ge=0, le=64)
    max_instance_count: int = Field(default=4, ge=1, le=64)
    target_invocations_per_instance_per_minute: float | None = Field(default=None, gt=0)
    target_cpu_percent: float | None = Field(default=None, gt=0, le=100)
    scale_out_cooldown_s: float = Field(default=60.0, ge=0, le=86_400)
    scale_in_cooldown_s: float = Field(default=300.0, ge=0, le=86_400)

    @model_validator(mode="after")
    def _sane(self) -> ScalingPolicy:
        if self.min_instance_count > self.max_instance_count:
            raise ValueError("min_instance_count is above max_instance_count")
        if (
            self.target_invocations_per_instance_per_minute is None
            and self.target_cpu_percent is None
        ):
            raise ValueError(
                "give target_invocations_per_instance_per_minute or target_cpu_percent"
            )
        return self


class EndpointCreate(Schema):
    name: Name
    config_name: Name
    environment: Environment = Environment.DEV
    autoscaling: dict[VariantName, ScalingPolicy] = Field(default_factory=dict, max_length=10)
    tags: Tags = Field(default_factory=dict)


class EndpointUpdate(Schema):
    """Any of: a new config (deployed with ``deployment``), scaling, manual counts, tags."""

    config_name: Name | None = None
    deployment: DeploymentPolicy | None = None
    autoscaling: dict[VariantName, ScalingPolicy | None] | None = Field(
        default=None, description="per variant; null removes a variant's policy"
    )
    instance_counts: dict[VariantName, Annotated[int, Field(ge=0, le=64)]] | None = Field(
        default=None, description="set a variant's instance count now"
    )
    tags: Tags | None = None


class ReplicaOut(Schema):
    id: str
    config_name: str
    variant: str
    shadow: bool
    status: str
    host: str
    port: int
    pid: int
    failures: int
    started_at: datetime
    ready_at: datetime | None


class VariantOut(Schema):
    name: str
    config_name: str
    model: str
    model_version: str
    instance_type: str
    weight: float
    shadow: bool = False
    serverless: Serverless | None = None
    current_instance_count: int
    desired_instance_count: int
    autoscaling: ScalingPolicy | None = None
    replicas: list[ReplicaOut]


class EndpointOut(Schema):
    name: str
    environment: Environment
    status: EndpointStatus
    reason: str
    config_name: str
    current_config: str | None
    deployment: dict[str, Any]
    autoscaling: dict[str, Any]
    progress: dict[str, Any] = Field(description="the deployment under way, if any")
    variants: list[VariantOut]
    invocation_url: str
    tags: dict[str, str]
    created_by: str
    created_at: datetime
    updated_at: datetime
    row_version: int


class EndpointSummary(Schema):
    name: str
    environment: Environment
    status: EndpointStatus
    reason: str
    config_name: str
    current_config: str | None
    created_by: str
    created_at: datetime


class AsyncInvocationStatus(StrEnum):
    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


class AsyncInvocationOut(Schema):
    """A request of ``POST /endpoints/{name}/async-invocations`` and what became of it."""

    inference_id: str
    endpoint: str
    status: AsyncInvocationStatus
    variant: str | None
    input_path: str
    input_version: int
    output_path: str
    failure_path: str
    error: str
    attempts: int
    created_by: str
    created_at: datetime
    expires_at: datetime
    finished_at: datetime | None


# --- promotion ---------------------------------------------------------------------------------


class PromotionCreate(Schema):
    environment: Environment
    endpoint_name: Name | None = Field(default=None, description="default: <group>-<environment>")
    instance_type: str = Field(default="cpu.small", max_length=64)
    instance_count: int = Field(default=1, ge=1, le=32)
    predict: Literal["predict", "proba"] = Field(
        default="predict", description="proba: a classifier answers its positive-class score"
    )
    model_version_label: VersionLabel | None = Field(
        default=None, description="what answers carry as model_version (default v<version>)"
    )
    data_capture: DataCapture | None = Field(
        default=None, description="default: what the endpoint captures now (off if it is new)"
    )


class PromotionOut(Schema):
    id: str
    group: str
    version: int
    environment: Environment
    endpoint_name: str
    status: PromotionStatus
    steps: list[dict[str, Any]]
    reason: str
    requested_by: str
    created_at: datetime
    finished_at: datetime | None
