"""API shapes of the model registry."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

GroupName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)


class Flavor(StrEnum):
    SKLEARN = "sklearn"
    XGBOOST = "xgboost"
    PYTORCH = "pytorch"
    ONNX = "onnx"
    CUSTOM = "custom"  # an inference.py with model_fn / input_fn / predict_fn / output_fn


class VersionStatus(StrEnum):
    PENDING = "PendingManualApproval"
    APPROVED = "Approved"
    REJECTED = "Rejected"
    BLOCKED = "Blocked"  # the scan found something dangerous: it can never be approved


class ModelGroupCreate(Schema):
    name: GroupName
    description: str = Field(default="", max_length=4096)
    tags: dict[Annotated[str, StringConstraints(min_length=1, max_length=128)], str] = Field(
        default_factory=dict
    )


class ModelGroupOut(Schema):
    name: str
    description: str
    tags: dict[str, str]
    last_version: int
    created_by: str
    created_at: datetime


class ModelSignature(Schema):
    inputs: list[dict[str, Any]] = Field(default_factory=list, max_length=10_000)
    outputs: list[dict[str, Any]] = Field(default_factory=list, max_length=10_000)


class ModelVersionCreate(Schema):
    """Register from exactly one source: a completed job, a run's artifact, or an artifact."""

    job: str | None = Field(default=None, max_length=63, description="a completed job's name")
    run_id: str | None = Field(default=None, max_length=32)
    artifact_path: str | None = Field(
        default=None,
        max_length=1024,
        description="an artifact of the project; with run_id, a path inside the run's artifacts",
    )
    artifact_version: int | None = Field(default=None, ge=1)
    flavor: Flavor = Flavor.SKLEARN
    signature: ModelSignature | None = None
    example: Any = None
    metrics: dict[str, float] | None = Field(
        default=None, description="defaults to the source run's latest metrics"
    )
    description: str = Field(default="", max_length=8192)

    @model_validator(mode="after")
    def _one_source(self) -> ModelVersionCreate:
        if self.job is not None and (self.run_id or self.artifact_path):
            raise ValueError("give job, or run_id (+ artifact_path), or artifact_path")
        if self.job is None and self.artifact_path is None:
            raise ValueError("a version needs a source: job, or artifact_path (with run_id)")
        return self


class ScanFinding(Schema):
    path: str
    severity: str
    kind: str
    detail: str


class ModelVersionOut(Schema):
    group: str
    version: int
    status: VersionStatus
    artifact_path: str
    artifact_version: int
    manifest_digest: str
    flavor: Flavor
    signature: dict[str, Any] | None
    example: Any
    metrics: dict[str, float]
    description: str
    job_name: str | None
    run_id: str | None
    dataset_versions: list[dict[str, Any]]
    scan: dict[str, Any]
    registered_by: str
    decided_by: str | None
    decided_at: datetime | None
    decision_comment: str
    created_at: datetime


class Decision(Schema):
    comment: str = Field(default="", max_length=8192)


class RiskRating(StrEnum):
    UNKNOWN = "unknown"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


_CardText = Annotated[str, StringConstraints(max_length=20_000)]


class ModelCardUpdate(Schema):
    """The editable parts of a model card; fields left out keep their current text.

    Evaluation results are not editable: they are the version's metrics, pulled from the run
    it was registered from, so the card cannot claim numbers the run did not produce.
    """

    base_revision: int | None = Field(
        default=None, ge=1, description="the revision this edit starts from; 409 if stale"
    )
    intended_use: _CardText | None = None
    risk_rating: RiskRating | None = None
    training_data: _CardText | None = None
    evaluation_notes: _CardText | None = None
    ethical_considerations: _CardText | None = None
    caveats: _CardText | None = None


class ModelCardOut(Schema):
    group: str
    version: int
    revision: int
    frozen: bool
    intended_use: str
    risk_rating: RiskRating
    training_data: str
    evaluation_results: dict[str, float]
    evaluation_notes: str
    ethical_considerations: str
    caveats: str
    updated_by: str
    created_at: datetime


class VerificationOut(Schema):
    group: str
    version: int
    verified: bool
    manifest_digest: str
    files: int


class DashboardVersion(Schema):
    version: int
    status: VersionStatus
    scan: str  # "clean" | "dangerous"
    findings: int
    flavor: Flavor
    registered_by: str
    decided_by: str | None
    created_at: datetime


class DashboardGroup(Schema):
    name: str
    description: str
    last_version: int
    latest_approved: int | None
    pending: int
    versions: list[DashboardVersion]
    deployments: list[dict[str, Any]] = Field(
        default_factory=list, description="endpoints serving a version of this group"
    )
