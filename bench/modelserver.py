"""The model-server replica alone: latency and throughput of one sklearn model on loopback.

Usage: .venv/bin/python bench/modelserver.py [--requests 2000] [--wrk-seconds 10]

Starts ``python -m shipyard.hosting.modelserver`` with a 10-feature LogisticRegression
(``--predict proba``, as the churn walk-through serves it) and measures:

- the model's own in-process predict_proba on one row (the floor of any server),
- sequential ``GET /ping`` and ``POST /invocations`` over one httpx keep-alive connection
  (p50/p99 over ``--requests``), and the same invocations from a raw-socket client, which
  leaves out httpx's own ~0.2 ms and so shows the replica's share of a gateway hop,
- req/s at 16 connections with ``wrk`` (when installed), the replica pinned to CPU 0 and
  wrk to CPU 1, without and with micro-batching (``--batch-max 16``).

The gateway path's anchor comes with the gateway's own bench; this one is the replica's share.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).parent))
from _harness import console, ratio_table

ROW = [25, 2, 0.0, 1, 0, 0, 0, 0, 0, 0]
BODY = b'{"features": [25, 2, 0.0, 1, 0, 0, 0, 0, 0, 0]}'


def make_model(model_dir: Path) -> LogisticRegression:
    rng = np.random.default_rng(7)
    features = rng.normal(size=(1000, 10))
    labels = (features[:, 0] + features[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(features, labels)
    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, model_dir / "model.joblib")
    return model


@contextmanager
def replica(model_dir: Path, *extra: str) -> Iterator[str]:
    """The replica on a free port, pinned to CPU 0 when taskset exists; yields its URL."""
    cmd = [sys.executable, "-m", "shipyard.hosting.modelserver", "--model-dir", str(model_dir)]
    cmd += ["--flavor", "sklearn", "--port", "0", "--model-version", "v23", "--predict", "proba"]
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", "0", *cmd, *extra]
    else:
        cmd = [*cmd, *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("READY "):
            raise RuntimeError(f"the replica did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    values = np.array(samples_s) * 1e3
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def in_process(model: LogisticRegression, n: int) -> list[float]:
    row, samples = np.array([ROW], dtype=np.float64), []
    for _ in range(n):
        started = time.perf_counter()
        model.predict_proba(row)
        samples.append(time.perf_counter() - started)
    return samples


def sequential(url: str, n: int, ping: bool = False) -> list[float]:
    headers = {"content-type": "application/json"}
    samples = []
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(n + 200):  # the first 200 warm up
            started = time.perf_counter()
            if ping:
                response = client.get("/ping")
            else:
                response = client.post("/invocations", content=BODY, headers=headers)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, response.text
            if i >= 200:
                samples.append(elapsed)
    return samples


def raw_socket(url: str, n: int) -> list[float]:
    """Sequential invocations over one keep-alive socket, the response read by its length."""
    host, port = url.removeprefix("http://").split(":")
    request = (
        b"POST /invocations HTTP/1.1\r\nHost: replica\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    )
    samples = []
    with socket.create_connection((host, int(port))) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(n + 200):
            started = time.perf_counter()
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            found = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
            assert found is not None, head
            length = int(found[1])
            while len(rest) < length:
                rest += sock.recv(65536)
            elapsed = time.perf_counter() - started
            assert head.startswith(b"HTTP/1.1 200"), head
            if i >= 200:
                samples.append(elapsed)
    return samples


def wrk_rps(url: str, seconds: int, workdir: Path) -> float | None:
    if not shutil.which("wrk"):
        return None
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{BODY.decode()}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    cmd = ["wrk", "-t1", "-c16", f"-d{seconds}s", "-s", str(script), f"{url}/invocations"]
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", "1", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model = make_model(workdir / "model")
        p50, p99 = percentiles(in_process(model, args.requests))
        rows.append(("predict_proba, in process", f"p50 {p50:.3f} ms, p99 {p99:.3f} ms", "floor"))
        with replica(workdir / "model") as url:
            p50, p99 = percentiles(sequential(url, args.requests, ping=True))
            rows.append(("GET /ping, sequential", f"p50 {p50:.3f} ms, p99 {p99:.3f} ms", "HTTP"))
            p50, p99 = percentiles(sequential(url, args.requests))
            figures = f"p50 {p50:.3f} ms, p99 {p99:.3f} ms"
            note = f"{args.requests} requests, httpx keep-alive"
            rows.append(("POST /invocations, sequential", figures, note))
            p50, p99 = percentiles(raw_socket(url, args.requests))
            figures = f"p50 {p50:.3f} ms, p99 {p99:.3f} ms"
            rows.append(("POST /invocations, raw socket", figures, "the replica's share"))
            rps = wrk_rps(url, args.wrk_seconds, workdir)
            if rps is not None:
                rows.append(("POST /invocations, wrk -c16", f"{rps:,.0f} req/s", "no batching"))
        if shutil.which("wrk"):
            with replica(workdir / "model", "--batch-max", "16") as url:
                p50, p99 = percentiles(sequential(url, args.requests))
                rows.append(
                    ("… --batch-max 16, sequential", f"p50 {p50:.3f} ms, p99 {p99:.3f} ms", "")
                )
                rps = wrk_rps(url, args.wrk_seconds, workdir)
                rows.append(("… --batch-max 16, wrk -c16", f"{rps or 0:,.0f} req/s", "batched"))
    console.print(f"CPUs: {os.cpu_count()}; replica on CPU 0, wrk on CPU 1 (taskset)")
    ratio_table("model-server replica, 10-feature LogisticRegression (predict_proba)", rows)


if __name__ == "__main__":
    main()
