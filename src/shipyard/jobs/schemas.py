"""API shapes of jobs: the spec a user submits and the status the platform reports.

Everything that can be checked without the database is checked here, so a bad spec is a 422
naming its field before anything is stored or started. What needs configuration or the
database (instance types, quotas, that the entry point is in the uploaded source) is checked
by the service.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from shipyard.errors import InvalidPath
from shipyard.jobs.logmetrics import compile_definitions
from shipyard.jobs.runtime import check_user_env
from shipyard.kit.paths import validate_artifact_path

JobName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", max_length=63)]
ChannelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
HyperValue = str | int | float | bool
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_DATASET_INPUT = re.compile(r"^dataset:(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,127}):(?P<v>[1-9]\d*)$")
_ARTIFACT_INPUT = re.compile(r"^(artifact:)?(?P<path>[^@]+?)(@(?P<v>[1-9]\d*))?$")


def _artifact_path(value: str) -> str:
    """An artifact path, with the store's own rules; as a ValueError, so it is a 422."""
    try:
        return validate_artifact_path(value)
    except InvalidPath as exc:
        raise ValueError(exc.message) from None


class JobKind(StrEnum):
    TRAINING = "training"
    PROCESSING = "processing"
    # A batch transform: a registered model over every record of a dataset (hosting/transform)
    TRANSFORM = "transform"


class JobStatus(StrEnum):
    PENDING = "Pending"
    STARTING = "Starting"
    DOWNLOADING = "Downloading"
    RUNNING = "Running"
    UPLOADING = "Uploading"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    INTERRUPTED = "Interrupted"
    RESUMING = "Resuming"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED})
# The statuses in which a job holds instances (so it can be interrupted).
ACTIVE = frozenset(
    {JobStatus.STARTING, JobStatus.DOWNLOADING, JobStatus.RUNNING, JobStatus.UPLOADING}
)
# Where each status may go next. Any non-terminal status may fail, be stopped or (while it
# holds instances) be interrupted; an interrupted job resumes into a new attempt.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.STARTING}),
    JobStatus.STARTING: frozenset({JobStatus.DOWNLOADING}),
    JobStatus.DOWNLOADING: frozenset({JobStatus.RUNNING}),
    JobStatus.RUNNING: frozenset({JobStatus.UPLOADING}),
    JobStatus.UPLOADING: frozenset({JobStatus.COMPLETED}),
    JobStatus.INTERRUPTED: frozenset({JobStatus.RESUMING}),
    JobStatus.RESUMING: frozenset({JobStatus.STARTING}),
    JobStatus.STOPPING: frozenset({JobStatus.STOPPED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.STOPPED: frozenset(),
}
for _status in set(JobStatus) - TERMINAL:
    TRANSITIONS[_status] = TRANSITIONS[_status] | {JobStatus.FAILED, JobStatus.STOPPING}
# An active job may be interrupted (a reclaim, a restart) or retried after a failure
# (Resuming, with a new attempt).
for _status in ACTIVE:
    TRANSITIONS[_status] = TRANSITIONS[_status] | {JobStatus.INTERRUPTED, JobStatus.RESUMING}


def may_move(current: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS[current]


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)


class MetricDefinition(Schema):
    name: str = Field(min_length=1, max_length=250)
    regex: str = Field(min_length=1, max_length=1000)


class InputChannel(Schema):
    """Where a channel's files come from: a dataset version or an artifact (path[@version])."""

    source: Literal["dataset", "artifact"]
    name: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> InputChannel:
        """``dataset:marketing:3``, ``artifact:data/train.csv@2`` or just ``data/train.csv``."""
        found = _DATASET_INPUT.match(text)
        if found:
            return cls(source="dataset", name=found["name"], version=int(found["v"]))
        if text.startswith("dataset:"):
            raise ValueError(f"{text!r}: a dataset input is 'dataset:NAME:VERSION'")
        found = _ARTIFACT_INPUT.match(text)
        if not found:
            raise ValueError(f"{text!r} is not 'dataset:NAME:VERSION' or an artifact path")
        path = _artifact_path(found["path"])
        return cls(source="artifact", name=path, version=int(found["v"]) if found["v"] else None)


class JobCreate(Schema):
    name: JobName
    kind: JobKind = JobKind.TRAINING
    entry_point: str = Field(min_length=1, max_length=512, description="a script or a module")
    source: str | None = Field(
        default=None, max_length=1024, description="artifact path of the packed source (tar.gz)"
    )
    source_version: int | None = Field(
        default=None, ge=1, description="the source's version; admission pins the latest"
    )
    requirements: str | None = Field(
        default=None,
        max_length=512,
        description="requirements file inside the source; omitted: inherit the platform's",
    )
    arguments: list[Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=list, max_length=256
    )
    hyperparameters: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=128)], HyperValue
    ] = Field(default_factory=dict, max_length=500)
    inputs: dict[ChannelName, str] = Field(default_factory=dict, max_length=20)
    output_path: str | None = Field(default=None, max_length=1024)
    checkpointing: bool = False
    instance_type: str = Field(default="cpu.small", max_length=64)
    instance_count: int = Field(default=1, ge=1, le=64)
    max_runtime_s: int = Field(default=24 * 3600, ge=1, le=28 * 24 * 3600)
    max_retries: int = Field(default=0, ge=0, le=10)
    spot: bool = False
    network_isolation: bool = False
    metric_definitions: list[MetricDefinition] = Field(default_factory=list, max_length=20)
    environment: dict[str, Annotated[str, StringConstraints(max_length=32_768)]] = Field(
        default_factory=dict, max_length=200
    )
    tags: dict[Annotated[str, StringConstraints(min_length=1, max_length=128)], str] = Field(
        default_factory=dict
    )

    @field_validator("entry_point")
    @classmethod
    def _relative_script_or_module(cls, value: str) -> str:
        if value.endswith(".py"):
            path = PurePosixPath(value)
            if path.is_absolute() or ".." in path.parts or "\x00" in value or "\\" in value:
                raise ValueError("must be a path inside the source directory")
            return value
        if not _MODULE.match(value):
            raise ValueError("must be a script ending in .py or a dotted module name")
        return value

    @field_validator("metric_definitions")
    @classmethod
    def _metrics_compile(cls, value: list[MetricDefinition]) -> list[MetricDefinition]:
        """The same rules the log reader applies, so a definition that cannot match is a
        422 now (the message names the item: ``metric_definitions[1].regex: …``)."""
        compile_definitions([d.model_dump() for d in value])
        return value

    @field_validator("environment")
    @classmethod
    def _user_environment(cls, value: dict[str, str]) -> dict[str, str]:
        check_user_env(value)
        return value

    @field_validator("inputs")
    @classmethod
    def _inputs_parse(cls, value: dict[str, str]) -> dict[str, str]:
        for text in value.values():
            InputChannel.parse(text)
        return value

    @field_validator("source", "output_path", "requirements")
    @classmethod
    def _clean_paths(cls, value: str | None) -> str | None:
        return None if value is None else _artifact_path(value)

    @property
    def channels(self) -> dict[str, InputChannel]:
        return {name: InputChannel.parse(text) for name, text in self.inputs.items()}


class JobOut(Schema):
    name: str
    kind: JobKind
    status: JobStatus
    reason: str
    spec: dict[str, Any]
    attempt: int
    retries: int
    run_id: str | None
    model_artifact: str | None
    created_by: str
    created_at: datetime
    phase_times: dict[str, datetime]
    output_artifacts: dict[str, Any] | None = None


class JobPage(Schema):
    jobs: list[JobOut]
