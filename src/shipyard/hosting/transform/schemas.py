"""API shapes of batch transforms: the request (SageMaker's CreateTransformJob, flattened)
and the transform as reported (the underlying job's status, plus where the output is).

Everything checkable without the database is checked here, so a bad field is a 422 naming it
before the model is looked up or verified.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from shipyard.errors import InvalidPath
from shipyard.hosting.transform import records
from shipyard.jobs.runtime import check_user_env
from shipyard.jobs.schemas import InputChannel, JobName, JobStatus
from shipyard.kit.paths import validate_artifact_path
from shipyard.registry.schemas import GroupName

MediaType = Literal["text/csv", "application/json", "application/jsonlines"]
OUTPUT_ROOT = "transform"


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)


class SplitType(StrEnum):
    LINE = records.LINE  # a record is a line (CSV rows, JSON Lines)
    NONE = records.WHOLE  # the whole file is one request


class BatchStrategy(StrEnum):
    MULTI_RECORD = records.MULTI  # up to max_payload_records records per request
    SINGLE_RECORD = records.SINGLE  # one record per request


class ModelRef(Schema):
    group: GroupName
    version: int = Field(ge=1, le=2**31 - 1)


class TransformJobCreate(Schema):
    name: JobName
    model: ModelRef
    input: str = Field(
        max_length=1200,
        description="dataset:NAME:VERSION, an artifact path[@version], or an artifact prefix",
    )
    content_type: MediaType = "text/csv"
    accept: MediaType | None = Field(
        default=None, description="default: text/csv for CSV input, else JSON Lines"
    )
    split_type: SplitType = SplitType.LINE
    strategy: BatchStrategy = BatchStrategy.MULTI_RECORD
    max_payload_records: int = Field(default=records.DEFAULT_PAYLOAD_RECORDS, ge=1, le=10_000)
    skip_header: bool = Field(default=False, description="the first line of each file is a header")
    predict: Literal["predict", "proba"] = "predict"
    output_path: str | None = Field(
        default=None, max_length=1024, description="artifact prefix; default transform/NAME"
    )
    instance_type: str = Field(default="cpu.small", max_length=64)
    instance_count: int = Field(default=1, ge=1, le=64)
    max_runtime_s: int = Field(default=24 * 3600, ge=1, le=28 * 24 * 3600)
    environment: dict[str, Annotated[str, StringConstraints(max_length=32_768)]] = Field(
        default_factory=dict, max_length=200
    )

    @field_validator("input")
    @classmethod
    def _input_parses(cls, value: str) -> str:
        InputChannel.parse(value)
        return value

    @field_validator("split_type")
    @classmethod
    def _split_fits_content(cls, value: SplitType, info: ValidationInfo) -> SplitType:
        if value == SplitType.NONE and info.data.get("content_type") == records.JSONLINES:
            raise ValueError("None sends each file as one document; JSON Lines needs Line")
        return value

    @field_validator("skip_header")
    @classmethod
    def _header_needs_lines(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("split_type") == SplitType.NONE:
            raise ValueError("needs split_type Line: with None a whole file is one request")
        return value

    @field_validator("output_path")
    @classmethod
    def _clean_output(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_artifact_path(value.rstrip("/"))
        except InvalidPath as exc:  # a ValueError is a 422 naming the field
            raise ValueError(exc.message) from None

    @field_validator("environment")
    @classmethod
    def _user_environment(cls, value: dict[str, str]) -> dict[str, str]:
        check_user_env(value)
        return value

    @property
    def resolved_output_path(self) -> str:
        return self.output_path or f"{OUTPUT_ROOT}/{self.name}"

    @property
    def resolved_accept(self) -> str:
        if self.accept is not None:
            return self.accept
        return records.CSV if self.content_type == records.CSV else records.JSONLINES


class TransformJobOut(Schema):
    name: str
    status: JobStatus
    reason: str
    model: ModelRef | None = Field(description="None only for a job not made by this API")
    input: str
    content_type: str
    accept: str
    split_type: SplitType
    strategy: BatchStrategy
    max_payload_records: int
    skip_header: bool
    predict: str
    instance_type: str
    instance_count: int
    output_path: str = Field(description="where the .out files are stored (an artifact prefix)")
    outputs: list[str] = Field(description="the stored output files, path@version")
    run_id: str | None
    created_by: str
    created_at: datetime
    phase_times: dict[str, datetime]
