"""API shapes of monitoring: baselines, schedules (with alert rules and actions), executions,
ground truth. Everything checkable without the database is checked here (a malformed cron, an
unknown metric, a retraining template that is not a valid job) so it is a 422 naming the field.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from shipyard.jobs.schemas import JobCreate

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", max_length=63)]
FeatureName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
_DATASET = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,127}):(?P<v>[1-9]\d*)$")

# What a rule may watch. Data quality: per execution, or per feature (``feature`` set).
DATA_METRICS = frozenset(
    {"drifted_features", "drift_share", "violations", "records", "psi", "ks", "js", "chi2"}
)
FEATURE_METRICS = frozenset({"psi", "ks", "js", "chi2"})
QUALITY_METRICS = {
    "classification": frozenset({"accuracy", "precision", "recall", "f1", "roc_auc"}),
    "regression": frozenset({"rmse", "mae", "r2"}),
}
QUALITY_COUNTS = frozenset({"matched", "unmatched"})


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)


class Kind(StrEnum):
    DATA_QUALITY = "data_quality"
    MODEL_QUALITY = "model_quality"


class ExecutionStatus(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


# --- baselines ----------------------------------------------------------------------------


class BaselineCreate(Schema):
    """A baseline of a dataset version (``marketing:3``) or of an artifact (a CSV or Parquet)."""

    name: Name
    dataset: str | None = Field(default=None, max_length=200, description="NAME:VERSION")
    artifact_path: str | None = Field(default=None, max_length=1024)
    artifact_version: int | None = Field(default=None, ge=1)
    exclude: list[FeatureName] = Field(
        default_factory=list, max_length=1000, description="columns that are not model inputs"
    )

    @field_validator("dataset")
    @classmethod
    def _dataset_ref(cls, value: str | None) -> str | None:
        if value is not None and not _DATASET.match(value):
            raise ValueError("a dataset version is NAME:VERSION, e.g. marketing:3")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> BaselineCreate:
        if (self.dataset is None) == (self.artifact_path is None):
            raise ValueError("give dataset (NAME:VERSION) or artifact_path, one of them")
        return self

    def dataset_ref(self) -> tuple[str, int] | None:
        if self.dataset is None:
            return None
        found = _DATASET.match(self.dataset)
        assert found is not None
        return found["name"], int(found["v"])


class BaselineOut(Schema):
    name: str
    version: int
    source: dict[str, Any]
    features: list[str]
    excluded: list[str]
    rows: int
    statistics_path: str
    constraints_path: str
    created_by: str
    created_at: datetime


# --- schedules ----------------------------------------------------------------------------


class Rule(Schema):
    """Alert when ``metric`` ``op`` ``threshold`` (per feature when ``feature`` is set)."""

    metric: str = Field(min_length=1, max_length=64)
    op: Literal[">", ">=", "<", "<="] = ">"
    threshold: float
    feature: FeatureName | None = None


class Retrain(Schema):
    """Start this job when an execution breaks a rule; register what it makes in ``group``."""

    job: JobCreate
    register_group: str | None = Field(default=None, max_length=128)


class Actions(Schema):
    retrain: Retrain | None = None


class BaselineRef(Schema):
    name: Name
    version: int | None = Field(default=None, ge=1, description="the latest if omitted")


class ScheduleCreate(Schema):
    name: Name
    endpoint: Name
    kind: Kind = Kind.DATA_QUALITY
    baseline: BaselineRef | None = None
    problem_type: Literal["classification", "regression"] | None = None
    cron: str = Field(default="0 * * * *", max_length=128, description="five-field cron, UTC")
    window_s: int = Field(default=3600, ge=60, le=30 * 86400)
    rules: list[Rule] | None = Field(default=None, max_length=100)
    actions: Actions = Field(default_factory=Actions)
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)

    @model_validator(mode="after")
    def _consistent(self) -> ScheduleCreate:
        if self.kind == Kind.DATA_QUALITY and self.baseline is None:
            raise ValueError("a data_quality monitor needs a baseline")
        if self.kind == Kind.MODEL_QUALITY and self.problem_type is None:
            raise ValueError("a model_quality monitor needs problem_type")
        if self.rules is None:
            self.rules = default_rules(self.kind, self.problem_type)
        check_rules(self.rules, self.kind, self.problem_type)
        return self


class ScheduleUpdate(Schema):
    cron: str | None = Field(default=None, max_length=128)
    window_s: int | None = Field(default=None, ge=60, le=30 * 86400)
    rules: list[Rule] | None = Field(default=None, max_length=100)
    actions: Actions | None = None
    enabled: bool | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else check_cron(value)


class ScheduleOut(Schema):
    name: str
    endpoint: str
    kind: Kind
    baseline: BaselineRef | None
    problem_type: str | None
    cron: str
    window_s: int
    rules: list[Rule]
    actions: Actions
    enabled: bool
    next_run_at: datetime | None
    created_by: str
    created_at: datetime


class RunRequest(Schema):
    """Run now, over the last ``window_s`` (the schedule's) or an explicit window."""

    start: datetime | None = None
    end: datetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RunRequest:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class ExecutionOut(Schema):
    id: str
    schedule: str
    endpoint: str
    kind: Kind
    trigger: str
    status: ExecutionStatus
    window_start: datetime
    window_end: datetime
    verdict: str | None
    summary: dict[str, Any]
    alerts: list[dict[str, Any]]
    report_path: str | None
    html_path: str | None
    error: str
    retrain_job: str | None
    retrain_version: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


# --- ground truth -------------------------------------------------------------------------


class Label(Schema):
    event_id: str = Field(min_length=1, max_length=64)
    label: float | int | bool | str


class GroundTruthUpload(Schema):
    labels: list[Label] = Field(min_length=1, max_length=100_000)


class GroundTruthOut(Schema):
    accepted: int
    path: str


# --- checks shared by create and update ----------------------------------------------------


def check_cron(value: str) -> str:
    """Five fields (minute hour day month weekday), as croniter reads them."""
    text = " ".join(value.split())
    if len(text.split(" ")) != 5 or not croniter.is_valid(text):
        raise ValueError(f"{value!r} is not a five-field cron expression such as '0 * * * *'")
    return text


def default_rules(kind: Kind, problem_type: str | None) -> list[Rule]:
    """Alert on any drifted feature or any violation; on accuracy (or R²) under 0.8."""
    if kind == Kind.DATA_QUALITY:
        return [
            Rule(metric="drifted_features", op=">", threshold=0),
            Rule(metric="violations", op=">", threshold=0),
        ]
    if problem_type == "regression":
        return [Rule(metric="r2", op="<", threshold=0.8)]
    return [Rule(metric="accuracy", op="<", threshold=0.8)]


def check_rules(rules: list[Rule], kind: Kind, problem_type: str | None) -> None:
    known = (
        DATA_METRICS
        if kind == Kind.DATA_QUALITY
        else QUALITY_METRICS[problem_type or "classification"] | QUALITY_COUNTS
    )
    for index, rule in enumerate(rules):
        if rule.metric not in known:
            raise ValueError(
                f"rules[{index}].metric: {rule.metric!r} is not one of {', '.join(sorted(known))}"
            )
        if rule.feature is None and rule.metric in FEATURE_METRICS:
            raise ValueError(f"rules[{index}].feature: {rule.metric} is measured per feature")
