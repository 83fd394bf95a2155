"""Helpers for hosting tests: small real models, registering and approving them, a server
tuned for quick fleets, waiting on endpoints, and traffic counters written as a gateway does.
"""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from tests.conftest import Tenant, unique
from tests.support.jobs import base, upload
from tests.support.servers import RunningServer, fresh_postgres_database, start_server

FEATURES = 3
# Quick fleets: health every 0.3 s, two failed pings replace a replica, two failed starts
# fail a fleet, short drains and leases, a 1 s promotion bake, a 4 s rate window.
FAST_HOSTING = {
    "SHIPYARD_HOSTING_HEALTH_INTERVAL_S": "0.3",
    "SHIPYARD_HOSTING_PING_FAILURES": "2",
    "SHIPYARD_HOSTING_START_ATTEMPTS": "2",
    "SHIPYARD_HOSTING_STOP_GRACE_S": "2",
    "SHIPYARD_HOSTING_LEASE_S": "3",
    "SHIPYARD_HOSTING_METRICS_WINDOW_S": "4",
    "SHIPYARD_PROMOTION_BAKE_S": "1",
    "SHIPYARD_PROMOTION_LATENCY_BUDGET_MS": "2000",
}
EXAMPLE = {"features": [0.5, -1.0, 2.0]}


def _pack(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def sklearn_model(seed: int = 0) -> bytes:
    """A small LogisticRegression as ``model.tar.gz`` (``model.joblib``)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, FEATURES))
    y = (x[:, 0] + seed * 0.1 > 0).astype(int)
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression().fit(x, y), buffer)
    return _pack({"model.joblib": buffer.getvalue()})


# A logistic regression in NumPy behind an ``inference.py``: what a replica of a ``light_model``
# imports is NumPy alone, where unpickling a scikit-learn model imports scikit-learn, SciPy and
# pandas (~1.5 s of CPU per replica). Hosting tests that are about fleets, not about a flavor,
# use it; the flavors have their own tests (test_modelserver.py, the transform tests).
LIGHT_INFERENCE = """
import json
import os

import numpy as np


def model_fn(model_dir):
    with open(os.path.join(model_dir, "weights.json")) as f:
        weights = json.load(f)
    return np.asarray(weights["coef"]), float(weights["intercept"])


def predict_fn(data, model):
    coef, intercept = model
    rows = np.atleast_2d(np.asarray(data, dtype=np.float64))
    if rows.shape[1] != len(coef):
        raise ValueError(f"expected {len(coef)} features, got {rows.shape[1]}")
    return (rows @ coef + intercept > 0).astype(int)
"""


def light_model(seed: int = 0) -> bytes:
    """A ``custom``-flavor model answering 0 or 1 for rows of ``FEATURES`` numbers."""
    rng = np.random.default_rng(seed)
    weights = {"coef": rng.normal(size=FEATURES).tolist(), "intercept": seed * 0.1}
    return _pack(
        {
            "weights.json": json.dumps(weights).encode(),
            "inference.py": LIGHT_INFERENCE.encode(),
        }
    )


def scripted_model(script: str) -> bytes:
    """A ``custom`` model: an ``inference.py`` (and a sklearn model it may load)."""
    with tarfile.open(fileobj=io.BytesIO(sklearn_model()), mode="r:gz") as inner:
        member = inner.extractfile("model.joblib")
        assert member is not None
        weights = member.read()
    return _pack({"model.joblib": weights, "inference.py": textwrap.dedent(script).encode()})


FAILS_TO_LOAD = """
    def model_fn(model_dir):
        raise RuntimeError("this model cannot be loaded")
"""
PREDICT_RAISES = """
    def model_fn(model_dir):
        return "loaded"

    def predict_fn(data, model):
        raise ValueError("this version is broken")
"""


def register(
    client: httpx.Client,
    tenant: Tenant,
    group: str,
    model: bytes,
    *,
    flavor: str | None = None,
    example: Any = EXAMPLE,
    signature: dict[str, Any] | None = None,
) -> int:
    path = f"models/{group}-{unique('m')}.tar.gz"
    upload(client, tenant, path, model)
    client.post(f"{base(tenant)}/models", json={"name": group})  # 201, or 409: exists
    flavor = flavor or _flavor_of(model)
    body: dict[str, Any] = {"artifact_path": path, "flavor": flavor, "example": example}
    if signature is not None:
        body["signature"] = signature
    r = client.post(f"{base(tenant)}/models/{group}/versions", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["version"])


def _flavor_of(model: bytes) -> str:
    """``custom`` for a packed model with an ``inference.py``, else ``sklearn``."""
    with tarfile.open(fileobj=io.BytesIO(model), mode="r:gz") as tar:
        return "custom" if "inference.py" in tar.getnames() else "sklearn"


def approve(lead: httpx.Client, tenant: Tenant, group: str, version: int) -> None:
    url = f"{base(tenant)}/models/{group}/versions/{version}/approve"
    r = lead.post(url, json={"comment": "reviewed"})
    assert r.status_code == 200, r.text


def deploy(
    client: httpx.Client,
    tenant: Tenant,
    name: str,
    model: str,
    *,
    count: int = 1,
    environment: str = "dev",
    config: str | None = None,
    variant: dict[str, Any] | None = None,
    autoscaling: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
) -> httpx.Response:
    """A hosted model (``source``: registry or artifact), a config, an endpoint."""
    if source is not None:
        r = client.post(f"{base(tenant)}/hosted-models", json={"name": model, **source})
        assert r.status_code == 201, r.text
    config = config or unique(f"{name}-cfg-")
    spec = {"model": model, "initial_instance_count": count, **(variant or {})}
    r = client.post(f"{base(tenant)}/endpoint-configs", json={"name": config, "variants": [spec]})
    assert r.status_code == 201, r.text
    body = {"name": name, "config_name": config, "environment": environment}
    if autoscaling:
        body["autoscaling"] = autoscaling
    return client.post(f"{base(tenant)}/endpoints", json=body)


def endpoint(client: httpx.Client, tenant: Tenant, name: str) -> dict[str, Any]:
    r = client.get(f"{base(tenant)}/endpoints/{name}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_endpoint(
    client: httpx.Client,
    tenant: Tenant,
    name: str,
    until: Any,
    *,
    timeout: float = 60.0,
    what: str = "",
) -> dict[str, Any]:
    """Poll until ``until(endpoint)`` is true."""
    deadline = time.monotonic() + timeout
    current: dict[str, Any] = {}
    while time.monotonic() < deadline:
        current = endpoint(client, tenant, name)
        if until(current):
            return current
        time.sleep(0.1)
    raise AssertionError(f"endpoint {name}: not {what or until} after {timeout}s: {current}")


def in_service(client: httpx.Client, tenant: Tenant, name: str, **kw: Any) -> dict[str, Any]:
    def ready(e: dict[str, Any]) -> bool:
        if e["status"] == "Failed":
            raise AssertionError(f"endpoint {name} Failed: {e['reason']}")
        return e["status"] == "InService" and all(
            v["current_instance_count"] == v["desired_instance_count"] for v in e["variants"]
        )

    return wait_endpoint(client, tenant, name, ready, what="InService", **kw)


def replicas(e: dict[str, Any], config: str | None = None) -> list[dict[str, Any]]:
    return [
        r
        for v in e["variants"]
        for r in v["replicas"]
        if config is None or v["config_name"] == config
    ]


def invoke_replica(replica: dict[str, Any], payload: Any = EXAMPLE) -> httpx.Response:
    url = f"http://{replica['host']}:{replica['port']}/invocations"
    return httpx.post(url, json=payload, timeout=10)


def wait_promotion(
    client: httpx.Client, tenant: Tenant, run: dict[str, Any], timeout: float = 90.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while run["status"] == "Running":
        assert time.monotonic() < deadline, f"promotion still running: {run}"
        time.sleep(0.2)
        r = client.get(f"{base(tenant)}/promotions/{run['id']}")
        assert r.status_code == 200, r.text
        run = r.json()
    return run


def routes_of(server: RunningServer, name: str) -> dict[str, Any] | None:
    """The routing table the controller published for ``name`` (what gateways serve)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(server.db_url)
    try:
        with engine.connect() as conn:
            value = conn.execute(
                text("SELECT routes FROM endpoints WHERE name = :n"), {"n": name}
            ).scalar_one_or_none()
    finally:
        engine.dispose()
    if isinstance(value, str):
        import json

        return dict(json.loads(value))
    return value


def tamper(server: RunningServer, path: str) -> None:
    """Play an insider: point version 1 of the artifact ``path`` at the bytes of its newest
    version (validly stored and encrypted), fixing up the row's checksum and size too."""
    from sqlalchemy import create_engine, text

    engine = create_engine(server.db_url)
    try:
        with engine.begin() as conn:
            rows = conn.execute(
                text(
                    "SELECT version, blob_key, sha256, size FROM artifact_versions "
                    "WHERE path = :path ORDER BY version"
                ),
                {"path": path},
            ).all()
            other = rows[-1]
            conn.execute(
                text(
                    "UPDATE artifact_versions SET blob_key = :k, sha256 = :s, size = :n "
                    "WHERE path = :path AND version = 1"
                ),
                {"k": other.blob_key, "s": other.sha256, "n": other.size, "path": path},
            )
    finally:
        engine.dispose()


def routed_replica_ids(server: RunningServer, name: str) -> set[str]:
    routes = routes_of(server, name) or {}
    return {r["id"] for v in routes.get("variants", []) for r in v["replicas"]}


class TrafficWriter:
    """Adds per-variant counters to ``endpoint_traffic`` exactly as a gateway does (through
    the gateway's own repository), for tests that drive the controller without a gateway."""

    def __init__(self, server: RunningServer, gateway_id: str = "test-gateway") -> None:
        from shipyard.db.engine import Database

        self.db = Database(server.db_url)
        self.gateway_id = gateway_id

    def add(
        self,
        endpoint_id: str,
        variant: str,
        invocations: int,
        errors_4xx: int = 0,
        errors_5xx: int = 0,
    ) -> None:
        from shipyard.hosting.gateway_repository import TrafficDelta, gateway_repository

        delta = TrafficDelta(endpoint_id, variant, invocations, errors_4xx, errors_5xx, 0.0)
        with self.db.transaction() as s:
            gateway_repository.add_traffic(s, self.gateway_id, [delta], datetime.now(UTC))

    def want(self, endpoint_id: str, variant: str) -> None:
        from shipyard.hosting.gateway_repository import gateway_repository

        with self.db.transaction() as s:
            gateway_repository.mark_wanted(
                s, self.gateway_id, endpoint_id, variant, datetime.now(UTC)
            )

    def wanted_at(self, endpoint_id: str, variant: str) -> Any:
        from sqlalchemy import text

        with self.db.read() as s:
            return s.execute(
                text(
                    "SELECT wanted_at FROM endpoint_traffic WHERE endpoint_id = :e "
                    "AND variant = :v AND gateway_id = :g"
                ),
                {"e": endpoint_id, "v": variant, "g": self.gateway_id},
            ).scalar_one_or_none()

    def close(self) -> None:
        self.db.dispose()


def endpoint_id(server: RunningServer, name: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(server.db_url)
    try:
        with engine.connect() as conn:
            return str(
                conn.execute(
                    text("SELECT id FROM endpoints WHERE name = :n"), {"n": name}
                ).scalar_one()
            )
    finally:
        engine.dispose()


@contextmanager
def hosting_server(
    db_backend: str, home: Path, extra_env: dict[str, str] | None = None
) -> Iterator[RunningServer]:
    """A server of its own (its fleets and settings are the test module's), on a fresh DB."""
    env = {**FAST_HOSTING, **(extra_env or {})}
    if db_backend == "sqlite":
        server = start_server(
            home,
            db_url=f"sqlite:///{home.parent / (home.name + '.db')}",
            extra_env=env,
            gateway=True,
        )
        try:
            yield server
        finally:
            server.stop()
        return
    with fresh_postgres_database() as url:
        server = start_server(home, db_url=url, extra_env=env, gateway=True)
        try:
            yield server
        finally:
            server.stop()


def replica_processes(home: Path) -> list[int]:
    """Pids of the model servers running in ``home``'s endpoint directories."""
    import psutil

    root = str(home / "endpoints")
    found = []
    for proc in psutil.process_iter(["pid", "cwd", "cmdline"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if "shipyard.hosting.modelserver" in cmdline and (proc.info["cwd"] or "").startswith(
                root
            ):
                found.append(int(proc.info["pid"]))
        except (psutil.Error, OSError):
            continue
    return sorted(found)


def gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
