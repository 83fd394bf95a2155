"""Experiment tracking: experiments, runs, buffered metric logging, search and history.

A run's metric points, params and tags are buffered in memory and sent by one background
thread per run, every ``flush_interval`` seconds or as soon as 10,000 items wait, in batches of
at most 10,000 items (the server's limit). ``log_metric`` only appends a tuple to a list under
a lock, so a training loop can log hundreds of thousands of points a second.

What is guaranteed:

- Nothing logged is lost on a normal exit, on an exception inside ``with run:``, or at
  interpreter exit (an ``atexit`` hook ends runs that were left open).
- Inside a job (``$SHIPYARD_RUN_ID`` set by the platform), the module-level functions log to
  the job's own run instead of starting one, and that run is only flushed at exit, never
  ended: the platform ends it when the whole job ends (every instance, retries included).
- A batch that fails to send (server down, 5xx, timeout) stays in the buffer, in order, and is
  retried with exponential backoff. ``flush()`` and ``end()`` keep retrying for ``timeout``
  seconds and then raise the last error; they never report success for undelivered data.
- A batch the server may have written before the connection broke can be sent twice, so
  delivery is at least once.
- Params are write-once on the server; logging a different value for a param raises
  ``Conflict`` at once, in the caller, instead of failing a whole batch later.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shipyard.sdk._artifacts import Artifacts, split_project
from shipyard.sdk._exceptions import (
    ConfigurationError,
    Conflict,
    RateLimited,
    ServerError,
    ShipyardError,
    TransportError,
)

if TYPE_CHECKING:
    from shipyard.sdk._client import Session

MAX_BATCH_ITEMS = 10_000
"""The most items (metric points + params + tags) the server takes in one request."""
MAX_KEY_LENGTH = 250
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
GIT_TIMEOUT_S = 2.0
SEARCH_PAGE_SIZE = 1000
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_RETRYABLE = (TransportError, ServerError, RateLimited)
JOB_RUN_VARIABLE = "SHIPYARD_RUN_ID"
"""Set by the platform in a job's processes: the job's run, already RUNNING."""
Point = tuple[str, float, int, int]
"""A buffered metric point: ``(key, value, step, timestamp in epoch milliseconds)``."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _json_number(value: float) -> float | str:
    """JSON has no NaN or infinity: send them as the strings MLflow's JSON uses."""
    return value if math.isfinite(value) else _NON_FINITE[repr(value)]


def _check_key(key: object, what: str = "metric") -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise ValueError(f"a {what} key is a string of 1 to {MAX_KEY_LENGTH} characters: {key!r}")
    return key


def _texts(items: Mapping[str, Any], what: str, limit: int) -> dict[str, str]:
    """Keys checked and values as text, refused here rather than failing a batch later."""
    text = {_check_key(k, what): str(v) for k, v in items.items()}
    for key, value in text.items():
        if len(value) > limit:
            raise ValueError(f"{what} {key!r} is {len(value)} characters; at most {limit}")
    return text


def _run_from_json(run: dict[str, Any]) -> dict[str, Any]:
    """Turn the ``"NaN"``/``"Infinity"`` strings of latest metric values back into floats."""
    for latest in run.get("metrics", {}).values():
        latest["value"] = float(latest["value"])
    return run


def batch_body(
    metrics: Sequence[Point], params: Mapping[str, str], tags: Mapping[str, str]
) -> bytes:
    """The JSON of ``POST /runs/{id}/log``, built once per batch rather than once per point."""
    finite = math.isfinite
    points = [
        {"key": k, "value": v if finite(v) else _json_number(v), "step": s, "timestamp": t}
        for k, v, s, t in metrics
    ]
    body = {"metrics": points, "params": dict(params), "tags": dict(tags)}
    return json.dumps(body, separators=(",", ":")).encode()


# --- where the code came from --------------------------------------------------------------


def _git(args: Sequence[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):  # no git, not a work tree, too slow
        return None
    return done.stdout


def detect_source() -> dict[str, Any]:
    """The script or notebook being run, and its git commit and dirty flag when known.

    Example::

        >>> detect_source()
        {'name': '/home/ana/churn/train.py', 'git_commit': '3f2c…', 'git_dirty': False}
    """
    notebook = os.environ.get("JPY_SESSION_NAME")
    script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else ""
    if notebook or "ipykernel" in sys.modules:
        name = notebook or "<notebook>"
        where = Path(notebook).parent if notebook else Path.cwd()
    elif script and Path(script).is_file():
        name = str(Path(script).resolve())
        where = Path(name).parent
    else:
        name, where = script or "<interactive>", Path.cwd()
    source: dict[str, Any] = {"name": name[:512]}
    commit = _git(["rev-parse", "HEAD"], where)
    if commit and commit.strip():
        source["git_commit"] = commit.strip()
        status = _git(["status", "--porcelain", "--untracked-files=no"], where)
        if status is not None:
            source["git_dirty"] = bool(status.strip())
    return source


def _source_body(source: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if source is None:
        return detect_source()
    if isinstance(source, str):
        return {"name": source}
    return dict(source)


# --- the client ----------------------------------------------------------------------------


class Tracking:
    """Experiments and runs of one project; get it with ``session.tracking("team/project")``.

    Example::

        tracking = shipyard.Session().tracking("ml/churn")
        with tracking.start_run("baseline", params={"C": 1.0}) as run:
            for epoch in range(10):
                run.log_metric("loss", 1 / (epoch + 1), step=epoch)
        tracking.search_runs("metrics.loss < 0.2", order_by=["metrics.loss ASC"])
    """

    def __init__(self, session: Session, project: str) -> None:
        self._session = session
        self.team, self.project = split_project(project)
        self._base = f"/api/v1/projects/{quote(self.team)}/{quote(self.project)}"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._session.request(method, f"{self._base}{path}", **kwargs)

    # experiments ----------------------------------------------------------------------------

    def create_experiment(
        self, name: str, *, description: str = "", tags: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Create an experiment (a named group of runs); ``Conflict`` if the name is taken.

        Example::

            tracking.create_experiment("baseline", description="logistic regression")
        """
        body = {"name": name, "description": description, "tags": dict(tags or {})}
        result: dict[str, Any] = self._request("POST", "/experiments", json=body)
        return result

    def experiments(self) -> list[dict[str, Any]]:
        """The project's experiments, oldest first."""
        result: list[dict[str, Any]] = self._request("GET", "/experiments")
        return result

    def experiment(self, name_or_id: str) -> dict[str, Any]:
        """One experiment, by name or id."""
        result: dict[str, Any] = self._request("GET", f"/experiments/{quote(name_or_id, safe='')}")
        return result

    # runs -----------------------------------------------------------------------------------

    def start_run(
        self,
        experiment: str = "Default",
        *,
        name: str | None = None,
        parent: ActiveRun | str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        source: str | Mapping[str, Any] | None = None,
        run_id: str | None = None,
        flush_interval: float = 1.0,
    ) -> ActiveRun:
        """Start a run (the experiment is created if missing) and return it, logging.

        ``source`` defaults to the running script or notebook with its git commit; pass
        ``run_id`` to attach to a run that is still RUNNING (e.g. from another process)
        instead of creating one. Use the run as a context manager: it ends FINISHED, or
        FAILED when the block raises, after everything buffered has been sent.

        Example::

            with tracking.start_run("baseline", name="lr", params={"C": 0.5}) as run:
                run.log_metric("auc", 0.91)
        """
        if run_id is None:
            info = self._create_run(experiment, name, parent, params, tags, source)
            return ActiveRun(self, info, flush_interval=flush_interval)
        info = self.get_run(run_id)
        if info["status"] != "RUNNING":
            message = f"run {run_id} is {info['status']}; only a RUNNING run can be attached to"
            raise Conflict(409, "conflict", message, field="run_id")
        run = ActiveRun(self, info, flush_interval=flush_interval)
        run.log_params(params or {})
        run.set_tags(tags or {})
        return run

    def _create_run(
        self,
        experiment: str,
        name: str | None,
        parent: ActiveRun | str | None,
        params: Mapping[str, Any] | None,
        tags: Mapping[str, str] | None,
        source: str | Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "experiment": experiment,
            "name": name or "",
            "params": _texts(params or {}, "param", MAX_PARAM_LENGTH),
            "tags": _texts(tags or {}, "tag", MAX_TAG_LENGTH),
            "source": _source_body(source),
        }
        if parent is not None:
            body["parent_run_id"] = parent.id if isinstance(parent, ActiveRun) else parent
        return _run_from_json(self._request("POST", "/runs", json=body))

    def get_run(self, run_id: str) -> dict[str, Any]:
        """A run with its params, tags, latest metrics and dataset inputs."""
        return _run_from_json(self._request("GET", f"/runs/{quote(run_id, safe='')}"))

    def update_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        end_time: int | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Rename a run or set its status (FINISHED, FAILED, KILLED ends it).

        Example::

            tracking.update_run(run_id, status="KILLED")
        """
        body = {
            k: v
            for k, v in {"status": status, "end_time": end_time, "name": name}.items()
            if v is not None
        }
        return _run_from_json(self._request("PATCH", f"/runs/{quote(run_id, safe='')}", json=body))

    def search_runs(
        self,
        filter: str = "",
        *,
        experiments: Sequence[str] | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
    ) -> list[dict[str, Any]]:
        """Runs matching ``filter`` (MLflow's search syntax), following pages up to ``max_results``.

        A filter that does not parse raises ``BadRequest`` whose ``details["position"]`` is the
        offset of the mistake in ``filter``.

        Example::

            best = tracking.search_runs(
                "metrics.auc > 0.9 AND params.model = 'rf'", order_by=["metrics.auc DESC"]
            )
        """
        runs: list[dict[str, Any]] = []
        token: str | None = None
        while len(runs) < max_results:
            body: dict[str, Any] = {
                "filter": filter,
                "order_by": list(order_by or []),
                "max_results": min(max_results - len(runs), SEARCH_PAGE_SIZE),
                "page_token": token,
            }
            if experiments is not None:
                body["experiments"] = list(experiments)
            page = self._request("POST", "/runs/search", json=body)
            runs.extend(_run_from_json(r) for r in page["runs"])
            token = page.get("next_page_token")
            if not token:
                break
        return runs

    def compare(self, run_ids: Sequence[str]) -> dict[str, Any]:
        """Runs side by side: ``params`` and ``metrics`` map each key to one value per run.

        Example::

            table = tracking.compare([a.id, b.id])
            table["metrics"]["auc"]   # [0.91, 0.87]
        """
        query = [("run_id", r) for r in run_ids]
        result: dict[str, Any] = self._request("GET", "/runs/compare", params=query)
        result["runs"] = [_run_from_json(r) for r in result["runs"]]
        result["metrics"] = {
            k: [None if v is None else float(v) for v in values]
            for k, values in result["metrics"].items()
        }
        return result

    def metric_keys(self, run_id: str) -> list[str]:
        """The names of a run's metrics."""
        result: list[str] = self._request("GET", f"/runs/{quote(run_id, safe='')}/metrics")
        return result

    def metric_history(
        self, run_id: str, key: str, *, max_points: int | None = None
    ) -> dict[str, Any]:
        """A metric's history as columns: ``steps``, ``values``, ``timestamps``.

        Every page is fetched; values are floats again (NaN and infinities included). With
        ``max_points`` a longer history is downsampled server-side to that many buckets
        (``downsampled`` is True, and ``min``, ``max`` and ``counts`` describe each bucket).

        Example::

            h = tracking.metric_history(run.id, "loss", max_points=500)
            plt.plot(h["steps"], h["values"])
        """
        path = f"/runs/{quote(run_id, safe='')}/metrics/{quote(key, safe='')}/history"
        params: dict[str, Any] = {} if max_points is None else {"max_points": max_points}
        history: dict[str, Any] = self._request("GET", path, params=params)
        while token := history.get("next_page_token"):
            page = self._request("GET", path, params={**params, "page_token": token})
            for column in ("steps", "values", "timestamps"):
                history[column].extend(page[column])
            history["next_page_token"] = page.get("next_page_token")
        for column in ("values", "min", "max"):
            if column in history:
                history[column] = [float(v) for v in history[column]]
        return history

    def log_batch(
        self,
        run_id: str,
        metrics: Iterable[Mapping[str, Any] | Sequence[Any]] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Log metric points, params and tags now (no buffering), 10,000 items per request.

        ``metrics`` holds ``{"key", "value", "step", "timestamp"}`` dicts or
        ``(key, value[, step[, timestamp]])`` tuples; step defaults to 0, timestamp to now.

        Example::

            tracking.log_batch(run_id, [("loss", 0.5, 1), ("loss", 0.4, 2)], params={"lr": 0.1})
        """
        points = [_point(m) for m in metrics]
        pending = _Pending(
            points,
            _texts(params or {}, "param", MAX_PARAM_LENGTH),
            _texts(tags or {}, "tag", MAX_TAG_LENGTH),
        )
        while not pending.empty:
            self._post_batch(run_id, pending.take(MAX_BATCH_ITEMS))

    def _post_batch(self, run_id: str, batch: _Pending) -> None:
        self._request(
            "POST",
            f"/runs/{quote(run_id, safe='')}/log",
            content=batch_body(batch.metrics, batch.params, batch.tags),
            headers={"Content-Type": "application/json"},
        )

    def log_input(self, run_id: str, dataset: str, version: int, context: str = "") -> None:
        """Record that a run read version ``version`` of ``dataset`` (lineage)."""
        body = {"dataset": dataset, "version": version, "context": context}
        self._request("POST", f"/runs/{quote(run_id, safe='')}/inputs", json=body)

    def artifacts(self) -> Artifacts:
        """The project's artifact store, where run artifacts live under ``artifact_uri``."""
        return Artifacts(self._session, f"{self.team}/{self.project}")


def _point(item: Mapping[str, Any] | Sequence[Any]) -> Point:
    if isinstance(item, Mapping):
        key, value = item["key"], item["value"]
        step, timestamp = item.get("step"), item.get("timestamp")
    else:
        key, value, step, timestamp = (*item, None, None)[:4]
    return (
        _check_key(key),
        float(value),
        0 if step is None else int(step),
        now_ms() if timestamp is None else int(timestamp),
    )


# --- the buffer ----------------------------------------------------------------------------


class _Pending:
    """Items waiting to be sent: metric points in logging order, params and tags."""

    def __init__(
        self,
        metrics: list[Point] | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else []
        self.params = params if params is not None else {}
        self.tags = tags if tags is not None else {}

    @property
    def empty(self) -> bool:
        return not (self.metrics or self.params or self.tags)

    @property
    def size(self) -> int:
        return len(self.metrics) + len(self.params) + len(self.tags)

    def take(self, limit: int, max_points: int | None = None) -> _Pending:
        """Remove and return at most ``limit`` items: params and tags first, then points."""
        params = _take_items(self.params, limit)
        tags = _take_items(self.tags, limit - len(params))
        room = limit - len(params) - len(tags)
        if max_points is not None:
            room = min(room, max_points)
        if room >= len(self.metrics):
            points, self.metrics = self.metrics, []
        else:
            points = self.metrics[:room]
            del self.metrics[:room]
        return _Pending(points, params, tags)

    def put_back(self, batch: _Pending) -> None:
        """Return an unsent batch to the front; values logged since it was taken win."""
        self.metrics[:0] = batch.metrics
        self.params = {**batch.params, **self.params}
        self.tags = {**batch.tags, **self.tags}


def _take_items(items: dict[str, str], limit: int) -> dict[str, str]:
    if len(items) <= limit:
        taken = dict(items)
        items.clear()
        return taken
    keys = list(items)[:limit]
    return {k: items.pop(k) for k in keys}


class ActiveRun:
    """A run being logged to; made by ``Tracking.start_run`` or ``shipyard.start_run``.

    Metric points, params and tags are buffered and sent in batches by one background
    thread; the module docstring lists the delivery guarantees. Every method is thread-safe.

    Example::

        with tracking.start_run("baseline") as run:
            run.log_params({"C": 1.0, "penalty": "l2"})
            for step, loss in enumerate(losses):
                run.log_metric("loss", loss, step=step)
            run.log_artifact("model.pkl", "model")
    """

    def __init__(
        self,
        tracking: Tracking,
        info: dict[str, Any],
        *,
        flush_interval: float = 1.0,
    ) -> None:
        self._tracking = tracking
        self.info = info
        self.id: str = info["id"]
        self.ends_at_exit = True
        """False for a run that something else ends (a job's run): flushed at exit, not ended."""
        self._interval = flush_interval
        self._lock = threading.Lock()  # guards the buffer
        self._send_lock = threading.Lock()  # one batch in flight, so order is kept
        self._pending = _Pending()
        self._params = dict(info.get("params", {}))  # what the server has or will have
        self._keys: set[str] = set()  # metric keys already checked
        self._wake = threading.Event()
        self._closing = threading.Event()
        self.last_error: Exception | None = None
        """The last failure of a send, cleared by the next successful one."""
        self._ended = False
        self._end_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._flush_loop, name=f"shipyard-run-{self.id[:8]}", daemon=True
        )
        self._thread.start()
        _register(self)

    def __repr__(self) -> str:
        return f"<ActiveRun {self.id} {self.info.get('name', '')!r}>"

    @property
    def tracking(self) -> Tracking:
        return self._tracking

    @property
    def artifact_uri(self) -> str:
        """Where the run's artifacts live in the project's artifact store."""
        return str(self.info["artifact_uri"])

    # logging --------------------------------------------------------------------------------

    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp: int | None = None
    ) -> None:
        """Buffer one point; ``step`` defaults to 0 and ``timestamp`` (epoch ms) to now.

        Example::

            run.log_metric("loss", 0.25, step=3)
        """
        if self._ended or key not in self._keys:
            self._admit(key)
        point = (
            key,
            float(value),
            0 if step is None else int(step),
            now_ms() if timestamp is None else int(timestamp),
        )
        with self._lock:
            metrics = self._pending.metrics
            metrics.append(point)
            full = len(metrics) == MAX_BATCH_ITEMS
        if full:
            self._wake.set()

    def _admit(self, key: str) -> None:
        """The slow path of ``log_metric``, taken once per key: is the key valid, the run open?"""
        self._check_open()
        self._keys.add(_check_key(key))

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None
    ) -> None:
        """Buffer several metrics at the same step and time.

        Example::

            run.log_metrics({"loss": 0.25, "accuracy": 0.91}, step=3)
        """
        self._check_open()
        stamp = now_ms() if timestamp is None else int(timestamp)
        at = 0 if step is None else int(step)
        points = [(_check_key(k), float(v), at, stamp) for k, v in metrics.items()]
        with self._lock:
            buffered = self._pending.metrics
            before = len(buffered)
            buffered.extend(points)
            crossed = before < MAX_BATCH_ITEMS <= len(buffered)
        if crossed:
            self._wake.set()

    def log_param(self, key: str, value: Any) -> None:
        """Buffer a param (stored as text); params cannot change once logged.

        Example::

            run.log_param("C", 0.5)
        """
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Buffer several params; ``Conflict`` if one was logged before with another value."""
        self._check_open()
        text = _texts(params, "param", MAX_PARAM_LENGTH)
        with self._lock:
            for key, value in text.items():
                known = self._params.get(key)
                if known is not None and known != value:
                    raise Conflict(
                        409,
                        "conflict",
                        f"param {key!r} was logged as {known!r}; params cannot change",
                        field=f"params.{key}",
                    )
            new = {k: v for k, v in text.items() if k not in self._params}
            self._params.update(new)
            self._pending.params.update(new)

    def set_tag(self, key: str, value: Any) -> None:
        """Buffer a tag; unlike params, tags can be overwritten.

        Example::

            run.set_tag("stage", "tuning")
        """
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Buffer several tags."""
        self._check_open()
        text = _texts(tags, "tag", MAX_TAG_LENGTH)
        with self._lock:
            self._pending.tags.update(text)

    def log_artifact(
        self, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> str:
        """Upload a file under the run's artifacts (in ``artifact_path`` if given).

        Returns the path in the project's artifact store.

        Example::

            run.log_artifact("model.pkl", "model")   # runs/<id>/artifacts/model/model.pkl
        """
        file = Path(local_path)
        parts = [self.artifact_uri, *([artifact_path.strip("/")] if artifact_path else [])]
        path = "/".join([*parts, file.name])
        self._tracking.artifacts().put(path, file)
        return path

    def log_artifacts(
        self, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> list[str]:
        """Upload every file under ``local_dir``, keeping the tree; returns the stored paths.

        Example::

            run.log_artifacts("outputs/plots", "plots")
        """
        root = Path(local_dir)
        stored = []
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = file.relative_to(root).parent.as_posix()
            inside = "/".join(p for p in (artifact_path, relative) if p and p != ".")
            stored.append(self.log_artifact(file, inside or None))
        return stored

    def log_input(self, dataset: str, version: int, context: str = "") -> None:
        """Record that the run read a dataset version (lineage); sent at once.

        Example::

            run.log_input("marketing", 2, context="training")
        """
        self._tracking.log_input(self.id, dataset, version, context)

    # delivery -------------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """How many items wait to be sent."""
        with self._lock:
            return self._pending.size

    def flush(self, timeout: float = 30.0) -> None:
        """Send everything logged so far; retry failures for ``timeout`` seconds, then raise.

        Example::

            run.flush()   # e.g. before reading the run back
        """
        deadline = time.monotonic() + timeout
        delay = 0.25
        while True:
            try:
                self._deliver()
            except _RETRYABLE as exc:
                self.last_error = exc
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:
                self.last_error = None
                return

    def _deliver(self) -> None:
        """Send what is buffered now, in batches; an unsent batch goes back to the front."""
        with self._send_lock:
            with self._lock:
                left = len(self._pending.metrics)
            while True:
                with self._lock:
                    batch = self._pending.take(MAX_BATCH_ITEMS, left)
                if batch.empty:
                    return
                try:
                    self._tracking._post_batch(self.id, batch)
                except BaseException:
                    with self._lock:
                        self._pending.put_back(batch)
                    raise
                left -= len(batch.metrics)

    def _flush_loop(self) -> None:
        """The background sender: every interval, or when a batch is full; backs off on errors."""
        backoff = 0.0
        while not self._closing.is_set():
            if backoff:
                self._closing.wait(backoff)  # a full buffer does not cut a backoff short
            else:
                self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self._deliver()
            except Exception as exc:  # kept for flush()/end() to report; the thread lives on
                self.last_error = exc
                backoff = min(max(backoff * 2, 0.5), 30.0)
            else:
                backoff, self.last_error = 0.0, None

    def _stop_thread(self) -> None:
        self._closing.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    # ending ---------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._ended:
            raise ShipyardError(f"run {self.id} has ended; start a new run to log more")

    def end(self, status: str = "FINISHED", *, timeout: float = 30.0) -> None:
        """Send everything buffered, then mark the run ``status`` (FINISHED, FAILED, KILLED).

        Raises, leaving the run open and the data buffered, if delivery still fails after
        ``timeout`` seconds; calling ``end()`` again retries. Ending twice is a no-op.

        Example::

            run.end("KILLED")
        """
        with self._end_lock:
            if self._ended:
                return
            self.flush(timeout)
            self._stop_thread()
            self.flush(timeout)  # anything another thread logged while the sender stopped
            self._tracking.update_run(self.id, status=status, end_time=now_ms())
            self._ended = True
        _unregister(self)

    @property
    def ended(self) -> bool:
        return self._ended

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.end("FINISHED")
            return
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        try:
            self.end(status)
        except ShipyardError as failure:  # the block's own exception is the one to see
            exc.add_note(f"shipyard: run {self.id} could not be ended {status}: {failure}")


# --- the active runs -----------------------------------------------------------------------

_open_runs: list[ActiveRun] = []
_open_lock = threading.Lock()


def _register(run: ActiveRun) -> None:
    with _open_lock:
        _open_runs.append(run)


def _unregister(run: ActiveRun) -> None:
    with _open_lock, contextlib.suppress(ValueError):
        _open_runs.remove(run)


def active_run() -> ActiveRun | None:
    """The most recently started run that has not ended, or None.

    Example::

        with shipyard.start_run():
            assert shipyard.active_run() is not None
    """
    with _open_lock:
        return _open_runs[-1] if _open_runs else None


@atexit.register
def _end_open_runs() -> None:
    """At interpreter exit, deliver and end runs left open: FAILED after an uncaught error.

    A run with ``ends_at_exit`` False (a job's run) is only delivered: the platform ends it.
    """
    crashed = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    status = "FAILED" if crashed is not None and not hasattr(sys, "ps1") else "FINISHED"
    with _open_lock:
        runs = list(reversed(_open_runs))
    for run in runs:
        try:
            if run.ends_at_exit:
                run.end(status, timeout=10.0)
            else:
                run.flush(timeout=10.0)
        except Exception as exc:  # e.g. its session was closed: report, do not abort the exit
            what = "ended" if run.ends_at_exit else "flushed"
            sys.stderr.write(
                f"shipyard: run {run.id} could not be {what}; {run.buffered} items were not "
                f"delivered: {exc}\n"
            )


def start_run(
    experiment: str = "Default", *, project: str | None = None, **options: Any
) -> ActiveRun:
    """Start a run in ``project`` (default: ``$SHIPYARD_PROJECT``) with the default session.

    The session comes from ``SHIPYARD_URL``/``SHIPYARD_API_KEY`` or the login profile. A run
    started while another one is active becomes its child unless ``parent`` is given; inside
    a job, a run started with none active is a child of the job's run. Takes the options of
    ``Tracking.start_run``.

    Example::

        import shipyard

        with shipyard.start_run("baseline", project="ml/churn", params={"C": 1.0}):
            shipyard.log_metric("auc", 0.91)
    """
    project = project or os.environ.get("SHIPYARD_PROJECT")
    if not project:
        raise ConfigurationError(
            "no project to log to: pass project='team/project' or set SHIPYARD_PROJECT"
        )
    if options.get("parent") is None and options.get("run_id") is None:
        options["parent"] = active_run() or os.environ.get(JOB_RUN_VARIABLE) or None
    return _default_session().tracking(project).start_run(experiment, **options)


_sessions: dict[tuple[str | None, ...], Session] = {}


def _default_session() -> Session:
    """One shared session per server configuration, for the module-level functions."""
    from shipyard.sdk._client import Session

    names = ("SHIPYARD_URL", "SHIPYARD_API_KEY", "SHIPYARD_PROFILE", "SHIPYARD_CONFIG")
    config = tuple(os.environ.get(n) for n in names)
    with _open_lock:
        if config not in _sessions:
            _sessions[config] = Session()
        return _sessions[config]


def _current() -> ActiveRun:
    """The active run; else, inside a job, the job's run; else a new one (``$SHIPYARD_PROJECT``,
    experiment Default)."""
    return active_run() or _job_run() or start_run()


_attach_lock = threading.Lock()


def _job_run() -> ActiveRun | None:
    """Inside a job, its run (``$SHIPYARD_RUN_ID``), attached once per process.

    The platform made the run and ends it when the job ends, after every instance and retry,
    so this process must not: the run is flushed at exit, not ended (``ends_at_exit``).
    """
    run_id = os.environ.get(JOB_RUN_VARIABLE)
    if not run_id:
        return None
    with _attach_lock:  # two threads logging at once attach one run, not two
        run = active_run()
        if run is None:
            run = start_run(run_id=run_id)
            run.ends_at_exit = False
        return run


def log_metric(
    key: str, value: float, step: int | None = None, timestamp: int | None = None
) -> None:
    """Log a metric point to the active run (inside a job: the job's run; else one is started).

    Example::

        shipyard.log_metric("loss", 0.25, step=3)
    """
    _current().log_metric(key, value, step, timestamp)


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log several metrics to the active run at one step."""
    _current().log_metrics(metrics, step)


def log_param(key: str, value: Any) -> None:
    """Log a param to the active run."""
    _current().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    """Log several params to the active run."""
    _current().log_params(params)


def set_tag(key: str, value: Any) -> None:
    """Set a tag on the active run."""
    _current().set_tag(key, value)
