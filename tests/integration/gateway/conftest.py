"""The gateway suite's world: one real ``shipyard up`` (its gateway child on port + 1), real
replica processes, and endpoints published the way the endpoint controller publishes them.

The endpoint rows are written straight into the server's DB (``publish``): an ``Endpoint``
with its ``routes`` JSON (hosting/routes.py), exactly what the gateway polls. Each row's
lease is held by ``gateway-tests`` for a day, so the server's own endpoint controller leaves
these hand-made rows alone. Everything is session-scoped: one server, five replicas.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from tests.support.servers import RunningServer, free_port, start_server

from shipyard.hosting.models import Endpoint, EndpointTraffic
from shipyard.hosting.routes import CaptureRoute, EndpointRoute, ReplicaRoute, VariantRoute
from shipyard.security.models import Project, Team

ROW = [25, 2, 0.0, 1, 0, 0, 0, 0, 0, 0]
BODY = json.dumps({"features": ROW}).encode()
LEASE_OWNER = "gateway-tests"
ROUTES_SETTLE_S = 0.8  # the gateway polls every 250 ms

# Echoes custom attributes back, and fails on request, so both paths can be seen end to end.
# A logistic regression in NumPy (weights.json), not an unpickled scikit-learn model: each of
# the five replicas would import scikit-learn, SciPy and pandas for it (~1.5 s of CPU).
SCRIPT = """
    import json
    import os

    import numpy as np


    class Refused(Exception):
        status_code = 500


    class Logistic:
        def __init__(self, coef, intercept):
            self.coef, self.intercept = np.asarray(coef), intercept

        def predict_proba(self, data):
            rows = np.atleast_2d(np.asarray(data, dtype=np.float64))
            if rows.shape[1] != len(self.coef):  # worded as scikit-learn words it
                raise ValueError(
                    f"X has {rows.shape[1]} features, but the model is expecting "
                    f"{len(self.coef)} features as input."
                )
            positive = 1 / (1 + np.exp(-(rows @ self.coef + self.intercept)))
            return np.column_stack([1 - positive, positive])


    def model_fn(model_dir):
        with open(os.path.join(model_dir, "weights.json")) as f:
            weights = json.load(f)
        return Logistic(weights["coef"], weights["intercept"])


    def predict_fn(data, model, context):
        attributes = context.custom_attributes or ""
        if attributes:
            context.response_custom_attributes = "echo=" + attributes
        if "crash" in attributes:
            raise Refused("the model crashed on purpose")
        return model.predict_proba(data)[:, 1]
"""

GATEWAY_ENV = {
    "SHIPYARD_GATEWAY_AUTH_CACHE_TTL_S": "1",
    "SHIPYARD_GATEWAY_CAPTURE_INTERVAL_S": "0.3",
    "SHIPYARD_GATEWAY_COLD_START_WAIT_S": "8",
}


def _die_with_parent() -> None:
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# --- replicas -------------------------------------------------------------------------------


@dataclass
class Replica:
    proc: subprocess.Popen[bytes]
    port: int
    version: str

    def route(self, replica_id: str | None = None) -> ReplicaRoute:
        return ReplicaRoute(replica_id or f"{self.version}-{self.port}", "127.0.0.1", self.port)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _launch(model_dir: Path, version: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "shipyard.hosting.modelserver", "--model-dir", str(model_dir)]
    cmd += ["--flavor", "custom", "--port", "0", "--model-version", version]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent
    )


def _ready_port(proc: subprocess.Popen[bytes], timeout: float = 90) -> int:
    assert proc.stdout is not None
    selector, buffer = selectors.DefaultSelector(), b""
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not selector.select(remaining):
            raise TimeoutError("the replica did not print READY")
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            raise RuntimeError(f"the replica exited with {proc.wait()}")
        buffer += chunk
    line = buffer.decode().split("\n", 1)[0]
    assert line.startswith("READY "), line
    return int(line.split()[1])


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-feature logistic model with an inference.py (custom attributes, crashes)."""
    path = tmp_path_factory.mktemp("gateway-model") / "model"
    path.mkdir()
    coef = [1.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # class 1 when x0 > x3
    (path / "weights.json").write_text(json.dumps({"coef": coef, "intercept": 0.0}))
    (path / "inference.py").write_text(textwrap.dedent(SCRIPT))
    return path


@pytest.fixture(scope="session")
def replicas(model_dir: Path) -> Iterator[dict[str, Replica]]:
    """Five replicas, started together: a1 and a2 (v1), b (v2), shadow (v9), doomed (v1)."""
    versions = {"a1": "v1", "a2": "v1", "b": "v2", "shadow": "v9", "doomed": "v1"}
    procs = {name: _launch(model_dir, version) for name, version in versions.items()}
    started: dict[str, Replica] = {}
    try:
        for name, proc in procs.items():
            started[name] = Replica(proc, _ready_port(proc), versions[name])
        yield started
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
            if proc.poll() is None:
                proc.kill()


# --- the server, its gateway, tenants ------------------------------------------------------


@dataclass
class World:
    server: RunningServer
    gateway_url: str
    engine: Any
    team: str
    project: str
    other_project: str
    keys: dict[str, dict[str, str]]  # name -> {api_key, access_key_id, secret_access_key}

    def client(self, key: str = "invoker", *, retries: int = 0, **kwargs: Any) -> Any:
        """boto3's sagemaker-runtime client, signing with the key (SigV4)."""
        creds = self.keys[key]
        config = Config(retries={"total_max_attempts": retries + 1, "mode": "standard"})
        return boto3.client(
            "sagemaker-runtime",
            endpoint_url=kwargs.pop("endpoint_url", self.gateway_url),
            region_name="us-east-1",
            aws_access_key_id=creds["access_key_id"],
            aws_secret_access_key=kwargs.pop("secret", creds["secret_access_key"]),
            config=config,
        )

    def http(self, key: str | None = "invoker", base_url: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[key]['api_key']}"} if key else {}
        return httpx.Client(base_url=base_url or self.gateway_url, headers=headers, timeout=30)

    def ids(self, project: str | None = None) -> tuple[str, str]:
        with Session(self.engine) as s:
            team = s.scalars(select(Team).where(Team.name == self.team)).one()
            name = project or self.project
            found = s.scalars(
                select(Project).where(Project.team_id == team.id, Project.name == name)
            ).one()
            return team.id, found.id

    def publish(
        self,
        name: str,
        variants: list[VariantRoute],
        *,
        shadow: VariantRoute | None = None,
        capture: CaptureRoute | None = None,
        project: str | None = None,
        status: str = "InService",
        settle: bool = True,
    ) -> str:
        """Write the endpoint row with its routes, as the endpoint controller would; its id.
        With ``settle``, once the gateway's poller has surely read it."""
        team_id, project_id = self.ids(project)
        route = EndpointRoute(
            name=name,
            team_id=team_id,
            project_id=project_id,
            environment="dev",
            status=status,
            variants=tuple(variants),
            shadow=shadow,
            capture=capture or CaptureRoute(),
        )
        with Session(self.engine) as s, s.begin():
            row = s.scalars(select(Endpoint).where(Endpoint.name == name)).one_or_none()
            if row is None:
                row = Endpoint(
                    project_id=project_id,
                    team_id=team_id,
                    name=name,
                    environment="dev",
                    config_name=f"{name}-config",
                    lease_owner=LEASE_OWNER,
                    lease_until=datetime.now(UTC) + timedelta(days=1),
                )
                s.add(row)
            row.status = status
            row.routes = route.to_json()
            s.flush()
            endpoint_id = row.id
        if settle:
            time.sleep(ROUTES_SETTLE_S)
        return endpoint_id

    def traffic(self, endpoint_id: str) -> dict[str, EndpointTraffic]:
        """The endpoint's traffic rows by variant, summed over gateways."""
        with Session(self.engine) as s:
            rows = s.scalars(
                select(EndpointTraffic).where(EndpointTraffic.endpoint_id == endpoint_id)
            )
            return {row.variant: row for row in rows}

    def metrics(self, base_url: str | None = None) -> str:
        return httpx.get(f"{base_url or self.gateway_url}/metrics", timeout=10).text


def variant(
    name: str, replicas: list[Replica], *, weight: float = 1.0, version: str | None = None
) -> VariantRoute:
    return VariantRoute(
        name=name,
        weight=weight,
        model="m",
        model_version=version or (replicas[0].version if replicas else "v0"),
        replicas=tuple(r.route() for r in replicas),
    )


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sample of ``name`` whose labels include ``labels`` (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for_gateway(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"the gateway at {url} did not come up")


def _keys(server: RunningServer, team: str, project: str, other: str) -> dict[str, dict[str, str]]:
    specs = {
        "invoker": {"project": f"{team}/{project}", "role": "invoker"},
        "team_invoker": {"team": team, "role": "invoker"},
        "viewer": {"project": f"{team}/{project}", "role": "viewer"},
        "other_project": {"project": f"{team}/{other}", "role": "invoker"},
        "throttled": {"project": f"{team}/{project}", "role": "invoker"},
    }
    keys = {}
    with server.admin() as admin:
        for name, spec in specs.items():
            r = admin.post("/api/v1/keys", json={**spec, "name": name})
            assert r.status_code == 201, r.text
            keys[name] = r.json()
    return keys


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("gateway-home")
    server = start_server(home, extra_env=GATEWAY_ENV, gateway=True)
    try:
        gateway_url = f"http://127.0.0.1:{server.port + 1}"
        wait_for_gateway(gateway_url)
        team, project, other = "gwteam", "serving", "elsewhere"
        with server.admin() as admin:
            assert admin.post("/api/v1/teams", json={"name": team}).status_code == 201
            for name in (project, other, "outage"):
                r = admin.post(f"/api/v1/teams/{team}/projects", json={"name": name})
                assert r.status_code == 201, r.text
        engine = create_engine(f"sqlite:///{home / 'shipyard.db'}")
        yield World(
            server, gateway_url, engine, team, project, other, _keys(server, team, project, other)
        )
        engine.dispose()
    finally:
        server.stop()


# --- a gateway of its own -------------------------------------------------------------------


@dataclass
class StandaloneGateway:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def stop(self, timeout: float = 40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def standalone_gateway(world: World, env: dict[str, str]) -> Iterator[StandaloneGateway]:
    """``shipyard gateway`` on the world's home, with settings of its own."""
    port = free_port()
    home = world.server.home
    log_path = home.parent / f"standalone-gateway-{port}.log"
    cmd = [sys.executable, "-m", "shipyard.cli.main", "gateway", "--home", str(home)]
    cmd += ["--port", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            env={**world.server.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    gateway = StandaloneGateway(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_for_gateway(gateway.url)
        yield gateway
    finally:
        gateway.stop()
