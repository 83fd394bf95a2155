"""The run buffer without a server: batching, ordering, encoding, failure handling, source.

Delivery itself is tested against a real server in tests/integration/sdk/test_tracking.py.
The tests here that use ``httpx.MockTransport`` do so because they need the server to fail on
demand (503s, refused connections, a 409 in the middle of a run), which a healthy real server
cannot be made to do at a chosen request.
"""

from __future__ import annotations

import json
import math
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import shipyard
from shipyard.sdk import _tracking
from shipyard.sdk._tracking import (
    MAX_BATCH_ITEMS,
    ActiveRun,
    _Pending,
    batch_body,
    detect_source,
)

RUN = {
    "id": "0123456789abcdef0123456789abcdef",
    "name": "r",
    "status": "RUNNING",
    "params": {},
    "tags": {},
    "metrics": {},
    "artifact_uri": "runs/0123/artifacts",
}


def _points(n: int, key: str = "loss") -> list[tuple[str, float, int, int]]:
    return [(key, float(i), i, 1_000 + i) for i in range(n)]


# --- the pending buffer --------------------------------------------------------------------


def test_take_sends_params_and_tags_first_and_never_more_than_the_limit() -> None:
    pending = _Pending(_points(25), {"a": "1", "b": "2"}, {"t": "x"})
    first = pending.take(10)
    assert (first.params, first.tags) == ({"a": "1", "b": "2"}, {"t": "x"})
    assert [p[2] for p in first.metrics] == list(range(7))
    assert first.size == 10
    second = pending.take(10)
    assert [p[2] for p in second.metrics] == list(range(7, 17)) and not second.params
    assert [p[2] for p in pending.take(10, max_points=3).metrics] == [17, 18, 19]
    assert pending.size == 5


def test_put_back_restores_order_and_keeps_newer_tags() -> None:
    pending = _Pending(_points(10), {}, {"stage": "old"})
    batch = pending.take(6)
    pending.tags["stage"] = "new"  # logged while the batch was in flight
    pending.metrics.append(("loss", 99.0, 99, 0))
    pending.put_back(batch)
    assert [p[2] for p in pending.metrics] == [*range(10), 99]
    assert pending.tags == {"stage": "new"}


def test_batch_body_sends_non_finite_values_as_strings() -> None:
    body = json.loads(
        batch_body(
            [
                ("x", math.nan, 0, 1),
                ("x", math.inf, 1, 2),
                ("x", -math.inf, 2, 3),
                ("x", 0.5, 3, 4),
            ],
            {"p": "1"},
            {},
        )
    )
    assert [m["value"] for m in body["metrics"]] == ["NaN", "Infinity", "-Infinity", 0.5]
    assert body["metrics"][1] == {"key": "x", "value": "Infinity", "step": 1, "timestamp": 2}
    assert body["params"] == {"p": "1"}


# --- a server that fails on demand ----------------------------------------------------------


class FlakyServer:
    """Answers the tracking routes; ``fail`` decides, per log request, how it goes wrong."""

    def __init__(self) -> None:
        self.delivered: list[dict[str, Any]] = []
        self.statuses: list[str] = []
        self.fail: Callable[[int], httpx.Response | None] = lambda attempt: None
        self.attempts = 0
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path.endswith("/runs"):
            body = json.loads(request.content)
            return httpx.Response(201, json={**RUN, "params": body["params"]})
        if request.method == "PATCH":
            self.statuses.append(json.loads(request.content)["status"])
            return httpx.Response(200, json={**RUN, "status": self.statuses[-1]})
        if path.endswith("/log"):
            with self.lock:
                self.attempts += 1
                failure = self.fail(self.attempts)
            if failure is not None:
                return failure
            self.delivered.append(json.loads(request.content))
            return httpx.Response(204)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": path}})

    def points(self) -> list[tuple[str, float, int]]:
        return [(m["key"], m["value"], m["step"]) for b in self.delivered for m in b["metrics"]]


def unavailable(attempt: int) -> httpx.Response:
    return httpx.Response(503, json={"error": {"code": "store_unavailable", "message": "down"}})


def refused(attempt: int) -> httpx.Response:
    raise httpx.ConnectError("connection refused")


@pytest.fixture
def flaky() -> FlakyServer:
    return FlakyServer()


@pytest.fixture
def start(flaky: FlakyServer) -> Iterator[Callable[..., ActiveRun]]:
    session = shipyard.Session(
        url="http://shipyard.test", api_key="k", transport=httpx.MockTransport(flaky)
    )
    started: list[ActiveRun] = []

    def start_run(**options: Any) -> ActiveRun:
        options.setdefault("flush_interval", 3600)
        run = session.tracking("ml/churn").start_run("e", source="test", **options)
        started.append(run)
        return run

    yield start_run
    flaky.fail = lambda attempt: None
    for run in started:  # nothing is left for the atexit hook
        run.end(timeout=5)
    session.close()


def test_a_failing_flush_keeps_every_point_and_retries_until_it_succeeds(
    flaky: FlakyServer, start: Callable[..., ActiveRun]
) -> None:
    flaky.fail = lambda attempt: unavailable(attempt) if attempt <= 2 else None
    run = start()
    for i in range(25_000):
        run.log_metric("loss", i / 2, step=i)
    run.end(timeout=10)
    assert flaky.points() == [("loss", i / 2, i) for i in range(25_000)]
    assert all(len(b["metrics"]) <= MAX_BATCH_ITEMS for b in flaky.delivered)
    assert flaky.attempts >= 5 and flaky.statuses == ["FINISHED"]


def test_end_raises_when_the_server_stays_down_and_keeps_the_data_for_a_retry(
    flaky: FlakyServer, start: Callable[..., ActiveRun]
) -> None:
    flaky.fail = refused
    run = start()
    run.log_params({"C": 1})
    run.log_metrics({"a": 1.0, "b": 2.0}, step=3)
    with pytest.raises(shipyard.TransportError):
        run.end(timeout=0.3)
    assert not run.ended and run.buffered == 3 and flaky.statuses == []
    flaky.fail = lambda attempt: None
    run.end(timeout=5)
    assert run.ended and run.buffered == 0 and flaky.statuses == ["FINISHED"]
    assert flaky.delivered[0]["params"] == {"C": "1"}
    assert sorted(flaky.points()) == [("a", 1.0, 3), ("b", 2.0, 3)]


def test_a_refused_batch_raises_at_once_and_is_not_dropped(
    flaky: FlakyServer, start: Callable[..., ActiveRun]
) -> None:
    conflict = {"error": {"code": "conflict", "message": "run is FINISHED"}}
    flaky.fail = lambda attempt: httpx.Response(409, json=conflict)
    run = start()
    run.log_metric("x", 1.0)
    with pytest.raises(shipyard.Conflict):
        run.flush(timeout=60)  # not retried for a minute: a 409 will not heal
    assert run.buffered == 1


def test_the_background_thread_backs_off_and_delivers_after_an_outage(
    flaky: FlakyServer, start: Callable[..., ActiveRun]
) -> None:
    flaky.fail = lambda attempt: unavailable(attempt) if attempt <= 2 else None
    run = start(flush_interval=0.05)
    run.log_metric("x", 1.0)
    for _ in range(100):
        if flaky.delivered:
            break
        threading.Event().wait(0.05)
    assert flaky.points() == [("x", 1.0, 0)] and flaky.attempts == 3  # two failures, retried
    assert run.last_error is None


def test_an_exception_in_the_block_fails_the_run_and_is_re_raised_unmasked(
    flaky: FlakyServer, start: Callable[..., ActiveRun]
) -> None:
    run = start()
    with pytest.raises(ZeroDivisionError), run:
        run.log_metric("x", 1.0)
        _ = 1 / 0
    assert flaky.statuses == ["FAILED"] and flaky.points() == [("x", 1.0, 0)]


def test_params_cannot_change_and_bad_keys_fail_in_the_caller(
    start: Callable[..., ActiveRun],
) -> None:
    run = start(params={"C": 1.0})
    run.log_param("C", 1.0)  # the same value again is fine
    with pytest.raises(shipyard.Conflict, match="'C'"):
        run.log_param("C", 2.0)
    with pytest.raises(ValueError, match="metric key"):
        run.log_metric("", 1.0)
    with pytest.raises(ValueError, match="at most 6000"):
        run.log_param("long", "x" * 6001)
    assert run.buffered == 0


def test_logging_after_end_is_refused(start: Callable[..., ActiveRun]) -> None:
    run = start()
    run.end()
    with pytest.raises(shipyard.ShipyardError, match="has ended"):
        run.log_metric("x", 1.0)
    run.end()  # ending twice is a no-op


def test_the_exit_hook_ends_runs_left_open(
    flaky: FlakyServer, start: Callable[..., ActiveRun]
) -> None:
    run = start()
    run.log_metric("x", 1.0)
    assert shipyard.active_run() is run
    _tracking._end_open_runs()
    assert run.ended and shipyard.active_run() is None
    assert flaky.points() == [("x", 1.0, 0)] and flaky.statuses == ["FINISHED"]


# --- module-level functions and source ----------------------------------------------------


def test_start_run_without_a_project_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIPYARD_PROJECT", raising=False)
    with pytest.raises(shipyard.ConfigurationError, match="SHIPYARD_PROJECT"):
        shipyard.start_run()


def test_source_has_the_git_commit_and_dirty_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True)
        return done.stdout.strip()

    git("init", "-q")
    git("-c", "user.email=a@b", "-c", "user.name=a", "add", "train.py")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "first")
    monkeypatch.setattr("sys.argv", [str(script)])
    clean = detect_source()
    assert clean == {
        "name": str(script.resolve()),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": False,
    }
    script.write_text("print('changed')\n")
    assert detect_source()["git_dirty"] is True


def test_source_without_git_is_just_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no git binary to be found
    monkeypatch.setattr("sys.argv", ["-c"])
    assert detect_source() == {"name": "<interactive>"}
