"""Endpoints as users see them: created from registry versions, served by real replica
processes on loopback, guarded by the environment rules, healed when a replica dies."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant, make_tenant, role_clients, unique
from tests.support.endpoints import (
    FAILS_TO_LOAD,
    approve,
    deploy,
    hosting_server,
    in_service,
    invoke_replica,
    light_model,
    register,
    replicas,
    routed_replica_ids,
    routes_of,
    scripted_model,
    sklearn_model,
    tamper,
    wait_endpoint,
    wait_promotion,
)
from tests.support.jobs import base, upload
from tests.support.servers import RunningServer


@pytest.fixture(scope="module")
def server(db_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with hosting_server(db_backend, tmp_path_factory.mktemp("hosting") / "home") as running:
        yield running


@pytest.fixture(scope="module")
def tenant(server: RunningServer) -> Tenant:
    return make_tenant(server, ("admin", "lead", "engineer", "scientist", "viewer"))


@pytest.fixture(scope="module")
def clients(server: RunningServer, tenant: Tenant) -> Iterator[dict[str, httpx.Client]]:
    with role_clients(server, tenant) as made, server.admin() as platform:
        yield {**made, "platform": platform}


@pytest.fixture(scope="module")
def churn(clients: dict[str, httpx.Client], tenant: Tenant) -> dict[str, int]:
    """``churn`` v1 (approved) and v2 (pending), registered by the scientist."""
    scientist = clients["scientist"]
    v1 = register(scientist, tenant, "churn", light_model(1))
    approve(clients["lead"], tenant, "churn", v1)
    v2 = register(scientist, tenant, "churn", light_model(2))
    return {"approved": v1, "pending": v2}


def _events(client: httpx.Client, tenant: Tenant, subject: str) -> list[str]:
    r = client.get(f"{base(tenant)}/events", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return [e["type"] for e in r.json() if e["subject"] == subject]


def test_an_endpoint_goes_in_service_with_its_replicas_answering(
    server: RunningServer,
    clients: dict[str, httpx.Client],
    tenant: Tenant,
    churn: dict[str, int],
) -> None:
    scientist = clients["scientist"]
    name = unique("churn-dev-")
    source = {"group": "churn", "version": churn["approved"]}
    r = deploy(scientist, tenant, name, f"{name}-m", count=2, source=source)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "Creating"

    started = time.monotonic()
    e = in_service(scientist, tenant, name, timeout=60)
    took = time.monotonic() - started
    [variant] = e["variants"]
    assert variant["current_instance_count"] == variant["desired_instance_count"] == 2
    assert variant["model_version"] == f"v{churn['approved']}"
    assert variant["weight"] == 1.0
    assert e["invocation_url"].endswith(f"/endpoints/{name}/invocations")
    for replica in replicas(e):
        answer = invoke_replica(replica)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == f"v{churn['approved']}"
        assert answer.json()["prediction"] in (0, 1)
    # the published routing table names exactly the ready replicas
    routes = routes_of(server, name)
    assert routes is not None and routes["status"] == "InService"
    assert routed_replica_ids(server, name) == {r["id"] for r in replicas(e)}
    assert _events(scientist, tenant, f"endpoint:{name}") == [
        "endpoint.created",
        "endpoint.in_service",
    ]
    print(f"\nendpoint with 2 replicas InService in {took:.1f}s")

    # lineage: the version was deployed as this endpoint; the dashboard says where it serves
    entity = f"model:churn:{churn['approved']}"
    graph = scientist.get(f"{base(tenant)}/lineage", params={"entity": entity}).json()
    assert {"source": entity, "target": f"endpoint:{name}", "relation": "deployed as"} in graph[
        "edges"
    ]
    graph = scientist.get(f"{base(tenant)}/lineage", params={"entity": f"endpoint:{name}"})
    assert graph.status_code == 200, graph.text
    dashboard = scientist.get(f"{base(tenant)}/model-dashboard").json()
    [group] = [g for g in dashboard if g["name"] == "churn"]
    assert {
        "endpoint": name,
        "environment": "dev",
        "version": churn["approved"],
        "status": "InService",
    } in group["deployments"]


def test_unknown_instance_type_is_422_listing_the_valid_ones(
    clients: dict[str, httpx.Client], tenant: Tenant, churn: dict[str, int]
) -> None:
    scientist = clients["scientist"]
    model = unique("typo-m-")
    r = scientist.post(
        f"{base(tenant)}/hosted-models",
        json={"name": model, "group": "churn", "version": churn["approved"]},
    )
    assert r.status_code == 201, r.text
    body = {"name": unique("typo-"), "variants": [{"model": model, "instance_type": "gpu.huge"}]}
    r = scientist.post(f"{base(tenant)}/endpoint-configs", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == "variants.0.instance_type"
    assert "gpu.huge" in error["message"] and "cpu.small" in error["message"]


def test_endpoint_names_are_unique_on_the_platform(
    server: RunningServer, clients: dict[str, httpx.Client], tenant: Tenant
) -> None:
    name = unique("taken-")
    model, config = unique("tm-"), unique("tc-")
    upload(clients["scientist"], tenant, "models/taken.tar.gz", sklearn_model())
    source = {"artifact_path": "models/taken.tar.gz", "flavor": "sklearn"}
    variant = {"serverless": {"idle_timeout_s": 60}, "initial_instance_count": 0}
    r = deploy(
        clients["scientist"], tenant, name, model, config=config, source=source, variant=variant
    )
    assert r.status_code == 201, r.text
    other = make_tenant(server, ("scientist",))
    with server.client(other.keys["scientist"]) as elsewhere:
        upload(elsewhere, other, "models/taken.tar.gz", sklearn_model())
        r = deploy(elsewhere, other, name, model, config=config, source=source, variant=variant)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["field"] == "name"
    assert name in r.json()["error"]["message"]


def test_staging_and_prod_take_only_approved_versions_from_engineers(
    clients: dict[str, httpx.Client], tenant: Tenant, churn: dict[str, int]
) -> None:
    engineer = clients["engineer"]
    pending = unique("pending-m-")
    source = {"group": "churn", "version": churn["pending"]}
    r = deploy(engineer, tenant, unique("pending-"), pending, environment="staging", source=source)
    assert r.status_code == 403, r.text
    assert "approved-versions-only" in r.json()["error"]["message"]

    approved = unique("approved-m-")
    source = {"group": "churn", "version": churn["approved"]}
    r = deploy(
        clients["scientist"], tenant, unique("sci-"), approved, environment="prod", source=source
    )
    assert r.status_code == 403, r.text
    assert "prod requires the engineer role" in r.json()["error"]["message"]

    upload(engineer, tenant, "models/raw.tar.gz", sklearn_model())
    raw = {"artifact_path": "models/raw.tar.gz", "flavor": "sklearn"}
    r = deploy(
        engineer, tenant, unique("raw-"), unique("raw-m-"), environment="staging", source=raw
    )
    assert r.status_code == 403, r.text
    assert "dev only" in r.json()["error"]["message"]


def test_deleting_prod_needs_a_platform_admin_with_force(
    clients: dict[str, httpx.Client], tenant: Tenant, churn: dict[str, int]
) -> None:
    # prod takes only what passed staging
    promote = f"{base(tenant)}/models/churn/versions/{churn['approved']}/promote"
    staged = {"environment": "staging", "endpoint_name": unique("staged-")}
    r = clients["engineer"].post(promote, json=staged)
    assert r.status_code == 202, r.text
    assert wait_promotion(clients["engineer"], tenant, r.json())["status"] == "Succeeded"
    name = unique("prod-")
    source = {"group": "churn", "version": churn["approved"]}
    variant = {"serverless": {"idle_timeout_s": 60}, "initial_instance_count": 0}
    r = deploy(
        clients["engineer"],
        tenant,
        name,
        unique("prod-m-"),
        environment="prod",
        source=source,
        variant=variant,
    )
    assert r.status_code == 201, r.text
    in_service(clients["engineer"], tenant, name)
    url = f"{base(tenant)}/endpoints/{name}"
    for who, query in (("lead", {}), ("admin", {"force": "true"}), ("platform", {})):
        r = clients[who].delete(url, params=query)
        assert r.status_code == 403, (who, r.text)
        assert "prod-delete-needs-admin-force" in r.json()["error"]["message"]
    r = clients["platform"].delete(url, params={"force": "true"})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "Deleting"
    deadline = time.monotonic() + 30
    while clients["viewer"].get(url).status_code != 404:
        assert time.monotonic() < deadline, "the endpoint was not deleted"
        time.sleep(0.1)
    assert _events(clients["viewer"], tenant, f"endpoint:{name}")[-1] == "endpoint.deleted"


def test_a_killed_replica_is_replaced_and_leaves_the_routes(
    server: RunningServer,
    clients: dict[str, httpx.Client],
    tenant: Tenant,
    churn: dict[str, int],
) -> None:
    scientist = clients["scientist"]
    name = unique("heal-")
    source = {"group": "churn", "version": churn["approved"]}
    assert deploy(scientist, tenant, name, unique("heal-m-"), count=2, source=source).is_success
    before = in_service(scientist, tenant, name)
    victim, survivor = replicas(before)
    os.kill(victim["pid"], signal.SIGKILL)

    def out_of_routes(e: dict[str, Any]) -> bool:
        return victim["id"] not in routed_replica_ids(server, name)

    started = time.monotonic()
    wait_endpoint(scientist, tenant, name, out_of_routes, timeout=10, what="without the victim")
    unrouted = time.monotonic() - started
    after = in_service(scientist, tenant, name, timeout=30)
    healed = time.monotonic() - started
    ids = {r["id"] for r in replicas(after)}
    assert victim["id"] not in ids and survivor["id"] in ids and len(ids) == 2
    assert routed_replica_ids(server, name) == ids
    for replica in replicas(after):
        assert invoke_replica(replica).status_code == 200
    print(f"\nkilled replica out of the routes in {unrouted:.1f}s, replaced in {healed:.1f}s")


def test_an_endpoint_whose_model_cannot_load_fails_saying_why(
    clients: dict[str, httpx.Client], tenant: Tenant
) -> None:
    scientist = clients["scientist"]
    version = register(scientist, tenant, "broken", scripted_model(FAILS_TO_LOAD), flavor="custom")
    name = unique("broken-")
    source = {"group": "broken", "version": version}
    assert deploy(scientist, tenant, name, unique("broken-m-"), source=source).is_success
    failed = wait_endpoint(
        scientist, tenant, name, lambda e: e["status"] == "Failed", timeout=60, what="Failed"
    )
    assert "cannot be loaded" in failed["reason"] and "2 failed starts" in failed["reason"]
    assert replicas(failed) == []
    assert _events(scientist, tenant, f"endpoint:{name}")[-1] == "endpoint.failed"


GREEDY = """
    import joblib, os
    import numpy as np

    def model_fn(model_dir):
        return joblib.load(os.path.join(model_dir, "model.joblib"))

    def predict_fn(data, model):
        if data[0][0] > 100:  # 3 GiB of address space: more than a cpu.small may have
            np.empty(3 * 1024**3, dtype=np.uint8)
        return model.predict(data)
"""


def test_a_replica_gets_no_more_memory_than_its_instance_type(
    clients: dict[str, httpx.Client], tenant: Tenant
) -> None:
    """cpu.small grants 2 GiB: a request that asks for 3 GiB fails in the replica (the model's
    MemoryError, as a 500), the replica goes on serving, and nothing else on the machine is
    touched (without the cap, the untouched 3 GiB would be granted at once)."""
    scientist = clients["scientist"]
    version = register(scientist, tenant, "greedy", scripted_model(GREEDY), flavor="custom")
    name = unique("greedy-")
    source = {"group": "greedy", "version": version}
    assert deploy(scientist, tenant, name, unique("greedy-m-"), source=source).is_success
    [replica] = replicas(in_service(scientist, tenant, name, timeout=60))
    refused = invoke_replica(replica, {"features": [500.0, 0.0, 0.0]})
    assert refused.status_code == 500, refused.text
    assert "MemoryError" in refused.text or "allocate" in refused.text
    assert invoke_replica(replica).status_code == 200


def test_the_controller_verifies_the_bytes_before_it_serves_them(
    server: RunningServer, clients: dict[str, httpx.Client], tenant: Tenant
) -> None:
    """dev takes pending versions without an API-side check; the controller still re-hashes
    what it downloads against the manifest before it extracts and serves it."""
    scientist = clients["scientist"]
    path = f"models/{unique('swapped')}.tar.gz"
    upload(scientist, tenant, path, sklearn_model(1))
    scientist.post(f"{base(tenant)}/models", json={"name": "swapped"})
    r = scientist.post(f"{base(tenant)}/models/swapped/versions", json={"artifact_path": path})
    assert r.status_code == 201, r.text
    upload(scientist, tenant, path, sklearn_model(5))
    tamper(server, path)
    name = unique("swapped-")
    source = {"group": "swapped", "version": r.json()["version"]}
    assert deploy(scientist, tenant, name, unique("swapped-m-"), source=source).is_success
    failed = wait_endpoint(
        scientist, tenant, name, lambda e: e["status"] == "Failed", timeout=60, what="Failed"
    )
    assert "verification failed" in failed["reason"] and "model.joblib" in failed["reason"]
    assert replicas(failed) == []


def test_deleting_an_endpoint_stops_its_replicas(
    server: RunningServer, clients: dict[str, httpx.Client], tenant: Tenant, churn: dict[str, int]
) -> None:
    scientist = clients["scientist"]
    name = unique("gone-")
    source = {"group": "churn", "version": churn["approved"]}
    assert deploy(scientist, tenant, name, unique("gone-m-"), source=source).is_success
    pids = [r["pid"] for r in replicas(in_service(scientist, tenant, name))]
    assert scientist.delete(f"{base(tenant)}/endpoints/{name}").status_code == 202
    deadline = time.monotonic() + 30
    while scientist.get(f"{base(tenant)}/endpoints/{name}").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True
