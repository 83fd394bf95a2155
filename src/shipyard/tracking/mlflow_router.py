"""MLflow's REST API over tracking, so the stock ``mlflow`` client logs to Shipyard unchanged.

Point the client at the server (``MLFLOW_TRACKING_URI=http://host:port``) with an API key as
``MLFLOW_TRACKING_TOKEN``. Everything happens in one project: the key's project when the key
is project-scoped, else the one named by the ``X-Shipyard-Project: team/project`` header.

Mapping onto Shipyard:

- experiment ``"0"`` (MLflow's default) is the project's experiment named ``Default``,
  created when a run is first logged to it; every other experiment id is Shipyard's;
- a run's ``artifact_uri`` is ``mlflow-artifacts:/<artifact root>``, so the client uploads and
  downloads through the artifact proxy (``/api/2.0/mlflow-artifacts/artifacts/<path>``), whose
  paths map one to one onto the project's (encrypted, versioned) artifact store;
- MLflow 3's LoggedModels keep their files under ``models/<model id>/artifacts/`` in the
  same store, and their metadata as a small JSON document at
  ``mlflow/logged-models/<model id>.json`` (each change is a new version of it);
- ``mlflow.runName`` and ``mlflow.user`` are the run's name and owner columns: renaming
  through the tag renames the run, and the owner is always the authenticated caller;
- a finished run takes no more data (409, ``INVALID_STATE``; MLflow would accept it) and a
  deleted one answers 400 as MLflow does. Dataset inputs (``runs/log-inputs``) are not
  served: Shipyard's datasets are registered versions, not MLflow's free-form sources.

Every route makes one hop to a worker thread: the caller and project come from the identity
caches (in the event loop) or are read there, then the route's work runs in one transaction.
Bodies are read raw and parsed in one pass, answers are serialised with orjson: per-request
overhead is what the stock client's ``log_metric`` loop measures. Errors take MLflow's shape
(``{"error_code", "message"}``), chosen in ``shipyard.api.errors``. The routes are left out
of the OpenAPI schema: they are MLflow's contract, documented by MLflow.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from operator import attrgetter, itemgetter
from typing import Any, TypeVar

import anyio
import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from shipyard.api.deps import (
    ProjectAccess,
    authenticate_now,
    get_platform,
    resolve_project_access,
)
from shipyard.api.middleware import audited_transaction
from shipyard.bootstrap import Platform
from shipyard.errors import BadRequest, Conflict, NotFound, PayloadTooLarge, Unauthenticated
from shipyard.kit.gcpause import paused_gc
from shipyard.kit.ids import as_utc, new_id
from shipyard.kit.ttlcache import TTLCache
from shipyard.security.permissions import Permission
from shipyard.security.principal import Principal
from shipyard.storage.models import ArtifactVersion
from shipyard.storage.service import ArtifactService
from shipyard.tracking import mlflow_schemas as m
from shipyard.tracking import schemas
from shipyard.tracking.models import Experiment, Run
from shipyard.tracking.service import DEFAULT_EXPERIMENT, check_batch_size, now_ms

router = APIRouter(include_in_schema=False)
API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
PROJECT_HEADER = "X-Shipyard-Project"
MODEL_DOCS = "mlflow/logged-models/"
ALL_POINTS = 1_000_000_000
LIST_LIMIT = 10_000
_MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

READ, WRITE = Permission.TRACKING_READ, Permission.TRACKING_WRITE


class InvalidState(Conflict):
    """A finished run refuses data: Shipyard answers 409, MLflow clients read the code."""

    code = "INVALID_STATE"


class ParamChanged(Conflict):
    code = "INVALID_PARAMETER_VALUE"


# --- plumbing: credentials, project, one thread hop, bodies --------------------------------


def _token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "authentication required: set MLFLOW_TRACKING_TOKEN to a Shipyard API key"
        )
    return token.strip()


def _header_place(header: str) -> tuple[str, str]:
    team, sep, project = header.strip().partition("/")
    if not (sep and team and project) or "/" in project:
        raise BadRequest(f"header {PROJECT_HEADER} must be 'team/project'", field=PROJECT_HEADER)
    return team, project


def _key_project(principal: Principal) -> str:
    scope = principal.key
    if scope is None or scope.project_id is None:
        raise BadRequest(
            f"this credential is not scoped to one project: send header "
            f"{PROJECT_HEADER}: team/project, or use a project-scoped API key",
            field=PROJECT_HEADER,
        )
    return scope.project_id


# Project id -> (team name, project name) for project-scoped keys. Only a lookup: access is
# still checked on every request (``resolve_project_access``), and ids are never reused.
_scope_names: TTLCache[str, tuple[str, str]] = TTLCache(300.0)


def _place_of_key(platform: Platform, principal: Principal) -> tuple[str, str]:
    """The names of the key's project, read by id (blocking: call from a worker thread)."""
    project_id = _key_project(principal)
    names = _scope_names.get(project_id)
    if names is not None:
        return names
    with platform.db.read() as s:
        names = platform.identity.project_names(s, project_id)
    if names is None:
        raise NotFound("the API key's project no longer exists", field="project")
    _scope_names.put(project_id, names)
    return names


def _place(platform: Platform, request: Request, principal: Principal) -> tuple[str, str]:
    header = request.headers.get(PROJECT_HEADER)
    return _header_place(header) if header is not None else _place_of_key(platform, principal)


def _cached_access(
    platform: Platform, request: Request, token: str, permission: Permission
) -> ProjectAccess | None:
    """The caller and project from the identity caches, or None when either needs a query."""
    principal = platform.identity.cached_principal(token)
    if principal is None:
        return None
    header = request.headers.get(PROJECT_HEADER)
    if header is not None:
        team, project = _header_place(header)
    else:
        names = _scope_names.get(_key_project(principal))
        if names is None:
            return None
        team, project = names
    if platform.identity.cached_place(principal, team, project) is None:
        return None
    request.state.principal = principal
    return resolve_project_access(request, platform, principal, team, project, permission)


def _access(
    platform: Platform, request: Request, token: str, permission: Permission
) -> ProjectAccess:
    """The caller and project, from the caches or the database (blocking)."""
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
    principal = authenticate_now(request, platform, credentials)
    team, project = _place(platform, request, principal)
    return resolve_project_access(request, platform, principal, team, project, permission)


async def _in_project(
    request: Request,
    permission: Permission,
    work: Callable[[Session, ProjectAccess], T],
    *,
    write: bool,
) -> T:
    """Check the caller on the project, then run ``work`` in one transaction, all in one hop
    to a worker thread: per-request overhead is the whole cost of a small call."""
    platform = get_platform(request)
    token = _token(request)
    cached = _cached_access(platform, request, token, permission)

    def run() -> T:
        access = cached or _access(platform, request, token, permission)
        if not write:
            with platform.db.read() as s:
                return work(s, access)
        # MLflow's writes answer 200; the entry commits with the change (see middleware).
        with audited_transaction(platform, request, 200) as s:
            return work(s, access)

    return await anyio.to_thread.run_sync(run)


async def _project_access(request: Request, permission: Permission) -> ProjectAccess:
    """Only the access check, for routes whose work is not one transaction (transfers)."""
    platform = get_platform(request)
    token = _token(request)
    cached = _cached_access(platform, request, token, permission)
    if cached is not None:
        return cached
    return await anyio.to_thread.run_sync(_access, platform, request, token, permission)


def _parse(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise _bad(exc) from None


def _query(model: type[M], request: Request) -> M:
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise _bad(exc) from None


def _build(model: type[M], **values: Any) -> M:
    try:
        return model(**values)
    except ValidationError as exc:
        raise _bad(exc) from None


def _bad(exc: ValidationError) -> BadRequest:
    problems = exc.errors()[:5]
    fields = [".".join(str(p) for p in e["loc"]) or "body" for e in problems]
    message = "; ".join(f"{f}: {e['msg']}" for f, e in zip(fields, problems, strict=True))
    return BadRequest(message or "invalid request", field=fields[0] if fields else "body")


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def _empty() -> Response:
    return Response(b"{}", media_type="application/json")


@contextmanager
def _mlflow_conflicts() -> Iterator[None]:
    """Give the service's 409s the error codes MLflow clients know."""
    try:
        yield
    except Conflict as exc:
        if exc.field == "run_id":
            raise InvalidState(exc.message, field=exc.field) from exc
        if exc.field and exc.field.startswith("params."):
            raise ParamChanged(exc.message, field=exc.field) from exc
        raise


# --- experiments ---------------------------------------------------------------------------


def _ms(row: Experiment, attribute: str) -> int:
    return int(as_utc(getattr(row, attribute)).timestamp() * 1000)


def _experiment_id(row: Experiment) -> str:
    return m.DEFAULT_EXPERIMENT_ID if row.name == DEFAULT_EXPERIMENT else row.id


def _experiment_out(row: Experiment) -> dict[str, Any]:
    return {
        "experiment_id": _experiment_id(row),
        "name": row.name,
        "artifact_location": m.ARTIFACT_SCHEME,
        "lifecycle_stage": row.lifecycle_stage,
        "creation_time": _ms(row, "created_at"),
        "last_update_time": _ms(row, "updated_at"),
        "tags": m.pairs(row.tags),
    }


# MLflow's default experiment always exists; until a run lands in it, reads see this.
_VIRTUAL_DEFAULT = {
    "experiment_id": m.DEFAULT_EXPERIMENT_ID,
    "name": DEFAULT_EXPERIMENT,
    "artifact_location": m.ARTIFACT_SCHEME,
    "lifecycle_stage": "active",
    "creation_time": 0,
    "last_update_time": 0,
    "tags": [],
}


def _default_experiment(platform: Platform, s: Session, project_id: str) -> Experiment | None:
    try:
        return platform.tracking.experiment(s, project_id, DEFAULT_EXPERIMENT)
    except NotFound:
        return None


def _experiment(
    platform: Platform, s: Session, access: ProjectAccess, ref: str, *, create: bool = False
) -> Experiment:
    """An experiment by MLflow id; ``"0"`` is the project's Default (made when ``create``)."""
    pid = access.project.id
    if ref != m.DEFAULT_EXPERIMENT_ID:
        return platform.tracking.experiment(s, pid, ref)
    if create:
        actor = access.principal.username
        return platform.tracking.ensure_experiment(s, pid, DEFAULT_EXPERIMENT, actor)
    found = _default_experiment(platform, s, pid)
    if found is None:
        raise NotFound("experiment '0' (Default) has no runs yet", field="experiment_id")
    return found


@router.post(API + "/experiments/create")
async def create_experiment(request: Request) -> Response:
    raw = await request.body()

    def work(s: Session, access: ProjectAccess) -> dict[str, str]:
        body = _parse(m.CreateExperiment, raw)
        create = _build(
            schemas.ExperimentCreate, name=body.name, tags={t.key: t.value for t in body.tags}
        )
        platform = get_platform(request)
        row = platform.tracking.create_experiment(
            s, access.project.id, create, access.principal.username
        )
        return {"experiment_id": _experiment_id(row)}

    return _json(await _in_project(request, WRITE, work, write=True))


@router.get(API + "/experiments/get")
async def get_experiment(request: Request) -> Response:
    def work(s: Session, access: ProjectAccess) -> dict[str, Any]:
        ref = _query(m.ExperimentRef, request).experiment_id
        platform = get_platform(request)
        if ref == m.DEFAULT_EXPERIMENT_ID:
            found = _default_experiment(platform, s, access.project.id)
            return {"experiment": _experiment_out(found) if found else _VIRTUAL_DEFAULT}
        return {"experiment": _experiment_out(_experiment(platform, s, access, ref))}

    return _json(await _in_project(request, READ, work, write=False))


@router.get(API + "/experiments/get-by-name")
async def get_experiment_by_name(request: Request) -> Response:
    name = request.query_params.get("experiment_name", "")

    def work(s: Session, access: ProjectAccess) -> dict[str, Any]:
        platform = get_platform(request)
        rows = platform.tracking.experiments(s, access.project.id, "all")
        found = next((r for r in rows if r.name == name), None)
        if found is not None:
            return {"experiment": _experiment_out(found)}
        if name == DEFAULT_EXPERIMENT:
            return {"experiment": _VIRTUAL_DEFAULT}
        raise NotFound(f"experiment {name!r} not found", field="experiment_name")

    return _json(await _in_project(request, READ, work, write=False))


_EXPERIMENT_ORDER = {"name", "creation_time", "last_update_time", "experiment_id"}


def _experiment_sort(rows: list[dict[str, Any]], order_by: list[str]) -> list[dict[str, Any]]:
    """MLflow's default is newest first; keys apply most significant first."""
    keys = order_by or ["creation_time DESC"]
    for item in reversed(keys):
        field, _, direction = item.strip().partition(" ")
        field = field.removeprefix("attributes.").removeprefix("attribute.")
        if field not in _EXPERIMENT_ORDER:
            raise BadRequest(f"cannot order experiments by {field!r}", field="order_by")
        descending = direction.strip().upper() == "DESC"
        rows.sort(key=itemgetter(field), reverse=descending)
    return rows


def _experiment_value(row: dict[str, Any], entity: str, key: str) -> Any:
    if entity == "tag":
        return next((t["value"] for t in row["tags"] if t["key"] == key), None)
    if entity == "attribute" and key in ("name", "experiment_id", "lifecycle_stage"):
        return row[key]
    raise BadRequest(f"cannot filter experiments on {entity} {key!r}", field="filter")


@router.post(API + "/experiments/search")
async def search_experiments(request: Request) -> Response:
    raw = await request.body()

    def work(s: Session, access: ProjectAccess) -> dict[str, Any]:
        body = _parse(m.SearchExperiments, raw)
        view = m.VIEW_STAGES[body.view_type]
        platform = get_platform(request)
        rows = [
            _experiment_out(r) for r in platform.tracking.experiments(s, access.project.id, view)
        ]
        if view != "deleted" and not any(r["experiment_id"] == "0" for r in rows):
            rows.append(dict(_VIRTUAL_DEFAULT))
        clauses = m.parse_simple_filter(body.filter)
        rows = [r for r in rows if m.matches(clauses, partial(_experiment_value, r))]
        return _page(_experiment_sort(rows, body.order_by), "experiments", body)

    return _json(await _in_project(request, READ, work, write=False))


def _page(rows: list[dict[str, Any]], name: str, body: Any) -> dict[str, Any]:
    """Offset pages over an in-memory list; the token is the offset, as MLflow's is."""
    start = int(body.page_token) if body.page_token and body.page_token.isdigit() else 0
    end = start + body.max_results
    out: dict[str, Any] = {name: rows[start:end]}
    if end < len(rows):
        out["next_page_token"] = str(end)
    return out


@router.post(API + "/experiments/update")
async def rename_experiment(request: Request) -> Response:
    raw = await request.body()

    def work(s: Session, access: ProjectAccess) -> None:
        body = _parse(m.UpdateExperiment, raw)
        platform = get_platform(request)
        row = _experiment(platform, s, access, body.experiment_id)
        platform.tracking.rename_experiment(s, access.project.id, row.id, body.new_name)

    await _in_project(request, WRITE, work, write=True)
    return _empty()


async def _set_experiment_stage(request: Request, stage: str) -> Response:
    raw = await request.body()

    def work(s: Session, access: ProjectAccess) -> None:
        body = _parse(m.ExperimentRef, raw)
        platform = get_platform(request)
        row = _experiment(platform, s, access, body.experiment_id)
        platform.tracking.set_experiment_stage(s, access.project.id, row.id, stage)

    await _in_project(request, WRITE, work, write=True)
    return _empty()


@router.post(API + "/experiments/delete")
async def delete_experiment(request: Request) -> Response:
    return await _set_experiment_stage(request, "deleted")


@router.post(API + "/experiments/restore")
async def restore_experiment(request: Request) -> Response:
    return await _set_experiment_stage(request, "active")


@router.post(API + "/experiments/set-experiment-tag")
async def set_experiment_tag(request: Request) -> Response:
    raw = await request.body()

    def work(s: Session, access: ProjectAccess) -> None:
        body = _parse(m.SetExperimentTag, raw)
        platform = get_platform(request)
        row = _experiment(platform, s, access, body.experiment_id, create=True)
        platform.tracking.set_experiment_tag(s, access.project.id, row.id, body.key, body.value)

    await _in_project(request, WRITE, work, write=True)
    return _empty()


# --- runs ----------------------------------------------------------------------------------


def _info(run: Run, experiment_id: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "run_id": run.id,
        "run_uuid": run.id,
        "run_name": run.name,
        "experiment_id": experiment_id,
        "user_id": run.user_id,
        "status": run.status,
        "start_time": run.start_time,
        "artifact_uri": m.artifact_uri(run.artifact_root),
        "lifecycle_stage": run.lifecycle_stage,
    }
    if run.end_time is not None:
        info["end_time"] = run.end_time
    return info


def _tags_out(run: Run, tags: dict[str, str]) -> list[dict[str, str]]:
    """Stored tags plus the ones MLflow keeps as tags and Shipyard as columns."""
    shown = {**tags, m.RUN_NAME_TAG: run.name, m.USER_TAG: run.user_id}
    if run.parent_run_id:
        shown[m.PARENT_TAG] = run.parent_run_id
    return m.pairs(shown)


def _run_out(run: Run, view: schemas.RunOut) -> dict[str, Any]:
    """A run as MLflow's ``Run`` message, from the row and its view (params, metrics, tags)."""
    experiment_id = (
        m.DEFAULT_EXPERIMENT_ID if view.experiment == DEFAULT_EXPERIMENT else run.experiment_id
    )
    metrics = [m.metric_out(k, v.value, v.timestamp, v.step) for k, v in view.metrics.items()]
    data = {"metrics": metrics, "params": m.pairs(view.params), "tags": _tags_out(run, view.tags)}
    return {"info": _info(run, experiment_id), "data": data, "inputs": {}}


def _runs_out(platform: Platform, s: Session, runs: list[Run]) -> list[dict[str, Any]]:
    views = platform.tracking.views(s, runs)
    return [_run_out(run, view) for run, view in zip(runs, views, strict=True)]


def _writable_run(platform: Platform, s: Session, project_id: str, run_id: str) -> None:
    """A run that takes data: running (else 409 INVALID_STATE) and not deleted (else 400)."""
    with _mlflow_conflicts():
        platform.tracking.writable_run(s, project_id, run_id)


def _split_tags(tags: list[m.TagIn]) -> tuple[str | None, dict[str, str]]:
    """The run name carried as a tag, and the tags to store (``mlflow.user`` is the caller)."""
    name, rest = None, {}
    for tag in tags:
        if tag.key == m.RUN_NAME_TAG:
            name = tag.value
        elif tag.key != m.USER_TAG:
            rest[tag.key] = tag.value
    return name, rest


@router.post(API + "/runs/create")
async def create_run(request: Request) -> Response:
    raw = await request.body()

    def work(s: Session, access: ProjectAccess) -> dict[str, Any]:
        body = _parse(m.CreateRun, raw)
        platform = get_platform(request)
        experiment = _experiment(platform, s, access, body.experiment_id, create=True)
        tag_name, tags = _split_tags(body.tags)
        create = _build(
            schemas.RunCreate,
            experiment=experiment.id,
            name=body.run_name or tag_name or "",
            start_time=body.start_time,
            parent_run_id=tags.get(m.PARENT_TAG),
            source=schemas.Source(
                name=tags.get(m.SOURCE_NAME_TAG, "")[:512],
                git_commit=tags.get(m.GIT_COMMIT_TAG, "")[:64] or None,
            ),
            tags=tags,
        )
        run = platform.tracking.create_run(s, access.project.id, create, access.principal.username)
        data = {"metrics": [], "params": [], "tags": _tags_out(run, tags)}
        return {"run": {"info": _info(run, _experiment_id(experiment)), "data": data}}

    return _json(await _in_project(request, WRITE, work, write=True))


@router.post(API + "/runs/update")
async def update_run(request: Request) -> Response:
    raw = await request.body()

    def work(s: Session, access: ProjectAccess) -> dict[str, Any]:
        body = _parse(m.UpdateRun, raw)
        update = schemas.RunUpdate(status=body.status, end_time=body.end_time, name=body.run_name)
        platform = get_platform(request)
        run = platform.tracking.update_run(s, access.project.id, body.id, update)
        experiment = platform.tracking.experiment(s, access.project.id, run.experiment_id)
        return {"run_info": _info(run, _experiment_id(experiment))}

    return _json(await _in_project(request, WRITE, work, write=True))


async def _set_run_stage(request: Request, stage: str) -> Response:
    raw = await request.body()

    def work(s: Session, access: ProjectAccess) -> None:
        body = _parse(m.RunRef, raw)
        get_platform(request).tracking.set_run_stage(s, access.project.id, body.id, stage)

    await _in_project(request, WRITE, work, write=True)
    return _empty()


@router.post(API + "/runs/delete")
async def delete_run(request: Request) -> Response:
    return await _set_run_stage(request, "deleted")


@router.post(API + "/runs/restore")
async def restore_run(request: Request) -> Response:
    return await _set_run_stage(request, "active")


@router.get(API + "/runs/get")
async def get_run(request: Request) -> Response:
    def work(s: Session, access: ProjectAccess) -> dict[str, Any]:
        platform = get_platform(request)
        run = platform.tracking.run(s, access.project.id, _query(m.RunRef, request).id)
        return {"run": _runs_out(platform, s, [run])[0]}

    return _json(await _in_project(request, READ, work, write=False))


@router.post(API + "/runs/log-metric")
async def log_metric(request: Request) -> Response:
    raw = await request.body()

    def work(s: Session, access: ProjectAccess) -> None:
        body = _parse(m.LogMetric, raw)
        platform = get_platform(request)
        _writable_run(platform, s, access.project.id, body.id)
        point = (body.key, body.value, body.step, body.timestamp)
        platform.tracking.log_points(s, body.id, [point])

    await _in_project(request, WRITE, work, write=True)
    return _empty()


def _log(
    platform: Platform,
    s: Session,
    access: ProjectAccess,
    run_id: str,
    *,
    params: dict[str, str] | None = None,
    tags: list[m.TagIn] | None = None,
    points: list[tuple[str, float, int, int | None]] | None = None,
) -> None:
    """Params, tags and metric points of one run, in the caller's transaction."""
    pid = access.project.id
    _writable_run(platform, s, pid, run_id)
    name, stored = _split_tags(tags or [])
    if params or stored:
        batch = _build(schemas.LogBatch, params=params or {}, tags=stored)
        with _mlflow_conflicts():
            platform.tracking.log_batch(s, pid, run_id, batch)
    if name is not None:
        platform.tracking.update_run(s, pid, run_id, _build(schemas.RunUpdate, name=name))
    if points:
        platform.tracking.log_points(s, run_id, points)


@router.post(API + "/runs/log-batch")
async def log_batch(request: Request) -> Response:
    raw = await request.body()

    def work(s: Session, access: ProjectAccess) -> None:
        with paused_gc():  # thousands of small objects, no cycles: collecting finds nothing
            body = _parse(m.LogBatch, raw)
            check_batch_size(len(body.metrics) + len(body.params) + len(body.tags))
            points = [(x.key, x.value, x.step, x.timestamp) for x in body.metrics]
            params = {p.key: p.value for p in body.params}
            platform = get_platform(request)
            _log(platform, s, access, body.id, params=params, tags=body.tags, points=points)

    await _in_project(request, WRITE, work, write=True)
    return _empty()


@router.post(API + "/runs/log-parameter")
async def log_param(request: Request) -> Response:
    raw = await request.body()

    def work(s: Session, access: ProjectAccess) -> None:
        body = _parse(m.LogParam, raw)
        _log(get_platform(request), s, access, body.id, params={body.key: body.value})

    await _in_project(request, WRITE, work, write=True)
    return _empty()


@router.post(API + "/runs/set-tag")
async def set_tag(request: Request) -> Response:
    raw = await request.body()

    def work(s: Session, access: ProjectAccess) -> None:
        body = _parse(m.SetTag, raw)
        tag = m.TagIn(key=body.key, value=body.value)
        _log(get_platform(request), s, access, body.id, tags=[tag])

    await _in_project(request, WRITE, work, write=True)
    return _empty()


@router.post(API + "/runs/delete-tag")
async def delete_tag(request: Request) -> Response:
    raw = await request.body()

    def work(s: Session, access: ProjectAccess) -> None:
        body = _parse(m.DeleteTag, raw)
        get_platform(request).tracking.delete_tag(s, access.project.id, body.id, body.key)

    await _in_project(request, WRITE, work, write=True)
    return _empty()


def _experiment_ids(
    platform: Platform, s: Session, access: ProjectAccess, refs: list[str]
) -> list[str]:
    """Shipyard ids for MLflow's; ``"0"`` drops out while Default does not exist yet."""
    ids = []
    for ref in refs:
        if ref == m.DEFAULT_EXPERIMENT_ID:
            found = _default_experiment(platform, s, access.project.id)
            if found is not None:
                ids.append(found.id)
        else:
            ids.append(_experiment(platform, s, access, ref).id)
    return ids


@router.post(API + "/runs/search")
async def search_runs(request: Request) -> Response:
    raw = await request.body()

    def work(s: Session, access: ProjectAccess) -> dict[str, Any]:
        body = _parse(m.SearchRuns, raw)
        platform = get_platform(request)
        experiments = _experiment_ids(platform, s, access, body.experiment_ids)
        if body.experiment_ids and not experiments:
            return {"runs": []}
        search = _build(
            schemas.RunSearch,
            experiments=experiments or None,
            filter=body.filter,
            order_by=body.order_by,
            max_results=body.max_results,
            page_token=body.page_token,
            run_view=m.VIEW_STAGES[body.run_view_type],
        )
        runs, token = platform.tracking.search(s, access.project.id, search)
        out: dict[str, Any] = {"runs": _runs_out(platform, s, runs)}
        if token:
            out["next_page_token"] = token
        return out

    return _json(await _in_project(request, READ, work, write=False))


def _positive(raw: str | None, field: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise BadRequest(f"{field} must be a positive integer", field=field)
    return int(raw)


@router.get(API + "/metrics/get-history")
async def get_metric_history(request: Request) -> Response:
    def work(s: Session, access: ProjectAccess) -> bytes:
        query = request.query_params
        key = query.get("metric_key") or ""
        if not key:
            raise BadRequest("metric_key is required", field="metric_key")
        history = get_platform(request).tracking.history(
            s,
            access.project.id,
            query.get("run_id") or query.get("run_uuid") or "",
            key,
            page_size=_positive(query.get("max_results"), "max_results") or ALL_POINTS,
            page_token=query.get("page_token") or None,
            max_points=None,
        )
        with paused_gc():
            return _history_json(key, history)

    body = await _in_project(request, READ, work, write=False)
    return Response(body, media_type="application/json")


def _history_json(key: str, history: dict[str, Any]) -> bytes:
    """The service's columns as MLflow's list of Metric messages (values already JSON-safe)."""
    points = zip(history["steps"], history["values"], history["timestamps"], strict=True)
    body: dict[str, Any] = {
        "metrics": [
            {"key": key, "value": value, "timestamp": ts, "step": step}
            for step, value, ts in points
        ]
    }
    if history.get("next_page_token"):
        body["next_page_token"] = history["next_page_token"]
    return orjson.dumps(body)


@router.post(API + "/runs/outputs")
async def log_outputs(request: Request) -> Response:
    """Checks that the run and models exist; the link itself is the model's source run."""
    raw = await request.body()

    def work(s: Session, access: ProjectAccess) -> None:
        body = _parse(m.LogOutputs, raw)
        platform = get_platform(request)
        _writable_run(platform, s, access.project.id, body.id)
        for output in body.models:
            _doc_version(platform, s, access.project.id, output.model_id)

    await _in_project(request, WRITE, work, write=True)
    return _empty()


# --- logged models (MLflow 3) ----------------------------------------------------------------


def _doc_path(model_id: str) -> str:
    return f"{MODEL_DOCS}{model_id}.json"


def _doc_version(platform: Platform, s: Session, project_id: str, model_id: str) -> ArtifactVersion:
    if not _MODEL_ID.match(model_id):
        raise NotFound(f"logged model {model_id!r} not found", field="model_id")
    try:
        return platform.artifacts.find(s, project_id, _doc_path(model_id), None)
    except NotFound:
        raise NotFound(f"logged model {model_id!r} not found", field="model_id") from None


async def _read_doc(platform: Platform, row: ArtifactVersion) -> m.LoggedModelDoc | None:
    """The document, or None if what is stored there is not one (the path is writable
    through the artifact proxy like any other)."""
    with platform.db.read() as s:
        download = await platform.artifacts.open_download(s, row)
    data = b"".join([piece async for piece in download])
    try:
        return m.LoggedModelDoc.model_validate_json(data)
    except ValidationError:
        return None


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _write_doc(
    platform: Platform, project_id: str, doc: m.LoggedModelDoc, actor: str
) -> None:
    await platform.artifacts.upload(
        platform.db,
        project_id,
        _doc_path(doc.model_id),
        _once(doc.model_dump_json().encode()),
        content_type="application/json",
        actor=actor,
    )


def _model_experiment_id(default: Experiment | None, doc: m.LoggedModelDoc) -> str:
    if default is not None and doc.experiment_id == default.id:
        return m.DEFAULT_EXPERIMENT_ID
    return doc.experiment_id


async def _model_response(
    request: Request, access: ProjectAccess, doc: m.LoggedModelDoc
) -> Response:
    platform = get_platform(request)

    def default() -> Experiment | None:
        with platform.db.read() as s:
            return _default_experiment(platform, s, access.project.id)

    found = await anyio.to_thread.run_sync(default)
    return _json({"model": m.logged_model_out(doc, _model_experiment_id(found, doc))})


@router.post(API + "/logged-models")
async def create_logged_model(request: Request) -> Response:
    raw = await request.body()

    def work(s: Session, access: ProjectAccess) -> tuple[ProjectAccess, m.LoggedModelDoc]:
        body = _parse(m.CreateLoggedModel, raw)
        platform = get_platform(request)
        experiment = _experiment(platform, s, access, body.experiment_id, create=True)
        if body.source_run_id:
            platform.tracking.run(s, access.project.id, body.source_run_id, field="source_run_id")
        model_id, stamp = f"m-{new_id()}", now_ms()
        doc = m.LoggedModelDoc(
            model_id=model_id,
            experiment_id=experiment.id,
            name=body.name or model_id,
            model_type=body.model_type,
            source_run_id=body.source_run_id or "",
            creation_timestamp_ms=stamp,
            last_updated_timestamp_ms=stamp,
            creator=access.principal.username,
            tags={t.key: t.value for t in body.tags},
            params={p.key: p.value for p in body.params},
        )
        return access, doc

    access, doc = await _in_project(request, WRITE, work, write=True)
    await _write_doc(get_platform(request), access.project.id, doc, access.principal.username)
    return await _model_response(request, access, doc)


async def _model(
    request: Request, model_id: str, permission: Permission
) -> tuple[ProjectAccess, m.LoggedModelDoc]:
    platform = get_platform(request)

    def work(s: Session, access: ProjectAccess) -> tuple[ProjectAccess, ArtifactVersion]:
        return access, _doc_version(platform, s, access.project.id, model_id)

    access, row = await _in_project(request, permission, work, write=False)
    doc = await _read_doc(platform, row)
    if doc is None or doc.model_id != model_id:
        raise NotFound(f"logged model {model_id!r} not found", field="model_id")
    return access, doc


@router.get(API + "/logged-models/{model_id}")
async def get_logged_model(model_id: str, request: Request) -> Response:
    access, doc = await _model(request, model_id, READ)
    return await _model_response(request, access, doc)


async def _change_model(
    request: Request, model_id: str, change: Callable[[m.LoggedModelDoc], m.LoggedModelDoc]
) -> tuple[ProjectAccess, m.LoggedModelDoc]:
    """Read, change and store a new version of the model's document."""
    access, doc = await _model(request, model_id, WRITE)
    updated = change(doc).model_copy(update={"last_updated_timestamp_ms": now_ms()})
    await _write_doc(get_platform(request), access.project.id, updated, access.principal.username)
    return access, updated


@router.patch(API + "/logged-models/{model_id}")
async def finalize_logged_model(model_id: str, request: Request) -> Response:
    raw = await request.body()

    def finalize(doc: m.LoggedModelDoc) -> m.LoggedModelDoc:
        return doc.model_copy(update={"status": _parse(m.FinalizeLoggedModel, raw).status})

    access, doc = await _change_model(request, model_id, finalize)
    return await _model_response(request, access, doc)


@router.patch(API + "/logged-models/{model_id}/tags")
async def set_logged_model_tags(model_id: str, request: Request) -> Response:
    raw = await request.body()

    def tag(doc: m.LoggedModelDoc) -> m.LoggedModelDoc:
        tags = {t.key: t.value for t in _parse(m.LoggedModelTags, raw).tags}
        return doc.model_copy(update={"tags": {**doc.tags, **tags}})

    await _change_model(request, model_id, tag)
    return _empty()


@router.delete(API + "/logged-models/{model_id}/tags/{key:path}")
async def delete_logged_model_tag(model_id: str, key: str, request: Request) -> Response:
    def drop(doc: m.LoggedModelDoc) -> m.LoggedModelDoc:
        if key not in doc.tags:
            raise NotFound(f"tag {key!r} not found on logged model {model_id}", field="key")
        return doc.model_copy(update={"tags": {k: v for k, v in doc.tags.items() if k != key}})

    await _change_model(request, model_id, drop)
    return _empty()


@router.post(API + "/logged-models/{model_id}/params")
async def log_logged_model_params(model_id: str, request: Request) -> Response:
    raw = await request.body()

    def log(doc: m.LoggedModelDoc) -> m.LoggedModelDoc:
        params = {p.key: p.value for p in _parse(m.LoggedModelParams, raw).params}
        return doc.model_copy(update={"params": {**doc.params, **params}})

    await _change_model(request, model_id, log)
    return _empty()


@router.delete(API + "/logged-models/{model_id}")
async def delete_logged_model(model_id: str, request: Request) -> Response:
    """Deletes the document (a delete marker); the model's files stay until deleted."""

    def work(s: Session, access: ProjectAccess) -> None:
        platform = get_platform(request)
        row = _doc_version(platform, s, access.project.id, model_id)
        platform.artifacts.delete(s, access.project.id, row.path, access.principal.username)

    await _in_project(request, WRITE, work, write=True)
    return _empty()


def _model_value(doc: m.LoggedModelDoc, entity: str, key: str) -> Any:
    if entity == "tag":
        return doc.tags.get(key)
    if entity == "param":
        return doc.params.get(key)
    if key in ("name", "model_id", "model_type", "source_run_id", "status"):
        return getattr(doc, key)
    raise BadRequest(f"cannot filter logged models on {entity} {key!r}", field="filter")


@router.post(API + "/logged-models/search")
async def search_logged_models(request: Request) -> Response:
    raw = await request.body()
    platform = get_platform(request)

    def work(s: Session, access: ProjectAccess) -> tuple[Any, ...]:
        body = _parse(m.SearchLoggedModels, raw)
        experiments = set(_experiment_ids(platform, s, access, body.experiment_ids))
        rows = platform.artifacts.list_latest(s, access.project.id, MODEL_DOCS, LIST_LIMIT)
        default = _default_experiment(platform, s, access.project.id)
        return body, experiments, list(rows), default

    body, experiments, rows, default = await _in_project(request, READ, work, write=False)
    clauses = m.parse_simple_filter(body.filter)
    docs = [doc for row in rows if (doc := await _read_doc(platform, row)) is not None]
    found = [
        d
        for d in docs
        if (not body.experiment_ids or d.experiment_id in experiments)
        and m.matches(clauses, partial(_model_value, d))
    ]
    found.sort(key=lambda d: d.creation_timestamp_ms, reverse=True)
    for order in reversed(body.order_by):
        field = order.field_name.removeprefix("attributes.")
        if field not in ("name", "creation_timestamp", "creation_timestamp_ms", "model_id"):
            raise BadRequest(f"cannot order logged models by {field!r}", field="order_by")
        attr = "creation_timestamp_ms" if field.startswith("creation") else field
        found.sort(key=attrgetter(attr), reverse=not order.ascending)
    models = [m.logged_model_out(d, _model_experiment_id(default, d)) for d in found]
    return _json(_page(models, "models", body))


# --- the artifact proxy ----------------------------------------------------------------------


@router.put(ARTIFACTS + "/{path:path}")
async def upload_artifact(path: str, request: Request) -> Response:
    access = await _project_access(request, Permission.ARTIFACT_WRITE)
    platform = get_platform(request)
    clean = ArtifactService.clean_path(path)
    limit = platform.settings.max_upload_bytes
    if int(request.headers.get("content-length") or 0) > limit:
        raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes", field="body")
    await platform.artifacts.upload(
        platform.db,
        access.project.id,
        clean,
        request.stream(),
        content_type=request.headers.get("content-type") or "application/octet-stream",
        actor=access.principal.username,
    )
    return _empty()


@router.get(ARTIFACTS + "/{path:path}")
async def download_artifact(path: str, request: Request) -> StreamingResponse:
    platform = get_platform(request)

    def work(s: Session, access: ProjectAccess) -> ArtifactVersion:
        return platform.artifacts.find(s, access.project.id, ArtifactService.clean_path(path), None)

    row = await _in_project(request, Permission.ARTIFACT_READ, work, write=False)
    with platform.db.read() as s:
        download = await platform.artifacts.open_download(s, row)
    headers = {"Content-Length": str(row.size), "ETag": f'"{row.sha256}"'}
    media_type = row.content_type or "application/octet-stream"
    return StreamingResponse(download, headers=headers, media_type=media_type)


def _children(rows: Sequence[ArtifactVersion], prefix: str) -> list[dict[str, Any]]:
    """The direct children of a folder: files with their size, and sub-folders once each."""
    files: dict[str, dict[str, Any]] = {}
    for row in rows:
        name, sep, _ = row.path[len(prefix) :].partition("/")
        if sep:
            files.setdefault(name, {"path": name, "is_dir": True})
        else:
            files[name] = {"path": name, "is_dir": False, "file_size": row.size}
    return sorted(files.values(), key=lambda f: str(f["path"]))


@router.get(ARTIFACTS)
async def list_artifacts(request: Request) -> Response:
    """The folder ``path`` (the store's root when empty), one level deep."""
    raw = request.query_params.get("path", "").strip("/")
    platform = get_platform(request)

    def work(s: Session, access: ProjectAccess) -> dict[str, Any]:
        prefix = f"{ArtifactService.clean_path(raw)}/" if raw else ""
        rows = platform.artifacts.list_latest(s, access.project.id, prefix, LIST_LIMIT)
        return {"files": _children(rows, prefix)}

    return _json(await _in_project(request, Permission.ARTIFACT_READ, work, write=False))


@router.delete(ARTIFACTS + "/{path:path}")
async def delete_artifact(path: str, request: Request) -> Response:
    """Deletes a file, or every file under a folder (delete markers; versions stay)."""
    platform = get_platform(request)

    def work(s: Session, access: ProjectAccess) -> None:
        pid, actor = access.project.id, access.principal.username
        clean = ArtifactService.clean_path(path.strip("/"))
        under = platform.artifacts.list_latest(s, pid, f"{clean}/", LIST_LIMIT)
        paths = [r.path for r in under] or [clean]
        for target in paths:
            platform.artifacts.delete(s, pid, target, actor)

    await _in_project(request, Permission.ARTIFACT_DELETE, work, write=True)
    return _empty()


@router.get("/api/3.0/mlflow/server-info")
async def server_info(request: Request) -> Response:
    """What the client probes before transfers: no multipart, no workspaces."""
    platform = get_platform(request)
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=_token(request))
    if platform.identity.cached_principal(credentials.credentials) is None:
        await anyio.to_thread.run_sync(authenticate_now, request, platform, credentials)
    return _json(
        {
            "store_type": "SqlStore",
            "workspaces_enabled": False,
            "multipart_uploads_enabled": False,
            "multipart_downloads_enabled": False,
        }
    )
