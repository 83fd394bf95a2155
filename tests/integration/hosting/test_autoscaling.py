"""Autoscaling and serverless endpoints, with real replicas.

The load is real requests through the real gateway (a child of ``shipyard up``), which
counts them per variant into ``endpoint_traffic`` for the autoscaler. Should the gateway not
answer (a build without one), the load is written to those counters exactly as a gateway
writes them (through ``gateway_repository``), and the test says which it used. A bounded
load (a fixed number of invocations per second, for a fixed time) must bring the replica
count up within 15 s, and back down after it stops. A serverless variant at zero starts a
replica when a gateway marks it *wanted* (as the gateway does when a request arrives for
it) and goes back to zero after ``idle_timeout_s``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant, make_tenant, unique
from tests.support.endpoints import (
    EXAMPLE,
    TrafficWriter,
    deploy,
    endpoint_id,
    hosting_server,
    in_service,
    invoke_replica,
    light_model,
    register,
    replicas,
    routes_of,
    wait_endpoint,
)
from tests.support.servers import RunningServer

REACT_S = 15.0


@pytest.fixture(scope="module")
def server(db_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with hosting_server(db_backend, tmp_path_factory.mktemp("scale") / "home") as running:
        yield running


@pytest.fixture(scope="module")
def tenant(server: RunningServer) -> Tenant:
    return make_tenant(server, ("scientist",))


@pytest.fixture(scope="module")
def scientist(server: RunningServer, tenant: Tenant) -> Iterator[httpx.Client]:
    with server.client(tenant.keys["scientist"]) as client:
        yield client


@pytest.fixture(scope="module")
def version(scientist: httpx.Client, tenant: Tenant) -> int:
    return register(scientist, tenant, "scaled", light_model())


class Load:
    """``per_second`` invocations a second until stopped: through the gateway when it
    answers, else counted into ``endpoint_traffic`` as a gateway counts them."""

    def __init__(
        self, server: RunningServer, key: str, name: str, ident: str, per_second: int
    ) -> None:
        self.server, self.name, self.ident, self.per_second = server, name, ident, per_second
        self.gateway = _gateway(server)
        self.http = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=10)
        self.writer = TrafficWriter(server)
        self.sent = self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def how(self) -> str:
        return "through the gateway" if self.gateway else "as gateway counters (no gateway)"

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def _run(self) -> None:
        interval = 1.0 / self.per_second
        url = f"{self.gateway}/endpoints/{self.name}/invocations"
        next_at = time.monotonic()
        while not self._stop.is_set():
            if self.gateway:
                self.sent += 1
                if self.http.post(url, json=EXAMPLE).status_code != 200:
                    self.failed += 1
                next_at += interval
            else:
                self.writer.add(self.ident, "AllTraffic", self.per_second // 2)
                next_at += 0.5
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.http.close()
        self.writer.close()


def _gateway(server: RunningServer) -> str | None:
    with server.client() as anon:
        url = str(anon.get("/api/v1/info").json()["gateway_url"])
    try:
        return url if httpx.get(f"{url}/ping", timeout=2).status_code == 200 else None
    except httpx.HTTPError:
        return None


def _counts(e: dict[str, Any]) -> tuple[int, int]:
    [variant] = e["variants"]
    return variant["current_instance_count"], variant["desired_instance_count"]


def test_load_scales_out_and_quiet_scales_back_in(
    server: RunningServer, scientist: httpx.Client, tenant: Tenant, version: int
) -> None:
    name = unique("busy-")
    policy = {
        "min_instance_count": 1,
        "max_instance_count": 3,
        "target_invocations_per_instance_per_minute": 120,  # 2 a second per replica
        "scale_out_cooldown_s": 1,
        "scale_in_cooldown_s": 3,
    }
    source = {"group": "scaled", "version": version}
    r = deploy(
        scientist,
        tenant,
        name,
        unique("busy-m-"),
        source=source,
        autoscaling={"AllTraffic": policy},
    )
    assert r.status_code == 201, r.text
    assert _counts(in_service(scientist, tenant, name)) == (1, 1)
    ident = endpoint_id(server, name)
    time.sleep(1.0)  # the gateway picks the new route up within its poll interval

    started = time.monotonic()
    key = tenant.keys["scientist"]
    # 600 a minute: five replicas' worth, capped at 3
    with Load(server, key, name, ident, per_second=10) as load:
        wait_endpoint(
            scientist,
            tenant,
            name,
            lambda e: _counts(e)[1] == 3,
            timeout=REACT_S,
            what="wanting 3 replicas",
        )
        decided = time.monotonic() - started
        scaled = wait_endpoint(
            scientist,
            tenant,
            name,
            lambda e: _counts(e) == (3, 3),
            timeout=REACT_S,
            what="serving on 3 replicas",
        )
        out = time.monotonic() - started
        for replica in replicas(scaled):
            assert invoke_replica(replica).status_code == 200
        routes = routes_of(server, name)
        assert routes is not None and len(routes["variants"][0]["replicas"]) == 3
    stopped = time.monotonic()
    wait_endpoint(
        scientist,
        tenant,
        name,
        lambda e: _counts(e) == (1, 1),
        timeout=REACT_S,
        what="back on 1 replica",
    )
    back = time.monotonic() - stopped
    assert out < REACT_S and back < REACT_S
    assert load.failed <= load.sent // 20, f"{load.failed} of {load.sent} requests failed"
    print(
        f"\nload {load.how}: scale-out decided {decided:.1f}s after the load began, 3 "
        f"replicas serving at {out:.1f}s; back to 1 replica {back:.1f}s after it stopped"
    )


def test_serverless_scales_to_zero_and_cold_starts_when_wanted(
    server: RunningServer, scientist: httpx.Client, tenant: Tenant, version: int
) -> None:
    name = unique("lazy-")
    variant = {
        "serverless": {"idle_timeout_s": 3, "max_concurrency": 4},
        "initial_instance_count": 0,
    }
    source = {"group": "scaled", "version": version}
    r = deploy(scientist, tenant, name, unique("lazy-m-"), source=source, variant=variant)
    assert r.status_code == 201, r.text
    idle = in_service(scientist, tenant, name)
    assert _counts(idle) == (0, 0)
    routes = routes_of(server, name)
    assert routes is not None
    [route] = routes["variants"]
    assert route["serverless"] and route["max_concurrency"] == 4 and route["replicas"] == []

    writer = TrafficWriter(server)
    try:
        ident = endpoint_id(server, name)
        started = time.monotonic()
        writer.want(ident, "AllTraffic")  # what the gateway does with a request for it
        warm = wait_endpoint(
            scientist,
            tenant,
            name,
            lambda e: _counts(e) == (1, 1),
            timeout=REACT_S,
            what="cold started",
        )
        cold_start = time.monotonic() - started
        [replica] = replicas(warm)
        assert invoke_replica(replica).status_code == 200
        routes = routes_of(server, name)
        assert routes is not None and len(routes["variants"][0]["replicas"]) == 1
        deadline = time.monotonic() + 5
        while writer.wanted_at(ident, "AllTraffic") is not None:
            assert time.monotonic() < deadline, "the controller did not clear wanted_at"
            time.sleep(0.1)

        # traffic keeps it warm past its idle timeout
        for _ in range(8):
            writer.add(ident, "AllTraffic", 1)
            time.sleep(0.5)
        assert _counts(in_service(scientist, tenant, name)) == (1, 1)
        quiet = time.monotonic()
        wait_endpoint(
            scientist,
            tenant,
            name,
            lambda e: _counts(e) == (0, 0),
            timeout=REACT_S,
            what="back to zero",
        )
        to_zero = time.monotonic() - quiet
    finally:
        writer.close()
    routes = routes_of(server, name)
    assert routes is not None and routes["variants"][0]["replicas"] == []
    print(f"\ncold start {cold_start:.1f}s; back to zero {to_zero:.1f}s after the last call")
