"""Shapes of MLflow's REST API (protobuf JSON) for the compatibility routes in ``mlflow_router``.

Requests are parsed from the raw body with ``model_validate_json``: MLflow clients send
protobuf JSON (snake_case fields, int64 as numbers or strings, enums by name, non-finite
doubles as ``"NaN"``/``"Infinity"``/``"-Infinity"``), and fields this server does not use
(``run_uuid``, ``model_id`` on metrics, ...) are ignored rather than refused, so newer
clients keep working. Responses are plain dicts serialised with orjson; non-finite values go
out as the protobuf JSON strings, which the client's ``ParseDict`` turns back into floats.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from shipyard.errors import BadRequest
from shipyard.tracking.columnar import finite_or_text
from shipyard.tracking.schemas import Key, RunStatus

DEFAULT_EXPERIMENT_ID = "0"
ARTIFACT_SCHEME = "mlflow-artifacts:/"
RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"
PARENT_TAG = "mlflow.parentRunId"
SOURCE_NAME_TAG = "mlflow.source.name"
GIT_COMMIT_TAG = "mlflow.source.git.commit"

RunView = Literal["active", "deleted", "all"]
ParamValue = Annotated[str, StringConstraints(max_length=6000)]
TagValue = Annotated[str, StringConstraints(max_length=8000)]
Id = Annotated[str, StringConstraints(max_length=64)]

_RUN_STATUSES = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_VIEW_TYPES = {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}
_MODEL_STATUSES = {
    0: "LOGGED_MODEL_STATUS_UNSPECIFIED",
    1: "LOGGED_MODEL_PENDING",
    2: "LOGGED_MODEL_READY",
    3: "LOGGED_MODEL_UPLOAD_FAILED",
}
VIEW_STAGES: dict[str, RunView] = {"ACTIVE_ONLY": "active", "DELETED_ONLY": "deleted", "ALL": "all"}


def _enum_name(names: Mapping[int, str]) -> Callable[[Any], Any]:
    """Protobuf JSON may carry an enum as its name or its number; keep the name."""

    def convert(value: Any) -> Any:
        return names.get(value, value) if isinstance(value, int) else value

    return convert


Status = Annotated[RunStatus, BeforeValidator(_enum_name(_RUN_STATUSES))]
ViewType = Annotated[
    Literal["ACTIVE_ONLY", "DELETED_ONLY", "ALL"], BeforeValidator(_enum_name(_VIEW_TYPES))
]
ModelStatus = Annotated[
    Literal[
        "LOGGED_MODEL_STATUS_UNSPECIFIED",
        "LOGGED_MODEL_PENDING",
        "LOGGED_MODEL_READY",
        "LOGGED_MODEL_UPLOAD_FAILED",
    ],
    BeforeValidator(_enum_name(_MODEL_STATUSES)),
]


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RunRef(Message):
    """Old clients name a run ``run_uuid``; new ones send both."""

    run_id: Id = ""
    run_uuid: Id = ""

    @property
    def id(self) -> str:
        return self.run_id or self.run_uuid


class KeyValue(Message):
    key: Key
    value: str = ""


class ParamIn(Message):
    key: Key
    value: ParamValue = ""


class TagIn(Message):
    key: Key
    value: TagValue = ""


class MetricIn(Message):
    key: Key
    value: float
    timestamp: int | None = None
    step: int = 0


class LogMetric(RunRef):
    key: Key
    value: float
    timestamp: int | None = None
    step: int = 0


class LogParam(RunRef):
    key: Key
    value: ParamValue = ""


class SetTag(RunRef):
    key: Key
    value: TagValue = ""


class DeleteTag(RunRef):
    key: Key


class LogBatch(RunRef):
    metrics: list[MetricIn] = Field(default_factory=list)
    params: list[ParamIn] = Field(default_factory=list)
    tags: list[TagIn] = Field(default_factory=list)


class CreateRun(Message):
    experiment_id: Id = DEFAULT_EXPERIMENT_ID
    run_name: Annotated[str, StringConstraints(max_length=256)] = ""
    start_time: int | None = None
    tags: list[TagIn] = Field(default_factory=list)


class UpdateRun(RunRef):
    status: Status | None = None
    end_time: int | None = None
    run_name: Annotated[str, StringConstraints(max_length=256)] | None = None


class SearchRuns(Message):
    experiment_ids: list[Id] = Field(default_factory=list, max_length=100)
    filter: str = Field(default="", max_length=10_000)
    run_view_type: ViewType = "ACTIVE_ONLY"
    max_results: int = Field(default=1000, ge=1, le=50_000)
    order_by: list[str] = Field(default_factory=list, max_length=20)
    page_token: str | None = Field(default=None, max_length=64)


class LogOutputs(RunRef):
    class Output(Message):
        model_id: Id
        step: int = 0

    models: list[Output] = Field(default_factory=list)


class CreateExperiment(Message):
    name: Annotated[str, StringConstraints(min_length=1, max_length=256, strip_whitespace=True)]
    artifact_location: str = ""
    tags: list[TagIn] = Field(default_factory=list)


class ExperimentRef(Message):
    experiment_id: Id


class UpdateExperiment(ExperimentRef):
    new_name: Annotated[str, StringConstraints(min_length=1, max_length=256, strip_whitespace=True)]


class SetExperimentTag(ExperimentRef):
    key: Key
    value: TagValue = ""


class SearchExperiments(Message):
    max_results: int = Field(default=1000, ge=1, le=50_000)
    page_token: str | None = Field(default=None, max_length=64)
    filter: str = Field(default="", max_length=10_000)
    order_by: list[str] = Field(default_factory=list, max_length=20)
    view_type: ViewType = "ACTIVE_ONLY"


class CreateLoggedModel(Message):
    experiment_id: Id = DEFAULT_EXPERIMENT_ID
    name: Annotated[str, StringConstraints(max_length=256)] | None = None
    model_type: Annotated[str, StringConstraints(max_length=256)] = ""
    source_run_id: Id | None = None
    params: list[ParamIn] = Field(default_factory=list)
    tags: list[TagIn] = Field(default_factory=list)


class FinalizeLoggedModel(Message):
    status: ModelStatus


class LoggedModelTags(Message):
    tags: list[TagIn] = Field(default_factory=list)


class LoggedModelParams(Message):
    params: list[ParamIn] = Field(default_factory=list)


class SearchLoggedModels(Message):
    class OrderBy(Message):
        field_name: str
        ascending: bool = True

    experiment_ids: list[Id] = Field(default_factory=list, max_length=100)
    filter: str = Field(default="", max_length=10_000)
    max_results: int = Field(default=100, ge=1, le=10_000)
    order_by: list[OrderBy] = Field(default_factory=list, max_length=20)
    page_token: str | None = Field(default=None, max_length=64)


class LoggedModelDoc(BaseModel):
    """What this server keeps about one MLflow LoggedModel (stored as a JSON document)."""

    model_config = ConfigDict(extra="ignore")

    model_id: str
    experiment_id: str
    name: str
    model_type: str = ""
    source_run_id: str = ""
    status: str = "LOGGED_MODEL_PENDING"
    status_message: str = ""
    creation_timestamp_ms: int
    last_updated_timestamp_ms: int
    creator: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)


# --- rendering ---------------------------------------------------------------------------


def pairs(items: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in items.items()]


def metric_out(key: str, value: float, timestamp: int, step: int) -> dict[str, Any]:
    return {"key": key, "value": finite_or_text(value), "timestamp": timestamp, "step": step}


def artifact_uri(store_path: str) -> str:
    """Points clients at the artifact proxy, whose paths map 1:1 onto the project store."""
    return ARTIFACT_SCHEME + store_path


def model_artifact_root(model_id: str) -> str:
    return f"models/{model_id}/artifacts"


def logged_model_out(doc: LoggedModelDoc, experiment_id: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "model_id": doc.model_id,
        "experiment_id": experiment_id,
        "name": doc.name,
        "creation_timestamp_ms": doc.creation_timestamp_ms,
        "last_updated_timestamp_ms": doc.last_updated_timestamp_ms,
        "artifact_uri": artifact_uri(model_artifact_root(doc.model_id)),
        "status": doc.status,
        "model_type": doc.model_type,
        "source_run_id": doc.source_run_id,
        "tags": pairs(doc.tags),
    }
    if doc.status_message:
        info["status_message"] = doc.status_message
    return {"info": info, "data": {"params": pairs(doc.params)}}


# --- the small filter language of experiment and logged-model searches ------------------

_CLAUSE = re.compile(
    r"""\s*(?:(?P<prefix>attributes?|attr|tags?|params?)\.)?
    (?P<key>`[^`]+`|"[^"]+"|[\w.\-]+)\s*
    (?P<op>!=|=|(?i:i?like))\s*
    (?P<value>'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")\s*
    (?P<rest>(?i:and\b)|$)""",
    re.VERBOSE,
)


def like_matcher(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """SQL LIKE as a regex: ``%`` is any run of characters, ``_`` is one character."""
    parts = (".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def parse_simple_filter(text: str) -> list[tuple[str, str, str, str]]:
    """``name = 'x' AND tags.k LIKE 'v%'`` as (entity, key, op, value) tuples.

    MLflow's experiment and logged-model searches accept a richer grammar; clients use
    little beyond equality and LIKE on names and tags, so that is what is accepted here,
    and anything else is refused with a message rather than silently ignored.
    """
    out: list[tuple[str, str, str, str]] = []
    position, text = 0, text.strip()
    while position < len(text):
        match = _CLAUSE.match(text, position)
        if match is None:
            raise BadRequest(
                f"unsupported filter near position {position}: use comparisons like "
                "name = 'x' or tags.key LIKE 'v%' joined by AND",
                field="filter",
            )
        prefix = (match["prefix"] or "attribute").lower().rstrip("s")
        entity = {"attr": "attribute", "attribute": "attribute"}.get(prefix, prefix)
        key, value = match["key"].strip('`"'), match["value"][1:-1]
        out.append((entity, key, match["op"].upper(), value))
        position = match.end()
        if not match["rest"] and position < len(text):
            raise BadRequest("join filter comparisons with AND", field="filter")
    return out


def matches(
    clauses: Iterable[tuple[str, str, str, str]], lookup: Callable[[str, str], Any]
) -> bool:
    """Whether an object satisfies every clause; ``lookup(entity, key)`` gives its value."""
    for entity, key, op, value in clauses:
        actual = lookup(entity, key)
        if actual is None:
            return False
        actual = str(actual)
        if op == "=" and actual != value:
            return False
        if op == "!=" and actual == value:
            return False
        if op in ("LIKE", "ILIKE") and not like_matcher(value, ignore_case=op == "ILIKE").fullmatch(
            actual
        ):
            return False
    return True
