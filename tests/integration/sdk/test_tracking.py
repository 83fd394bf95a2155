"""Tracking through the SDK against a real server: runs, buffered metrics, search, history."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import Tenant, unique
from tests.support.servers import RunningServer

import shipyard
from shipyard.sdk import _tracking


@pytest.fixture
def session(server: RunningServer, tenant: Tenant) -> Iterator[shipyard.Session]:
    with shipyard.Session(url=server.url, api_key=tenant.keys["scientist"]) as s:
        yield s


@pytest.fixture
def tracking(session: shipyard.Session, tenant: Tenant) -> shipyard.Tracking:
    return session.tracking(f"{tenant.team}/{tenant.project}")


def _wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_a_run_logs_everything_and_finishes(tracking: shipyard.Tracking, tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"weights")
    (tmp_path / "plots" / "roc").mkdir(parents=True)
    (tmp_path / "plots" / "loss.png").write_bytes(b"png1")
    (tmp_path / "plots" / "roc" / "roc.png").write_bytes(b"png2")
    experiment = unique("sdk-")
    with tracking.start_run(experiment, name="lr", params={"C": 1.0}, tags={"team": "a"}) as run:
        run.log_param("penalty", "l2")
        run.set_tags({"stage": "dev"})
        for step in range(5):
            run.log_metrics({"loss": 1 / (step + 1), "acc": step / 10}, step=step)
        stored = run.log_artifact(tmp_path / "model.pkl", "model")
        tree = run.log_artifacts(tmp_path / "plots", "plots")
    got = tracking.get_run(run.id)
    assert got["status"] == "FINISHED" and got["end_time"] >= got["start_time"]
    assert (got["name"], got["experiment"]) == ("lr", experiment)
    assert got["params"] == {"C": "1.0", "penalty": "l2"}
    assert got["tags"] == {"team": "a", "stage": "dev"}
    assert got["metrics"]["loss"]["value"] == pytest.approx(0.2)
    assert got["metrics"]["acc"]["step"] == 4
    assert got["source"]["name"]  # the running script; the commit when inside a work tree
    store = tracking.artifacts()
    assert stored == f"{got['artifact_uri']}/model/model.pkl"
    assert store.get(stored) == b"weights"
    assert tree == [f"{got['artifact_uri']}/plots/{p}" for p in ("loss.png", "roc/roc.png")]
    assert store.get(tree[1]) == b"png2"
    assert [e["name"] for e in tracking.experiments()].count(experiment) == 1
    assert tracking.experiment(experiment)["id"] == got["experiment_id"]
    assert shipyard.active_run() is None


def test_an_exception_fails_the_run_and_keeps_every_buffered_point(
    tracking: shipyard.Tracking,
) -> None:
    with pytest.raises(RuntimeError, match="diverged"), tracking.start_run() as run:
        for step in range(15_000):
            run.log_metric("loss", step * 0.5, step=step)
        raise RuntimeError("diverged")
    assert tracking.get_run(run.id)["status"] == "FAILED"
    history = tracking.metric_history(run.id, "loss")
    assert history["total_points"] == 15_000
    assert history["values"] == [step * 0.5 for step in range(15_000)]


def test_20000_points_arrive_in_order(tracking: shipyard.Tracking) -> None:
    values = [random.random() for _ in range(20_000)]
    with tracking.start_run(flush_interval=3600) as run:
        for value in values:
            run.log_metric("noise", value)  # every step 0: only logging order tells them apart
    history = tracking.metric_history(run.id, "noise")
    assert history["values"] == values and history["downsampled"] is False
    assert history["steps"] == [0] * 20_000
    assert history["timestamps"] == sorted(history["timestamps"])


def test_the_background_thread_sends_on_its_interval_and_when_a_batch_is_full(
    tracking: shipyard.Tracking,
) -> None:
    with tracking.start_run(flush_interval=0.1) as run:
        run.log_metric("x", 1.0)
        _wait_for(lambda: tracking.get_run(run.id)["metrics"].get("x"))
    with tracking.start_run(flush_interval=3600) as run:
        for i in range(10_000):
            run.log_metric("x", float(i), step=i)
        _wait_for(lambda: tracking.get_run(run.id)["metrics"].get("x", {}).get("step") == 9_999)


def test_threads_log_to_one_run_concurrently(tracking: shipyard.Tracking) -> None:
    with tracking.start_run(flush_interval=0.05) as run:

        def work(key: str) -> None:
            for step in range(5_000):
                run.log_metric(key, float(step), step=step)

        threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for i in range(4):
        history = tracking.metric_history(run.id, f"t{i}")
        assert history["steps"] == list(range(5_000))


def test_log_metric_keeps_up_with_100000_points_a_second(tracking: shipyard.Tracking) -> None:
    """The calls only append to the buffer; the background thread sends while they run."""
    with tracking.start_run() as run:
        started = time.perf_counter()
        for step in range(100_000):
            run.log_metric("rate", 0.5, step)
        calls = time.perf_counter() - started
        run.flush()
        delivered = time.perf_counter() - started
    started = time.perf_counter()
    history = tracking.metric_history(run.id, "rate")
    read = time.perf_counter() - started
    print(
        f"\nlog_metric: {100_000 / calls:,.0f} calls/s; delivered end to end at "
        f"{100_000 / delivered:,.0f} points/s; history of 100,000 points read in {read:.3f}s"
    )
    assert 100_000 / calls >= 100_000
    assert len(history["values"]) == 100_000


def test_history_downsamples_with_max_points(tracking: shipyard.Tracking) -> None:
    with tracking.start_run() as run:
        for step in range(1_000):
            run.log_metric("loss", float(step), step=step)
    history = tracking.metric_history(run.id, "loss", max_points=10)
    assert history["downsampled"] is True and history["total_points"] == 1_000
    assert 2 <= len(history["values"]) <= 10 and sum(history["counts"]) == 1_000
    assert history["min"][0] == 0.0 and history["max"][-1] == 999.0
    assert tracking.metric_keys(run.id) == ["loss"]


def test_nan_and_infinities_round_trip(tracking: shipyard.Tracking) -> None:
    values = [math.nan, math.inf, -math.inf, 1.5]
    with tracking.start_run() as run:
        for step, value in enumerate(values):
            run.log_metric("odd", value, step=step)
        tracking.log_batch(run.id, [("batched", math.nan, 0), {"key": "batched", "value": 2.0}])
    history = tracking.metric_history(run.id, "odd")
    assert math.isnan(history["values"][0]) and history["values"][1:] == [math.inf, -math.inf, 1.5]
    latest = tracking.get_run(run.id)["metrics"]
    assert latest["odd"]["value"] == 1.5 and math.isnan(
        tracking.metric_history(run.id, "batched")["values"][0]
    )


def test_log_batch_splits_big_batches(tracking: shipyard.Tracking) -> None:
    with tracking.start_run() as run:
        points = [("big", float(i), i) for i in range(25_000)]
        tracking.log_batch(run.id, points, params={"p": 1}, tags={"t": "x"})
    got = tracking.get_run(run.id)
    assert got["params"] == {"p": "1"} and got["tags"] == {"t": "x"}
    assert tracking.metric_history(run.id, "big")["total_points"] == 25_000


def test_search_follows_pages_orders_and_compares(
    tracking: shipyard.Tracking, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = unique("search-")
    ids = []
    for auc in (0.7, 0.9, 0.8):
        with tracking.start_run(experiment, params={"auc": auc}) as run:
            run.log_metric("auc", auc)
        ids.append(run.id)
    monkeypatch.setattr(_tracking, "SEARCH_PAGE_SIZE", 2)  # three runs take two pages
    found = tracking.search_runs(
        "metrics.auc >= 0.75", experiments=[experiment], order_by=["metrics.auc DESC"]
    )
    assert [r["id"] for r in found] == [ids[1], ids[2]]
    every = tracking.search_runs(experiments=[experiment], order_by=["metrics.auc ASC"])
    assert [r["metrics"]["auc"]["value"] for r in every] == [0.7, 0.8, 0.9]
    assert len(tracking.search_runs(experiments=[experiment], max_results=1)) == 1
    with pytest.raises(shipyard.BadRequest) as bad:
        tracking.search_runs("metrics.auc > > 1")
    assert bad.value.details["position"] == 14
    table = tracking.compare(ids[:2])
    assert table["params"] == {"auc": ["0.7", "0.9"]} and table["metrics"] == {"auc": [0.7, 0.9]}


def test_attach_to_a_running_run_and_not_to_a_finished_one(
    tracking: shipyard.Tracking, server: RunningServer, tenant: Tenant
) -> None:
    with server.client(tenant.keys["scientist"]) as other_process:
        r = other_process.post(f"/api/v1/projects/{tenant.team}/{tenant.project}/runs", json={})
    run_id = r.json()["id"]
    tracking.log_batch(run_id, [("x", 1.0, 0)])
    with tracking.start_run(run_id=run_id, tags={"resumed": "yes"}) as again:
        again.log_metric("x", 2.0, step=1)
    got = tracking.get_run(run_id)
    assert got["status"] == "FINISHED" and got["tags"] == {"resumed": "yes"}
    assert tracking.metric_history(run_id, "x")["values"] == [1.0, 2.0]
    with pytest.raises(shipyard.Conflict, match="FINISHED"):
        tracking.start_run(run_id=run_id)
    assert tracking.update_run(run_id, name="renamed")["name"] == "renamed"


def test_module_level_functions_use_the_active_run(
    server: RunningServer, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPYARD_URL", server.url)
    monkeypatch.setenv("SHIPYARD_API_KEY", tenant.keys["scientist"])
    monkeypatch.setenv("SHIPYARD_PROJECT", f"{tenant.team}/{tenant.project}")
    with shipyard.start_run("fluent") as parent:
        shipyard.log_param("depth", 3)
        with shipyard.start_run("fluent") as child:
            assert shipyard.active_run() is child
            shipyard.log_metric("loss", 0.5, step=1)
            shipyard.log_metrics({"acc": 0.9})
            shipyard.set_tag("fold", 1)
            shipyard.log_params({"fold": 1})
        assert shipyard.active_run() is parent
    assert shipyard.active_run() is None
    info = parent.tracking.get_run(child.id)
    assert info["parent_run_id"] == parent.id
    assert info["params"] == {"fold": "1"} and info["tags"] == {"fold": "1"}
    assert set(info["metrics"]) == {"loss", "acc"}
    assert parent.tracking.get_run(parent.id)["params"] == {"depth": "3"}
