"""Faults around the gateway: a replica killed under load, a serverless cold start, a revoked
key, and the traffic counters the autoscaler reads."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.integration.gateway.conftest import BODY, Replica, World, variant

from shipyard.hosting.models import EndpointTraffic
from shipyard.hosting.routes import VariantRoute


def test_a_replica_killed_mid_load_loses_no_request(
    world: World, replicas: dict[str, Replica]
) -> None:
    world.publish("survivor", [variant("A", [replicas["doomed"], replicas["a2"]])])
    stop = threading.Event()
    statuses: list[int] = []

    def hammer() -> None:
        with world.http() as http:
            while not stop.is_set():
                r = http.post("/endpoints/survivor/invocations", content=BODY)
                statuses.append(r.status_code)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        workers = [pool.submit(hammer) for _ in range(8)]
        time.sleep(1.0)
        replicas["doomed"].kill()  # SIGKILL, with requests on its connections
        time.sleep(1.5)
        stop.set()
        for worker in workers:
            worker.result()
    assert len(statuses) > 100
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}


def test_serverless_cold_start_waits_for_a_replica(
    world: World, replicas: dict[str, Replica]
) -> None:
    cold = VariantRoute("lazy", 1.0, "m", "v2", (), serverless=True)
    endpoint_id = world.publish("cold-start", [cold])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        waiting = pool.submit(
            lambda: world.http().post("/endpoints/cold-start/invocations", content=BODY)
        )
        wanted = _wait_wanted(world, endpoint_id, "lazy")
        assert wanted is not None, "the gateway did not mark the variant wanted"
        assert not waiting.done()  # held, not refused
        # the controller's part: a replica is up, the route is published with it
        world.publish("cold-start", [variant("lazy", [replicas["b"]])])
        response = waiting.result(timeout=15)
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == "v2"
    assert time.monotonic() - started < 8


def test_serverless_cold_start_times_out_with_503(world: World) -> None:
    world.publish("never-starts", [VariantRoute("lazy", 1.0, "m", "v2", (), serverless=True)])
    started = time.monotonic()
    with world.http() as http:
        r = http.post("/endpoints/never-starts/invocations", content=BODY)
    assert r.status_code == 503
    assert r.json()["__type"] == "ServiceUnavailable"
    assert 7 <= time.monotonic() - started < 15  # SHIPYARD_GATEWAY_COLD_START_WAIT_S=8


def _wait_wanted(world: World, endpoint_id: str, name: str, timeout: float = 5) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(world.engine) as s:
            found = s.scalars(
                select(EndpointTraffic.wanted_at).where(
                    EndpointTraffic.endpoint_id == endpoint_id,
                    EndpointTraffic.variant == name,
                    EndpointTraffic.wanted_at.is_not(None),
                )
            ).first()
        if found is not None:
            return found
        time.sleep(0.1)
    return None


def test_revoked_key_stops_within_the_cache_ttl(world: World, replicas: dict[str, Replica]) -> None:
    world.publish("revocable", [variant("A", [replicas["a1"]])])
    with world.server.admin() as admin:
        r = admin.post(
            "/api/v1/keys", json={"project": f"{world.team}/{world.project}", "role": "invoker"}
        )
        assert r.status_code == 201
        key = r.json()
    world.keys["doomed"] = key
    client = world.client("doomed")
    call = {"EndpointName": "revocable", "Body": BODY, "ContentType": "application/json"}
    assert client.invoke_endpoint(**call)["ResponseMetadata"]["HTTPStatusCode"] == 200
    with world.http("doomed") as http:
        assert http.post("/endpoints/revocable/invocations", content=BODY).status_code == 200
    with world.server.admin() as admin:
        assert admin.delete(f"/api/v1/keys/{key['key_id']}").status_code == 200
    revoked_at = time.monotonic()
    # SHIPYARD_GATEWAY_AUTH_CACHE_TTL_S=1: both schemes refuse within the TTL (and a margin)
    for scheme in ("bearer", "sigv4"):
        while True:
            if scheme == "bearer":
                with world.http("doomed") as http:
                    r = http.post("/endpoints/revocable/invocations", content=BODY)
                status, code = r.status_code, r.headers.get("x-amzn-errortype")
            else:
                try:
                    client.invoke_endpoint(**call)
                    status, code = 200, None
                except client.exceptions.ClientError as exc:
                    status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
                    code = exc.response["Error"]["Code"]
            if status != 200:
                break
            assert time.monotonic() - revoked_at < 2.0, f"{scheme}: still accepted"
            time.sleep(0.05)
        assert (status, code) == (403, "UnrecognizedClientException"), scheme
        assert time.monotonic() - revoked_at < 2.0


def test_traffic_counters_reach_the_db(world: World, replicas: dict[str, Replica]) -> None:
    endpoint_id = world.publish("counted", [variant("A", [replicas["a1"]])])
    with world.http() as http:
        for _ in range(25):
            assert http.post("/endpoints/counted/invocations", content=BODY).status_code == 200
        bad = http.post("/endpoints/counted/invocations", content=b'{"features": [1]}')
        assert bad.status_code == 424
    deadline = time.monotonic() + 8  # flushed every ~2 s
    while time.monotonic() < deadline:
        rows = world.traffic(endpoint_id)
        if "A" in rows and rows["A"].invocations >= 26:
            break
        time.sleep(0.3)
    row = rows["A"]
    assert (row.invocations, row.errors_4xx, row.errors_5xx) == (26, 1, 0)
    assert 0 < row.model_latency_s < 26  # seconds, summed


def test_gateway_metrics_answer_while_the_api_is_busy(world: World) -> None:
    """The gateway is its own process: its probes do not go through the API."""
    assert httpx.get(f"{world.gateway_url}/ping", timeout=5).status_code == 200
    with world.server.client() as api:
        info = api.get("/api/v1/info").json()
    assert info["gateway_url"] == world.gateway_url
