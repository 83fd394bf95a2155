"""Safe updates (blue/green, canary): the new fleet starts beside the old one, traffic moves
over in steps, and a new fleet that fails its health checks or errs while baking sends all
traffic back to the old one by itself — with real replicas on loopback.

The error-rate rollback needs traffic counters in ``endpoint_traffic``, which gateways add.
This test invokes the new fleet's replica for real and adds what it answered to the counters
exactly as a gateway does (through ``gateway_repository.add_traffic``), so it does not
depend on a gateway process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant, make_tenant, role_clients, unique
from tests.support.endpoints import (
    FAILS_TO_LOAD,
    PREDICT_RAISES,
    TrafficWriter,
    approve,
    deploy,
    endpoint,
    endpoint_id,
    gone,
    hosting_server,
    in_service,
    invoke_replica,
    light_model,
    register,
    replicas,
    routes_of,
    scripted_model,
    wait_endpoint,
)
from tests.support.jobs import base
from tests.support.servers import RunningServer


@pytest.fixture(scope="module")
def server(db_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with hosting_server(db_backend, tmp_path_factory.mktemp("deploy") / "home") as running:
        yield running


@pytest.fixture(scope="module")
def tenant(server: RunningServer) -> Tenant:
    return make_tenant(server, ("lead", "scientist"))


@pytest.fixture(scope="module")
def c(server: RunningServer, tenant: Tenant) -> Iterator[dict[str, httpx.Client]]:
    with role_clients(server, tenant) as made:
        yield made


@pytest.fixture(scope="module")
def versions(c: dict[str, httpx.Client], tenant: Tenant) -> dict[str, int]:
    found = {
        "v1": register(c["scientist"], tenant, "blue", light_model(1)),
        "v2": register(c["scientist"], tenant, "blue", light_model(2)),
        "unloadable": register(
            c["scientist"], tenant, "blue", scripted_model(FAILS_TO_LOAD), flavor="custom"
        ),
        "erring": register(
            c["scientist"], tenant, "blue", scripted_model(PREDICT_RAISES), flavor="custom"
        ),
    }
    for version in found.values():
        approve(c["lead"], tenant, "blue", version)
    return found


def _live(c: dict[str, httpx.Client], tenant: Tenant, version: int, count: int = 2) -> str:
    """A dev endpoint serving ``blue`` ``version`` on ``count`` replicas."""
    name = unique("bg-")
    source = {"group": "blue", "version": version}
    r = deploy(c["scientist"], tenant, name, f"{name}-m", count=count, source=source)
    assert r.status_code == 201, r.text
    in_service(c["scientist"], tenant, name)
    return name


def _new_config(c: dict[str, httpx.Client], tenant: Tenant, version: int, count: int = 1) -> str:
    model, config = unique("bgm-"), unique("bgc-")
    body = {"name": model, "group": "blue", "version": version}
    assert c["scientist"].post(f"{base(tenant)}/hosted-models", json=body).status_code == 201
    variant = {"model": model, "initial_instance_count": count}
    body = {"name": config, "variants": [variant]}
    assert c["scientist"].post(f"{base(tenant)}/endpoint-configs", json=body).status_code == 201
    return config


def _update(
    c: dict[str, httpx.Client], tenant: Tenant, name: str, config: str, **policy: Any
) -> dict[str, Any]:
    body = {"config_name": config, "deployment": policy}
    r = c["scientist"].patch(f"{base(tenant)}/endpoints/{name}", json=body)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "Updating"
    return dict(r.json())


def _events(c: dict[str, httpx.Client], tenant: Tenant, name: str) -> list[str]:
    events = c["scientist"].get(f"{base(tenant)}/events", params={"limit": 1000}).json()
    return [e["type"] for e in events if e["subject"] == f"endpoint:{name}"]


def _phase(e: dict[str, Any]) -> str | None:
    return (e["progress"].get("deploy") or {}).get("phase")


def test_blue_green_moves_traffic_and_stops_the_old_fleet(
    server: RunningServer, c: dict[str, httpx.Client], tenant: Tenant, versions: dict[str, int]
) -> None:
    name = _live(c, tenant, versions["v1"])
    old = replicas(endpoint(c["scientist"], tenant, name))
    config = _new_config(c, tenant, versions["v2"], count=2)
    _update(c, tenant, name, config, strategy="blue_green", bake_s=2)

    baking = wait_endpoint(
        c["scientist"], tenant, name, lambda e: _phase(e) == "shifting", what="shifting"
    )
    assert baking["status"] == "Updating"
    routes = routes_of(server, name)
    assert routes is not None
    assert [(v["name"], v["weight"]) for v in routes["variants"]] == [("AllTraffic", 1.0)]
    assert {v["model_version"] for v in routes["variants"]} == {f"v{versions['v2']}"}

    _wait_config(c, tenant, name, config)
    done = in_service(c["scientist"], tenant, name, timeout=30)
    assert done["current_config"] == config and done["reason"] == ""
    new = replicas(done)
    assert len(new) == 2 and not {r["id"] for r in new} & {r["id"] for r in old}
    for replica in new:
        assert invoke_replica(replica).json()["model_version"] == f"v{versions['v2']}"
    deadline = time.monotonic() + 10
    while not all(gone(r["pid"]) for r in old):
        assert time.monotonic() < deadline, "the old fleet was not stopped"
        time.sleep(0.1)
    assert _events(c, tenant, name)[-1] == "endpoint.updated"


def _wait_config(c: dict[str, httpx.Client], tenant: Tenant, name: str, config: str) -> None:
    wait_endpoint(
        c["scientist"],
        tenant,
        name,
        lambda e: e["current_config"] == config or e["status"] == "Failed",
        timeout=30,
        what=f"serving {config}",
    )


def test_canary_publishes_both_fleets_with_the_canary_share(
    server: RunningServer, c: dict[str, httpx.Client], tenant: Tenant, versions: dict[str, int]
) -> None:
    name = _live(c, tenant, versions["v1"], count=1)
    old_config = endpoint(c["scientist"], tenant, name)["current_config"]
    config = _new_config(c, tenant, versions["v2"])
    _update(c, tenant, name, config, strategy="canary", canary_percent=25, bake_s=2)
    wait_endpoint(
        c["scientist"],
        tenant,
        name,
        lambda e: _phase(e) == "shifting" and e["progress"]["deploy"]["share"] == 0.25,
        what="on the canary step",
    )
    routes = routes_of(server, name)
    assert routes is not None
    shares = {v["name"]: v["weight"] for v in routes["variants"]}
    assert shares == {f"AllTraffic@{old_config}"[:63]: 0.75, "AllTraffic": 0.25}
    _wait_config(c, tenant, name, config)
    done = in_service(c["scientist"], tenant, name)
    assert done["current_config"] == config


def test_a_new_fleet_that_cannot_load_is_rolled_back(
    c: dict[str, httpx.Client], tenant: Tenant, versions: dict[str, int]
) -> None:
    name = _live(c, tenant, versions["v1"])
    before = endpoint(c["scientist"], tenant, name)
    config = _new_config(c, tenant, versions["unloadable"])
    _update(c, tenant, name, config, strategy="blue_green", bake_s=1)
    seen: set[str] = set()

    def back(e: dict[str, Any]) -> bool:
        seen.add(e["status"])
        return e["status"] == "InService" and e["config_name"] == before["config_name"]

    after = wait_endpoint(c["scientist"], tenant, name, back, timeout=60, what="rolled back")
    assert after["current_config"] == before["current_config"]
    assert "rolled back" in after["reason"] and "cannot be loaded" in after["reason"]
    assert "failed to start" in after["reason"]
    # the old fleet served throughout: the very same processes
    assert [r["pid"] for r in replicas(after)] == [r["pid"] for r in replicas(before)]
    assert {"Updating"} <= seen
    assert _events(c, tenant, name)[-1] == "endpoint.rolled_back"


def test_errors_while_baking_send_traffic_back(
    server: RunningServer, c: dict[str, httpx.Client], tenant: Tenant, versions: dict[str, int]
) -> None:
    name = _live(c, tenant, versions["v1"])
    before = endpoint(c["scientist"], tenant, name)
    config = _new_config(c, tenant, versions["erring"])
    _update(c, tenant, name, config, strategy="blue_green", bake_s=30, max_error_rate=0.1)
    baking = wait_endpoint(
        c["scientist"], tenant, name, lambda e: _phase(e) == "shifting", what="baking"
    )
    [new] = replicas(baking, config)
    answers = [invoke_replica(new).status_code for _ in range(10)]
    assert all(code >= 400 for code in answers), answers
    traffic = TrafficWriter(server)
    try:
        fours = sum(400 <= code < 500 for code in answers)
        traffic.add(endpoint_id(server, name), "AllTraffic", 10, fours, 10 - fours)
    finally:
        traffic.close()

    started = time.monotonic()
    after = wait_endpoint(
        c["scientist"],
        tenant,
        name,
        lambda e: e["status"] == "InService" and e["config_name"] == before["config_name"],
        timeout=20,
        what="rolled back",
    )
    took = time.monotonic() - started
    assert "error rate 100.0%" in after["reason"] and "max_error_rate=0.1" in after["reason"]
    assert [r["pid"] for r in replicas(after)] == [r["pid"] for r in replicas(before)]
    assert gone(new["pid"])
    routes = routes_of(server, name)
    assert routes is not None
    assert {v["model_version"] for v in routes["variants"]} == {f"v{versions['v1']}"}
    print(f"\nrolled back {took:.1f}s after the errors were counted")
