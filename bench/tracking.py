"""Experiment tracking: the stock MLflow client against `mlflow server` and against Shipyard.

Usage: .venv/bin/python bench/tracking.py [--skip-sdk] [--quick]

One run starts `mlflow server` (SQLite, one worker, artifacts proxied) and `shipyard up`
(SQLite), and drives both with the same MLflow-client workload: single `log_metric` latency,
`log_batch` throughput (100,000 points in batches of 1,000), 500 runs x 10 params x
10 metrics, `search_runs` with a metric filter and an order (exactly 235 runs match), and
`get_metric_history` of one 100,000-point metric. It then times what the MLflow client costs
by itself, against a server that answers every call from memory (the floor any server can
reach through that client), and runs the same workload through Shipyard's own SDK.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _harness import console, free_port, mlflow_server, ratio_table, shipyard_server

RUNS, PARAMS, METRICS = 500, 10, 10
MATCHING = 235  # of RUNS, the runs whose metric `acc` passes the filter
ORDER = ["metrics.acc DESC"]
BATCH, POINTS, SINGLE_CALLS = 1_000, 100_000, 500


def search_filter(runs: int, metric: str = "acc") -> tuple[str, int]:
    """Run i logs ``acc = i``: the filter keeps the top 235 of 500 (pro rata when --quick)."""
    matching = runs * MATCHING // RUNS
    return f"metrics.{metric} >= {runs - matching}", matching


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# --- the MLflow-client workload ----------------------------------------------------------------


def mlflow_workload(url: str, token: str | None, quick: bool) -> dict[str, float]:
    """The same calls against either server; returns seconds, points/s and milliseconds."""
    import mlflow
    from mlflow import MlflowClient

    if token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = token
    else:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # else a get_run per end
    mlflow.set_tracking_uri(url)
    client = MlflowClient()
    experiment = client.create_experiment(f"bench-{time.time_ns()}")
    out = {"log_metric_p50_ms": single_metric_p50(client, experiment)}
    run_id, out["log_batch_points_s"] = batch_throughput(client, experiment, quick)
    runs = RUNS // 10 if quick else RUNS
    out["runs_s"] = create_runs(client, experiment, runs)
    out["search_ms"] = 1000 * search(client, experiment, runs)
    out["history_s"] = history(client, run_id, POINTS // 10 if quick else POINTS)
    return out


def single_metric_p50(client: Any, experiment: str) -> float:
    run_id = client.create_run(experiment).info.run_id
    for step in range(20):  # warm the connection and the server's caches
        client.log_metric(run_id, "warm", 0.0, step=step)
    latencies = []
    for step in range(SINGLE_CALLS):
        started = time.perf_counter()
        client.log_metric(run_id, "latency", float(step), step=step)
        latencies.append(time.perf_counter() - started)
    return 1000 * statistics.median(latencies)


def batch_throughput(client: Any, experiment: str, quick: bool) -> tuple[str, float]:
    from mlflow.entities import Metric

    run_id = client.create_run(experiment).info.run_id
    points = POINTS // 10 if quick else POINTS
    stamp = int(time.time() * 1000)
    started = time.perf_counter()
    for first in range(0, points, BATCH):
        metrics = [Metric("loss", 1.0 / (1 + i), stamp + i, i) for i in range(first, first + BATCH)]
        client.log_batch(run_id, metrics=metrics)
    return run_id, points / (time.perf_counter() - started)


def create_runs(client: Any, experiment: str, count: int) -> float:
    """Runs as training scripts make them: create, one batch of params and metrics, end."""
    from mlflow.entities import Metric, Param

    started = time.perf_counter()
    stamp = int(time.time() * 1000)
    for i in range(count):
        run_id = client.create_run(experiment, run_name=f"trial-{i}").info.run_id
        params = [Param(f"p{k}", str(i * k)) for k in range(PARAMS)]
        metrics = [Metric("acc", float(i), stamp, 0)]
        metrics += [Metric(f"m{k}", (i * 7 + k) % 13 / 13, stamp, 0) for k in range(METRICS - 1)]
        client.log_batch(run_id, metrics=metrics, params=params)
        client.set_terminated(run_id)
    return time.perf_counter() - started


def search(client: Any, experiment: str, runs: int) -> float:
    text, expected = search_filter(runs)

    def once() -> None:
        found = client.search_runs([experiment], text, order_by=ORDER, max_results=1000)
        assert len(found) == expected, len(found)
        values = [r.data.metrics["acc"] for r in found]
        assert values == sorted(values, reverse=True)

    once()
    return median_time(once, 5)


def history(client: Any, run_id: str, points: int) -> float:
    def once() -> None:
        assert len(client.get_metric_history(run_id, "loss")) == points

    once()
    return median_time(once, 3)


# --- what the MLflow client costs by itself ----------------------------------------------------


def _canned_bodies() -> dict[str, bytes]:
    runs = []
    for i in range(MATCHING):
        run_id = f"{i:032x}"
        metrics = [{"key": f"m{k}", "value": 0.5, "timestamp": 1, "step": 0} for k in range(10)]
        runs.append(
            {
                "info": {"run_id": run_id, "experiment_id": "1", "status": "FINISHED"},
                "data": {
                    "metrics": metrics,
                    "params": [{"key": f"p{k}", "value": str(k)} for k in range(PARAMS)],
                    "tags": [{"key": "mlflow.runName", "value": f"trial-{i}"}],
                },
            }
        )
    pages = {}
    for page in range(POINTS // 25_000):
        first = page * 25_000
        metrics = [
            {"key": "loss", "value": 0.5, "timestamp": 1, "step": i}
            for i in range(first, first + 25_000)
        ]
        body: dict[str, Any] = {"metrics": metrics}
        if first + 25_000 < POINTS:
            body["next_page_token"] = str(page + 1)
        pages[f"history{page}"] = json.dumps(body).encode()
    return {"search": json.dumps({"runs": runs}).encode(), **pages}


def _canned_server(port: int) -> None:
    """Answers every MLflow call from memory, as fast as asyncio can: the client's floor."""
    bodies = _canned_bodies()
    status = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await answer_all(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def answer_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            path = head.split(b" ")[1]
            body = b"{}"
            if b"runs/search" in path:
                body = bodies["search"]
            elif b"get-history" in path:
                page = path.split(b"page_token=")[1][:1].decode() if b"page_token=" in path else 0
                body = bodies[f"history{page}"]
            writer.write(status % len(body) + body)
            await writer.drain()

    async def serve() -> None:
        server = await asyncio.start_server(answer, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def client_floor() -> dict[str, float]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    port = free_port()
    proc = multiprocessing.Process(target=_canned_server, args=(port,), daemon=True)
    proc.start()
    try:
        time.sleep(1.0)
        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        run_id = "0" * 32
        latencies = []
        for step in range(SINGLE_CALLS):
            started = time.perf_counter()
            client.log_metric(run_id, "latency", float(step), step=step)
            latencies.append(time.perf_counter() - started)
        metrics = [Metric("loss", 0.5, 1, i) for i in range(BATCH)]
        batch_s = median_time(lambda: client.log_batch(run_id, metrics=metrics), 20)
        text, _ = search_filter(RUNS)
        search_s = median_time(lambda: client.search_runs(["1"], text, order_by=ORDER), 5)
        history_s = median_time(lambda: client.get_metric_history(run_id, "loss"), 3)
    finally:
        proc.terminate()
    return {
        "log_metric_p50_ms": 1000 * statistics.median(latencies),
        "log_batch_points_s": BATCH / batch_s,
        "search_ms": 1000 * search_s,
        "history_s": history_s,
    }


# --- Shipyard's SDK ------------------------------------------------------------------------------


def sdk_workload(url: str, api_key: str, quick: bool) -> dict[str, float] | None:
    """The same workload through ``shipyard.Session(...).tracking(...)``; None if absent."""
    try:
        import shipyard

        session_type: Any = shipyard.Session
    except (ImportError, AttributeError):
        return None
    points = POINTS // 10 if quick else POINTS
    runs = RUNS // 10 if quick else RUNS
    with session_type(url, api_key) as session:
        if not hasattr(session, "tracking"):
            return None
        tracking = session.tracking("bench/track")
        out: dict[str, float] = {}
        run = tracking.start_run(experiment="sdk-bench")
        started = time.perf_counter()
        for step in range(points):
            run.log_metric("loss", 1.0 / (1 + step), step=step)
        run.flush()
        out["ingest_points_s"] = points / (time.perf_counter() - started)
        run.end()

        def history_once() -> None:
            assert len(tracking.metric_history(run.id, "loss")["steps"]) == points

        history_once()
        out["history_s"] = median_time(history_once, 3)
        out["runs_s"] = sdk_runs(tracking, runs)
        text, expected = search_filter(runs, "sdk_acc")  # the MLflow runs share the project

        def search_once() -> None:
            order = ["metrics.sdk_acc DESC"]
            found = tracking.search_runs(filter=text, order_by=order, max_results=1000)
            assert len(found) == expected, len(found)

        search_once()
        out["search_ms"] = 1000 * median_time(search_once, 5)
    return out


def sdk_runs(tracking: Any, count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        run = tracking.start_run(experiment="sdk-search")
        run.log_params({f"p{k}": str(i * k) for k in range(PARAMS)})
        metrics = {f"m{k}": (i * 7 + k) % 13 / 13 for k in range(METRICS - 1)}
        run.log_metrics({"sdk_acc": float(i), **metrics}, step=0)
        run.end()
    return time.perf_counter() - started


# --- servers and the report ----------------------------------------------------------------------


def project_key(url: str, admin_key: str) -> str:
    """A key scoped to the bench project, as an MLflow user would be given."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}) as admin:
        admin.post("/api/v1/teams", json={"name": "bench"}).raise_for_status()
        admin.post("/api/v1/teams/bench/projects", json={"name": "track"}).raise_for_status()
        created = admin.post("/api/v1/keys", json={"project": "bench/track", "role": "engineer"})
        created.raise_for_status()
        return str(created.json()["api_key"])


# key, label, unit, whether higher is better, the target
MEASURES = (
    ("log_metric_p50_ms", "log_metric p50", "ms", False, "≤ 2 ms"),
    ("log_batch_points_s", "log_batch", "points/s", True, "≥ 10x MLflow"),
    ("runs_s", f"{RUNS} runs x {PARAMS} params x {METRICS} metrics", "s", False, ""),
    ("search_ms", f"search_runs, {MATCHING} rows", "ms", False, "≥ 10x faster"),
    ("history_s", f"metric history, {POINTS:,} points", "s", False, "≥ 4x faster"),
)


def report(ours: dict[str, float], theirs: dict[str, float], floor: dict[str, float]) -> None:
    rows = []
    for key, label, unit, higher, target in MEASURES:
        ratio = ours[key] / theirs[key] if higher else theirs[key] / ours[key]
        floor_note = f"client alone: {floor[key]:,.2f}" if key in floor else ""
        rows.append(
            (
                label,
                f"Shipyard {ours[key]:,.2f} {unit} · MLflow {theirs[key]:,.2f} {unit}",
                f"{ratio:.1f}x {'(target ' + target + ')' if target else ''} {floor_note}",
            )
        )
    ratio_table("Stock MLflow client: Shipyard vs mlflow server (SQLite, one run)", rows)


def report_sdk(sdk: dict[str, float] | None, mlflow: dict[str, float]) -> None:
    if sdk is None:
        console.print("[yellow]SDK not available[/yellow]: shipyard.Session().tracking is missing")
        return
    rows = [
        ("ingest", f"{sdk['ingest_points_s']:,.0f} points/s", "target ≥ 100,000 points/s"),
        ("history, 100,000 points", f"{1000 * sdk['history_s']:,.0f} ms", "target < 100 ms"),
        (f"{RUNS} runs", f"{sdk['runs_s']:.2f} s", f"MLflow client: {mlflow['runs_s']:.2f} s"),
        (f"search_runs, {MATCHING} rows", f"{sdk['search_ms']:.1f} ms", ""),
    ]
    ratio_table("Shipyard SDK, same server", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-sdk", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a tenth of the data: a smoke run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP", "/tmp")) as tmp:
        workdir = Path(tmp)
        console.print("MLflow client vs mlflow server…")
        with mlflow_server(workdir) as url:
            theirs = mlflow_workload(url, None, args.quick)
        console.print("MLflow client vs Shipyard…")
        with shipyard_server(workdir) as server:
            key = project_key(server.url, server.api_key)
            ours = mlflow_workload(server.url, key, args.quick)
            sdk = None if args.skip_sdk else sdk_workload(server.url, key, args.quick)
        console.print("MLflow client alone (canned answers)…")
        floor = client_floor()
    report(ours, theirs, floor)
    report_sdk(sdk, theirs)
    print(json.dumps({"shipyard": ours, "mlflow": theirs, "client_floor": floor, "sdk": sdk}))


if __name__ == "__main__":
    main()
