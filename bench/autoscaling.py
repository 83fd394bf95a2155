"""How fast a real platform's autoscaler reacts: a load step, scale-in, a serverless cold start.

Usage: .venv/bin/python bench/autoscaling.py [--windows 30,4] [--rate 10] [--target 120]
       [--max 3] [--scale-out-cooldown 1] [--scale-in-cooldown 5] [--idle-timeout 5]

For each value of ``--windows`` a fresh ``shipyard up`` (SQLite, in a temporary home, the
gateway on) is started with ``SHIPYARD_HOSTING_METRICS_WINDOW_S`` set to it: the sliding
window over which the autoscaler averages invocations per minute. 30 s is the product's
default; 4 s is what the integration tests use. Nothing else is changed: the gateway adds its
counters to the DB every 2 s, the endpoint driver ticks every 0.25 s, health every 1 s.

On each platform: a team and project, an invoker key for it (``POST /api/v1/keys``, role
``invoker``, a bearer token on the gateway), a 10-feature LogisticRegression uploaded as an
artifact and made a hosted model, then two endpoints through the control-plane API:

- ``scaled``: one variant, target tracking on invocations per instance per minute
  (``--target``, default 120 = 2 req/s per replica), min 1, max ``--max``, the cooldowns of
  ``--scale-out-cooldown`` / ``--scale-in-cooldown``. Once InService it stays idle for one
  metrics window + 2 s (a rate meter younger than its window averages over its own age, which
  would make the step look steeper than on an endpoint that has been up a while). Then one
  thread sends ``--rate`` requests a second (default 10 = 600 a minute: five replicas'
  worth, capped at max) to ``POST {gateway}/endpoints/scaled/invocations``, until every
  replica serves (at most ``--load-max-s``) and at least one window + 4 s (so the window
  is full of load when it stops). Measured from the first request: when
  ``desired_instance_count`` first rises (the decision), when the first new replica serves
  (``current == desired``), when it wants max and when max serve; after the last request:
  when desired first falls and when it is back at min with min serving. A poller reads
  ``GET .../endpoints/{name}`` every 0.1 s, so each time is late by up to ~0.1 s.
- ``lazy``: a serverless variant (initial count 0, ``idle_timeout_s`` = ``--idle-timeout``;
  the product's default is 300 s). One request through the gateway: the time to its answer
  is the cold start (the gateway marks the variant wanted, the controller starts a replica,
  the gateway routes to it once it is Ready); then five warm requests; then the time from
  the last answer until it is back at zero.

SageMaker cannot run here: its documented defaults are printed beside the figures, marked as
documented, not measured. Every child process and the temporary home go away on exit,
Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).parent))
from _harness import console, free_port, ratio_table

TEAM, PROJECT = "bench", "scale"
BASE = f"/api/v1/projects/{TEAM}/{PROJECT}"
BODY = {"features": [25, 2, 0.0, 1, 0, 0, 0, 0, 0, 0]}
REACT_TARGET_S = 15.0

# SageMaker (not run here): what AWS documents, printed as such.
SAGEMAKER_DOCUMENTED = [
    (
        "metric granularity",
        "1 minute",
        "target tracking on InvocationsPerInstance: CloudWatch metrics per minute",
    ),
    ("ScaleOutCooldown (default)", "300 s", "Application Auto Scaling, SageMaker variants"),
    ("ScaleInCooldown (default)", "300 s", "Application Auto Scaling, SageMaker variants"),
    ("scale-in", "after 15 consecutive minutes below target", "the alarm target tracking makes"),
    ("serverless cold start", "seconds", "documented as such, no fixed figure"),
    (
        "high-resolution metric (since 2024)",
        "sub-minute",
        "opt-in ConcurrentRequestsPerModelHighResolution; not the default",
    ),
]


# --- the platform -------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM should this process die without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Platform:
    url: str
    gateway_url: str
    admin_key: str
    log: Path


def _shipyard_cmd() -> list[str]:
    script = Path(sys.executable).parent / "shipyard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "shipyard.cli.main"]


@contextmanager
def shipyard_up(workdir: Path, window_s: float) -> Iterator[Platform]:
    """``shipyard up`` in its own session (Ctrl-C reaches only this script, which stops it in
    order); SIGTERM, then SIGKILL of its process group if it has not stopped in 40 s."""
    home, port = workdir / "home", free_port()
    env = {
        **os.environ,
        "SHIPYARD_GATEWAY_ENABLED": "true",
        "SHIPYARD_LOG_LEVEL": "warning",
        "SHIPYARD_HOSTING_METRICS_WINDOW_S": str(window_s),
    }
    log = workdir / "shipyard.log"
    cmd = [*_shipyard_cmd(), "up", "--home", str(home), "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ok(f"{url}/readyz", proc, log)
            gateway_url = str(httpx.get(f"{url}/api/v1/info").json()["gateway_url"])
            _wait_ok(f"{gateway_url}/ping", proc, log)
            creds = json.loads((home / "admin-credentials.json").read_text())
            yield Platform(url, gateway_url, str(creds["api_key"]), log)
        finally:
            _stop(proc)


def _wait_ok(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"shipyard up exited ({proc.returncode}):\n{_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(40)
    # replicas it started and did not stop (it was killed, or hung): its session's group
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


# --- the tenant, the model, the endpoints -------------------------------------------------------


def _client(platform: Platform, token: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=platform.url, headers=headers, timeout=60)


def setup(platform: Platform, workdir: Path) -> str:
    """Team, project, the model as an artifact and a hosted model; the invoker key."""
    rng = np.random.default_rng(7)
    features = rng.normal(size=(1000, 10))
    model = LogisticRegression().fit(features, (features[:, 0] + features[:, 1] > 0).astype(int))
    joblib.dump(model, workdir / "model.joblib")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(workdir / "model.joblib", arcname="model.joblib")
    with _client(platform, platform.admin_key) as admin:
        admin.post("/api/v1/teams", json={"name": TEAM}).raise_for_status()
        admin.post(f"/api/v1/teams/{TEAM}/projects", json={"name": PROJECT}).raise_for_status()
        key = admin.post(
            "/api/v1/keys",
            json={"name": "load", "project": f"{TEAM}/{PROJECT}", "role": "invoker"},
        ).raise_for_status()
        admin.put(
            f"{BASE}/artifacts/models/lr.tar.gz", content=archive.getvalue()
        ).raise_for_status()
        admin.post(
            f"{BASE}/hosted-models",
            json={"name": "lr", "artifact_path": "models/lr.tar.gz", "flavor": "sklearn"},
        ).raise_for_status()
    return str(key.json()["api_key"])


def create_endpoint(
    platform: Platform,
    name: str,
    variant: dict[str, Any],
    autoscaling: dict[str, Any] | None = None,
) -> None:
    with _client(platform, platform.admin_key) as admin:
        spec = {"name": "AllTraffic", "model": "lr", **variant}
        config = {"name": f"{name}-cfg", "variants": [spec]}
        admin.post(f"{BASE}/endpoint-configs", json=config).raise_for_status()
        body: dict[str, Any] = {"name": name, "config_name": f"{name}-cfg"}
        if autoscaling:
            body["autoscaling"] = {"AllTraffic": autoscaling}
        r = admin.post(f"{BASE}/endpoints", json=body)
        if r.status_code != 201:
            raise RuntimeError(f"creating {name}: {r.status_code} {r.text}")


# --- watching an endpoint -----------------------------------------------------------------------


@dataclass
class State:
    at: float  # monotonic, when the answer arrived
    status: str
    current: int
    desired: int


class Watcher:
    """Polls an endpoint every ``every`` s from a thread and keeps each change of state."""

    def __init__(self, platform: Platform, name: str, every: float = 0.1) -> None:
        self._http = _client(platform, platform.admin_key)
        self._url, self._every = f"{BASE}/endpoints/{name}", every
        self.history: list[State] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                view = self._http.get(self._url).raise_for_status().json()
                [variant] = view["variants"]
                state = State(
                    time.monotonic(),
                    view["status"],
                    variant["current_instance_count"],
                    variant["desired_instance_count"],
                )
                last = self.history[-1] if self.history else None
                if last is None or (last.status, last.current, last.desired) != (
                    state.status,
                    state.current,
                    state.desired,
                ):
                    with self._changed:
                        self.history.append(state)
                        self._changed.notify_all()
            self._stop.wait(self._every)

    def when(self, until: Callable[[State], bool], since: float, timeout: float) -> float | None:
        """The first time at or after ``since`` the endpoint was in a state ``until`` accepts
        (waiting up to ``timeout`` s from now for it); None if it did not get there."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for i, state in enumerate(self.history):
                    later = self.history[i + 1].at if i + 1 < len(self.history) else None
                    if (later is None or later >= since) and until(state):
                        return max(state.at, since)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(min(left, 0.5))

    def now(self) -> State | None:
        with self._changed:
            return self.history[-1] if self.history else None


# --- the load -----------------------------------------------------------------------------------


@dataclass
class Load:
    """``per_second`` invocations a second from one thread, on one keep-alive connection."""

    url: str
    key: str
    per_second: float
    started: float = 0.0
    stopped: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failed: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(headers=headers, timeout=60) as http:
            next_at = self.started
            while not self._stop.is_set():
                began = time.monotonic()
                try:
                    status = http.post(self.url, json=BODY).status_code
                except httpx.HTTPError:
                    status = 0
                self.latencies.append(time.monotonic() - began)
                if status != 200:
                    self.failed[status] = self.failed.get(status, 0) + 1
                next_at += 1.0 / self.per_second
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        self.stopped = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# --- the measurements ---------------------------------------------------------------------------


@dataclass
class Figures:
    window_s: float
    decided: float | None = None
    first_serving: float | None = None
    wants_max: float | None = None
    max_serving: float | None = None
    in_decided: float | None = None
    back_at_min: float | None = None
    sent: int = 0
    held: float = 0.0
    failed: dict[int, int] = field(default_factory=dict)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cold_start: float | None = None
    cold_decided: float | None = None
    cold_ready: float | None = None
    warm_p50_ms: float = 0.0
    to_zero: float | None = None


def _since(t: float | None, origin: float) -> float | None:
    return None if t is None else t - origin


def load_step(platform: Platform, key: str, args: argparse.Namespace, fig: Figures) -> None:
    policy = {
        "min_instance_count": 1,
        "max_instance_count": args.max,
        "target_invocations_per_instance_per_minute": args.target,
        "scale_out_cooldown_s": args.scale_out_cooldown,
        "scale_in_cooldown_s": args.scale_in_cooldown,
    }
    create_endpoint(platform, "scaled", {"initial_instance_count": 1}, policy)
    with Watcher(platform, "scaled") as watch:
        if watch.when(lambda s: s.status == "InService" and s.current == 1, 0.0, 120) is None:
            raise RuntimeError(f"scaled: not InService in 120 s ({watch.now()})")
        # Idle for a whole window first: the rate meter starts with the endpoint, and a meter
        # younger than its window averages over its own age (a step would look steeper).
        console.print(f"  idle for one metrics window ({args.window:g} s) + 2 s")
        time.sleep(args.window + 2.0)
        url = f"{platform.gateway_url}/endpoints/scaled/invocations"
        with Load(url, key, args.rate) as load:
            t0, top = load.started, args.max
            console.print(f"  load step: {args.rate:g} req/s through the gateway")
            deadline = t0 + float(args.load_max_s)

            def left() -> float:
                return deadline - time.monotonic()

            decided = watch.when(lambda s: s.desired > 1, t0, left())
            if decided is not None:
                fig.decided = decided - t0
                fig.first_serving = _since(
                    watch.when(lambda s: 1 < s.desired == s.current, decided, left()), t0
                )
                fig.wants_max = _since(watch.when(lambda s: s.desired == top, t0, left()), t0)
                fig.max_serving = _since(
                    watch.when(lambda s: s.desired == s.current == top, t0, left()), t0
                )
            # held until the window is full of load (a steady state), 2 s past the last event
            time.sleep(max(2.0, t0 + args.window + 4.0 - time.monotonic()))
        fig.sent, fig.failed = len(load.latencies), load.failed
        fig.held = load.stopped - load.started
        ms = np.array(load.latencies) * 1e3
        fig.p50_ms, fig.p99_ms = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
        quiet = load.stopped
        console.print("  load stopped; waiting for scale-in")
        limit = args.window + args.scale_in_cooldown * args.max + 60
        fig.in_decided = _since(
            watch.when(lambda s: s.desired < top, quiet, limit) if fig.wants_max else None,
            quiet,
        )
        fig.back_at_min = _since(
            watch.when(lambda s: s.desired == s.current == 1, quiet, limit), quiet
        )


def cold_start(platform: Platform, key: str, args: argparse.Namespace, fig: Figures) -> None:
    serverless = {"idle_timeout_s": args.idle_timeout, "max_concurrency": 4}
    create_endpoint(platform, "lazy", {"initial_instance_count": 0, "serverless": serverless})
    with Watcher(platform, "lazy") as watch:
        if watch.when(lambda s: s.status == "InService", 0.0, 120) is None:
            raise RuntimeError(f"lazy: not InService in 120 s ({watch.now()})")
        time.sleep(1.0)
        url = f"{platform.gateway_url}/endpoints/lazy/invocations"
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(headers=headers, timeout=90) as http:
            http.get(f"{platform.gateway_url}/ping")  # the connection is open before the clock
            console.print("  serverless: first request to a variant at zero")
            t0 = time.monotonic()
            r = http.post(url, json=BODY)
            answered = time.monotonic()
            if r.status_code != 200:
                raise RuntimeError(f"lazy: the first request got {r.status_code}: {r.text}")
            fig.cold_start = answered - t0
            fig.cold_decided = _since(watch.when(lambda s: s.desired >= 1, t0, 1), t0)
            fig.cold_ready = _since(watch.when(lambda s: s.current >= 1, t0, 1), t0)
            warm = []
            for _ in range(5):
                began = time.monotonic()
                http.post(url, json=BODY).raise_for_status()
                warm.append(time.monotonic() - began)
            last = time.monotonic()
        fig.warm_p50_ms = float(np.median(warm) * 1e3)
        console.print(f"  serverless: idle; idle_timeout_s {args.idle_timeout:g}")
        limit = args.idle_timeout + args.window + 60
        fig.to_zero = _since(watch.when(lambda s: s.desired == s.current == 0, last, limit), last)


# --- the report ---------------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f} s"


def report(fig: Figures, args: argparse.Namespace) -> None:
    failed = sum(fig.failed.values())
    codes = ", ".join(f"{n} x {code or 'error'}" for code, n in sorted(fig.failed.items()))
    wanted = args.rate * 60 / args.target
    met = fig.decided is not None and fig.decided < REACT_TARGET_S
    extra_cold = None if fig.to_zero is None else fig.to_zero - args.idle_timeout
    rows = [
        (
            "load step → desired rises",
            _s(fig.decided),
            f"target < {REACT_TARGET_S:g} s: {'met' if met else 'NOT met'}",
        ),
        ("load step → first new replica serves", _s(fig.first_serving), "current == desired"),
        (f"load step → desired = max ({args.max})", _s(fig.wants_max), ""),
        (f"load step → {args.max} replicas serve", _s(fig.max_serving), ""),
        ("load stops → desired falls", _s(fig.in_decided), ""),
        ("load stops → back at 1, serving", _s(fig.back_at_min), ""),
        (
            "the load",
            f"{fig.sent} requests in {fig.held:.0f} s",
            f"{args.rate:g} req/s ≈ {wanted:.1f} replicas' worth; "
            f"p50 {fig.p50_ms:.1f} ms, p99 {fig.p99_ms:.1f} ms; "
            f"non-200: {failed}{f' ({codes})' if codes else ''}",
        ),
        ("serverless: first request → answer", _s(fig.cold_start), "the cold start"),
        (
            "… of which: desired 1 / replica Ready",
            f"{_s(fig.cold_decided)} / {_s(fig.cold_ready)}",
            "as the poller saw them (±0.1 s)",
        ),
        ("serverless: warm request, p50", f"{fig.warm_p50_ms:.1f} ms", "5 requests"),
        (
            "serverless: last answer → back at 0",
            _s(fig.to_zero),
            f"idle_timeout_s {args.idle_timeout:g} + {_s(extra_cold)}",
        ),
    ]
    title = (
        f"Shipyard, measured: metrics window {fig.window_s:g} s, target "
        f"{args.target:g}/min per replica, cooldowns out {args.scale_out_cooldown:g} s / "
        f"in {args.scale_in_cooldown:g} s"
    )
    ratio_table(title, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", default="30,4", help="metrics windows, s (a platform each)")
    parser.add_argument("--rate", type=float, default=10.0, help="load, requests a second")
    parser.add_argument("--target", type=float, default=120.0, help="invocations/min/replica")
    parser.add_argument("--max", type=int, default=3, help="max_instance_count")
    parser.add_argument("--scale-out-cooldown", type=float, default=1.0)
    parser.add_argument("--scale-in-cooldown", type=float, default=5.0)
    parser.add_argument("--idle-timeout", type=float, default=5.0, help="serverless, s")
    parser.add_argument("--load-max-s", type=float, default=90.0, help="the longest load step")
    args = parser.parse_args()

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # SIGTERM: clean up as for Ctrl-C

    signal.signal(signal.SIGTERM, interrupted)
    console.print(
        f"CPUs: {os.cpu_count()}; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    for window in [float(w) for w in args.windows.split(",")]:
        args.window = window
        fig = Figures(window)
        with tempfile.TemporaryDirectory(prefix="bench-autoscaling-") as tmp:
            workdir = Path(tmp)
            console.print(f"[bold]metrics window {window:g} s[/]: starting shipyard up")
            with shipyard_up(workdir, window) as platform:
                try:
                    key = setup(platform, workdir)
                    load_step(platform, key, args, fig)
                    cold_start(platform, key, args, fig)
                except Exception:
                    console.print(f"[red]shipyard log (tail):[/]\n{_tail(platform.log)}")
                    raise
        report(fig, args)
    ratio_table(
        "SageMaker (anchor, not run here): DOCUMENTED defaults, not measured",
        SAGEMAKER_DOCUMENTED,
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    console.print(
        f"load average after: {load}. The SageMaker rows are AWS's documented defaults: "
        "the anchor cannot run on this machine."
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        console.print("interrupted: child processes stopped, temporary directories removed")
        sys.exit(130)
