"""Serving one sklearn model three ways, in one run: MLflow, a Shipyard replica, the gateway.

Usage: .venv/bin/python bench/serving.py [--requests 2000] [--wrk-seconds 10] [--capture 100]

The same 10-feature LogisticRegression (``predict_proba``, one row per request) served by

(a) ``mlflow models serve --env-manager local`` (the model logged with ``mlflow.sklearn`` to
    a local file store first; body ``{"inputs": [[...]]}``),
(b) a Shipyard replica directly (``python -m shipyard.hosting.modelserver``), and
(c) the Shipyard gateway of a real ``shipyard up`` in front of that same replica, with auth
    (a project-scoped invoker key as a bearer token), per-key throttling (a limit far above
    the load), metrics and data capture (``--capture`` percent sampled) all on;
(d) unless ``--no-batched``: the gateway (same settings) in front of a replica started here
    with micro-batching (``--batch-max 16``), measured directly too (b'). It shows where
    the ceiling of (c) comes from: on two cores the gateway and the replica share one core
    while wrk has the other, so (c) can never beat the replica's own rate.

The endpoint of (c) is created through the control-plane API when it can (hosted model from
an artifact, endpoint config, endpoint; its replica is then the one measured in (b)); when
that API is missing or fails, the endpoint row and its routes are written straight into the
DB, pointing at a replica started here, and the output says so.

Measured: sequential p50/p99 over ``--requests`` POSTs on one keep-alive raw socket (the
client's own cost stays out), then req/s and p50/p99 with ``wrk`` at 16 and 64
connections, wrk pinned to CPU 1 (``taskset -c 1``), the best of ``--repeat`` runs.
Placement: replicas on CPU 0 (the control plane's local backend pins its first replica
there; the bench pins the ones it starts the same way), the gateway on the last CPU (its
default, ``SHIPYARD_GATEWAY_CPUS=auto``), MLflow unpinned.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).parent))
from _harness import console, free_port, ratio_table, running

ROW = [25, 2, 0.0, 1, 0, 0, 0, 0, 0, 0]
SHIPYARD_BODY = json.dumps({"features": ROW}).encode()
MLFLOW_BODY = json.dumps({"inputs": [ROW]}).encode()
ENDPOINT = "churn-bench"
WARMUP = 200


@dataclass
class Target:
    """One way of serving: where to POST, what, with which extra headers."""

    label: str
    url: str
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Figures:
    seq_p50: float
    seq_p99: float
    wrk: dict[int, tuple[float, float, float]]  # connections -> (req/s, p50 ms, p99 ms)


# --- the model ------------------------------------------------------------------------------


def train() -> LogisticRegression:
    rng = np.random.default_rng(7)
    features = rng.normal(size=(1000, 10))
    labels = (features[:, 0] + features[:, 1] > 0).astype(int)
    return LogisticRegression().fit(features, labels)


def log_to_mlflow(model: LogisticRegression, workdir: Path) -> tuple[str, str]:
    """Log with mlflow.sklearn to a local file store; (tracking URI, model URI)."""
    import mlflow
    import mlflow.sklearn

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 frowns on it; the issue asks for it
    tracking = (workdir / "mlruns").as_uri()
    mlflow.set_tracking_uri(tracking)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", pyfunc_predict_fn="predict_proba")
    return tracking, info.model_uri


# --- servers --------------------------------------------------------------------------------


@contextmanager
def mlflow_serving(tracking: str, model_uri: str, workdir: Path) -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri]
    cmd += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    url = f"http://127.0.0.1:{port}"
    env = {
        "MLFLOW_TRACKING_URI": tracking,
        "MLFLOW_ALLOW_FILE_STORE": "true",
        # it runs `uvicorn` by name: the venv's bin must be on PATH
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    with running(cmd, f"{url}/ping", workdir / "mlflow-serve.log", env):
        yield url


@contextmanager
def replica(model_dir: Path, workdir: Path, *extra: str) -> Iterator[str]:
    cmd = [sys.executable, "-m", "shipyard.hosting.modelserver", "--model-dir", str(model_dir)]
    cmd += ["--flavor", "sklearn", "--port", "0", "--model-version", "v23", "--predict", "proba"]
    cmd += extra
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", "0", *cmd]  # where the control plane puts its first replica
    with (workdir / f"replica{len(extra)}.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("READY "):
            raise RuntimeError(f"the replica did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@dataclass
class Platform:
    url: str
    gateway_url: str
    admin_key: str
    home: Path


@contextmanager
def shipyard_up(workdir: Path) -> Iterator[Platform]:
    home, port = workdir / "shipyard-home", free_port()
    cmd = [sys.executable, "-m", "shipyard.cli.main", "up", "--home", str(home)]
    cmd += ["--port", str(port)]
    env = {
        "SHIPYARD_LOG_LEVEL": "warning",
        # Throttling stays on (every request takes a token) with a limit the load never hits.
        "SHIPYARD_GATEWAY_RATE_PER_KEY": "1000000",
        "SHIPYARD_GATEWAY_BURST_PER_KEY": "1000000",
    }
    url = f"http://127.0.0.1:{port}"
    with running(cmd, f"{url}/readyz", workdir / "shipyard.log", env):
        gateway_url = f"http://127.0.0.1:{port + 1}"
        _wait_gateway(gateway_url)
        creds = json.loads((home / "admin-credentials.json").read_text())
        yield Platform(url, gateway_url, creds["api_key"], home)


def _wait_gateway(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the gateway at {url} did not come up")


# --- the endpoint ---------------------------------------------------------------------------


def tenant(platform: Platform) -> tuple[str, str, str]:
    """Team, project and an invoker key scoped to the project (its bearer token)."""
    with httpx.Client(base_url=platform.url, headers=_auth(platform.admin_key)) as admin:
        admin.post("/api/v1/teams", json={"name": "bench"}).raise_for_status()
        admin.post("/api/v1/teams/bench/projects", json={"name": "churn"}).raise_for_status()
        key = admin.post("/api/v1/keys", json={"project": "bench/churn", "role": "invoker"})
        key.raise_for_status()
    return "bench", "churn", str(key.json()["api_key"])


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def endpoint_by_api(platform: Platform, model_dir: Path, capture: float) -> str:
    """Create the endpoint through the control plane; the URL of its replica."""
    base = "/api/v1/projects/bench/churn"
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(model_dir / "model.joblib", arcname="model.joblib")
    headers = _auth(platform.admin_key)
    with httpx.Client(base_url=platform.url, headers=headers, timeout=60) as admin:
        steps = [
            ("PUT", f"{base}/artifacts/models/churn.tar.gz", {"content": archive.getvalue()}),
            (
                "POST",
                f"{base}/hosted-models",
                {
                    "json": {
                        "name": "churn",
                        "artifact_path": "models/churn.tar.gz",
                        "flavor": "sklearn",
                        "predict": "proba",
                    }
                },
            ),
            (
                "POST",
                f"{base}/endpoint-configs",
                {
                    "json": {
                        "name": "churn-config",
                        "variants": [{"name": "AllTraffic", "model": "churn"}],
                        "data_capture": {"enabled": capture > 0, "sampling_percent": capture},
                    }
                },
            ),
            (
                "POST",
                f"{base}/endpoints",
                {"json": {"name": ENDPOINT, "config_name": "churn-config"}},
            ),
        ]
        for method, path, kwargs in steps:
            admin.request(method, path, **kwargs).raise_for_status()  # type: ignore[arg-type]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            view = admin.get(f"{base}/endpoints/{ENDPOINT}").raise_for_status().json()
            if view["status"] == "InService":
                replica_row = view["variants"][0]["replicas"][0]
                time.sleep(1)  # the gateway polls routes every 250 ms
                return f"http://{replica_row['host']}:{replica_row['port']}"
            if view["status"] == "Failed":
                raise RuntimeError(f"the endpoint failed: {view['reason']}")
            time.sleep(0.5)
    raise RuntimeError("the endpoint was not InService within 120 s")


def endpoint_by_sql(
    platform: Platform, replica_url: str, capture: float, name: str = ENDPOINT
) -> None:
    """Write the endpoint row and its routes, as the endpoint controller would publish them."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from shipyard.hosting.models import Endpoint
    from shipyard.hosting.routes import CaptureRoute, EndpointRoute, ReplicaRoute, VariantRoute
    from shipyard.security.models import Project, Team

    host, port = replica_url.removeprefix("http://").split(":")
    engine = create_engine(f"sqlite:///{platform.home / 'shipyard.db'}")
    with Session(engine) as s, s.begin():
        team = s.scalars(select(Team).where(Team.name == "bench")).one()
        project = s.scalars(select(Project).where(Project.team_id == team.id)).one()
        replicas = (ReplicaRoute("bench-replica", host, int(port)),)
        route = EndpointRoute(
            name=name,
            team_id=team.id,
            project_id=project.id,
            environment="dev",
            status="InService",
            variants=(VariantRoute("AllTraffic", 1.0, "churn", "v23", replicas),),
            capture=CaptureRoute(
                enabled=capture > 0, sampling_percent=capture, prefix=f"capture/{name}"
            ),
        )
        s.add(
            Endpoint(
                project_id=project.id,
                team_id=team.id,
                name=name,
                environment="dev",
                config_name=f"{name}-config",
                status="InService",
                routes=route.to_json(),
                lease_owner="bench",  # keeps the endpoint controller's hands off this row
                lease_until=datetime.now(UTC) + timedelta(days=1),
            )
        )
    engine.dispose()
    time.sleep(1)


# --- clients --------------------------------------------------------------------------------


def raw_sequential(target: Target, n: int) -> list[float]:
    """POSTs one after another on one keep-alive socket, each answer read by its length."""
    host, port = target.url.removeprefix("http://").split(":")
    extra = "".join(f"{k}: {v}\r\n" for k, v in target.headers.items())
    request = (
        f"POST {target.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\n{extra}Content-Length: {len(target.body)}\r\n\r\n"
    ).encode() + target.body
    samples = []
    with socket.create_connection((host, int(port))) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(n + WARMUP):
            started = time.perf_counter()
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            found = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
            assert found is not None, head
            while len(rest) < int(found[1]):
                rest += sock.recv(65536)
            elapsed = time.perf_counter() - started
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"{target.label}: {head.decode()} {rest[:300]!r}")
            if i >= WARMUP:
                samples.append(elapsed)
    return samples


def wrk(
    target: Target, connections: int, seconds: int, workdir: Path
) -> tuple[float, float, float]:
    """(req/s, p50 ms, p99 ms) with wrk pinned to CPU 1."""
    script = workdir / f"post-{abs(hash(target.label))}.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = '{target.body.decode()}'"]
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in target.headers.items()]
    script.write_text("\n".join(lines) + "\n")
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]
    cmd.append(target.url + target.path)
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", "1", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors against {target.label}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    return rps, _wrk_percentile(out, "50%"), _wrk_percentile(out, "99%")


def _wrk_percentile(out: str, which: str) -> float:
    found = re.search(rf"^\s+{which}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    assert found is not None, out
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[found[2]]
    return float(found[1]) * scale


def measure(target: Target, args: argparse.Namespace, workdir: Path) -> Figures:
    samples = np.array(raw_sequential(target, args.requests)) * 1e3
    # Best of --repeat runs (highest req/s): the box is shared, and a neighbour's burst
    # lands on one run, not on every one.
    loads = {
        c: max(wrk(target, c, args.wrk_seconds, workdir) for _ in range(args.repeat))
        for c in (16, 64)
    }
    figures = Figures(float(np.percentile(samples, 50)), float(np.percentile(samples, 99)), loads)
    console.print(f"{target.label}: {figures}")
    return figures


def capture_counts(platform: Platform) -> str:
    """Capture files in the project, and records written and dropped per the gateway."""
    with httpx.Client(base_url=platform.url, headers=_auth(platform.admin_key)) as admin:
        listed = admin.get("/api/v1/projects/bench/churn/artifacts").json()
    files = sum(1 for item in listed if item["path"].endswith(".jsonl"))
    metrics = httpx.get(f"{platform.gateway_url}/metrics").text
    totals = {"written": 0.0, "dropped": 0.0}
    for line in metrics.splitlines():
        for kind in totals:
            if line.startswith(f"shipyard_gateway_capture_{kind}_total{{"):
                totals[kind] += float(line.rsplit(" ", 1)[1])
    return (
        f"{files} files, {totals['written']:,.0f} records written, {totals['dropped']:,.0f} dropped"
    )


# --- the run --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--capture", type=float, default=100.0, help="sampling percent")
    parser.add_argument("--repeat", type=int, default=2, help="wrk runs per setting (best)")
    parser.add_argument("--sql", action="store_true", help="skip the control-plane API")
    parser.add_argument(
        "--no-batched",
        dest="batched",
        action="store_false",
        help="skip (d): the gateway in front of a micro-batching replica (--batch-max 16)",
    )
    args = parser.parse_args()
    args.load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    results: dict[str, Figures] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model = train()
        model_dir = workdir / "model"
        model_dir.mkdir()
        joblib.dump(model, model_dir / "model.joblib")
        tracking, model_uri = log_to_mlflow(model, workdir)
        with mlflow_serving(tracking, model_uri, workdir) as url:
            target = Target("(a) mlflow models serve", url, "/invocations", MLFLOW_BODY, {})
            results["mlflow"] = measure(target, args, workdir)
        with shipyard_up(workdir) as platform:
            _, _, token = tenant(platform)
            how, replica_url = "control-plane API", None
            if not args.sql:
                try:
                    replica_url = endpoint_by_api(platform, model_dir, args.capture)
                except (httpx.HTTPError, RuntimeError, KeyError, IndexError) as exc:
                    how = f"SQL (the control-plane API failed: {exc})"
            else:
                how = "SQL (--sql)"
            with contextmanager_or(replica_url, model_dir, workdir) as url:
                if replica_url is None:
                    endpoint_by_sql(platform, url, args.capture)
                console.print(f"endpoint created through {how}; replica at {url}")
                pair = measure_pair(platform, url, ENDPOINT, token, args, workdir)
                results["replica"], results["gateway"] = pair
            if args.batched:
                with replica(model_dir, workdir, "--batch-max", "16") as url:
                    endpoint_by_sql(platform, url, args.capture, name=f"{ENDPOINT}-batched")
                    pair = measure_pair(platform, url, f"{ENDPOINT}-batched", token, args, workdir)
                    results["replica-batched"], results["gateway-batched"] = pair
            time.sleep(6)  # one capture interval: the last batch is written
            files = capture_counts(platform)
    report(results, args, how, files)


def measure_pair(
    platform: Platform,
    replica_url: str,
    endpoint: str,
    token: str,
    args: argparse.Namespace,
    workdir: Path,
) -> tuple[Figures, Figures]:
    """The replica directly, then the same replica through the gateway."""
    label = endpoint.removeprefix(ENDPOINT) or " (default options)"
    direct = Target(f"replica{label}", replica_url, "/invocations", SHIPYARD_BODY, {})
    path = f"/endpoints/{endpoint}/invocations"
    headers = {"Authorization": f"Bearer {token}"}
    proxied = Target(f"gateway{label}", platform.gateway_url, path, SHIPYARD_BODY, headers)
    return measure(direct, args, workdir), measure(proxied, args, workdir)


@contextmanager
def contextmanager_or(url: str | None, model_dir: Path, workdir: Path) -> Iterator[str]:
    """The control plane's replica when there is one, else one started here."""
    if url is not None:
        yield url
        return
    with replica(model_dir, workdir) as started:
        yield started


def report(results: dict[str, Figures], args: argparse.Namespace, how: str, files: str) -> None:
    rows: list[tuple[str, str, str]] = []
    labels = {
        "mlflow": "(a) mlflow models serve",
        "replica": "(b) replica, direct",
        "gateway": "(c) gateway (auth+metrics+capture)",
        "replica-batched": "(b') replica --batch-max 16, direct",
        "gateway-batched": "(d) gateway → (b')",
    }
    for key, label in labels.items():
        if key not in results:
            continue
        f = results[key]
        rows.append((f"{label}, sequential", f"p50 {f.seq_p50:.3f} ms", f"p99 {f.seq_p99:.3f} ms"))
        for c, (rps, p50, p99) in f.wrk.items():
            rows.append(
                (f"{label}, wrk -c{c}", f"{rps:,.0f} req/s", f"p50 {p50:.2f}, p99 {p99:.2f} ms")
            )
    gw, rep, ml = results["gateway"], results["replica"], results["mlflow"]
    rows += [
        ("gateway overhead, sequential p50", f"{gw.seq_p50 - rep.seq_p50:.3f} ms", "target ≤ 0.3"),
        ("gateway sequential p50", f"{gw.seq_p50:.3f} ms", "target ≤ 0.6"),
        ("gateway / mlflow req/s, -c16", f"{gw.wrk[16][0] / ml.wrk[16][0]:.1f}x", "target ≥ 4x"),
        ("gateway p99, -c16", f"{gw.wrk[16][2]:.2f} ms", "target ≤ 20"),
        ("gateway / mlflow req/s, -c64", f"{gw.wrk[64][0] / ml.wrk[64][0]:.1f}x", ""),
        ("replica / mlflow req/s, -c16", f"{rep.wrk[16][0] / ml.wrk[16][0]:.1f}x", "the ceiling"),
    ]
    if "gateway-batched" in results:
        batched = results["gateway-batched"]
        ratio = batched.wrk[16][0] / ml.wrk[16][0]
        rows.append(("(d) / mlflow req/s, -c16", f"{ratio:.1f}x", "batching replica"))
    console.print(
        f"CPUs: {os.cpu_count()}, load average before the run {args.load}; wrk on CPU 1 "
        f"(taskset), best of {args.repeat}; replicas on CPU 0, the gateway on the last CPU, "
        f"MLflow unpinned; capture {args.capture:g}% "
        f"sampled; endpoint made through {how}; capture: {files}"
    )
    ratio_table("one 10-feature LogisticRegression (predict_proba), one row a request", rows)


if __name__ == "__main__":
    main()
