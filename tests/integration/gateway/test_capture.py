"""Data capture (sampled JSONL batches in the project's artifacts, flushed on SIGTERM, dropped
with a metric when the store fails) and per-key throttling, on ``shipyard gateway`` too."""

from __future__ import annotations

import base64
import json
import time

import botocore.exceptions
import pytest
from tests.integration.gateway.conftest import (
    BODY,
    Replica,
    World,
    metric_value,
    standalone_gateway,
    variant,
)

from shipyard.hosting.routes import CaptureRoute


def _captured(world: World, prefix: str, project: str | None = None) -> list[dict[str, object]]:
    """Every record under ``prefix`` in the project, read back through the API."""
    base = f"/api/v1/projects/{world.team}/{project or world.project}"
    records = []
    with world.server.admin() as admin:
        listed = admin.get(f"{base}/artifacts", params={"prefix": prefix})
        assert listed.status_code == 200, listed.text
        for item in listed.json():
            r = admin.get(f"{base}/artifacts/{item['path']}")
            assert r.status_code == 200
            records += [json.loads(line) for line in r.content.splitlines()]
    return records


def _wait_records(world: World, prefix: str, count: int, timeout: float = 10) -> list[dict]:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        records = _captured(world, prefix)
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.3)


def test_sampled_captures_land_as_jsonl(world: World, replicas: dict[str, Replica]) -> None:
    capture = CaptureRoute(enabled=True, sampling_percent=50, prefix="capture/sampled")
    world.publish("sampled", [variant("A", [replicas["a1"]])], capture=capture)
    event_ids = []
    with world.http() as http:
        for i in range(200):
            r = http.post(
                "/endpoints/sampled/invocations",
                content=BODY,
                headers={"x-amzn-sagemaker-custom-attributes": f"n={i}"},
            )
            assert r.status_code == 200
            if "x-shipyard-event-id" in r.headers:
                event_ids.append(r.headers["x-shipyard-event-id"])
    assert 60 <= len(event_ids) <= 140  # 50% of 200; ±5.6 standard deviations
    records = _wait_records(world, "capture/sampled/A/", len(event_ids))
    assert sorted(r["event_id"] for r in records) == sorted(event_ids)
    record = records[0]
    assert record["endpoint"] == "sampled" and record["variant"] == "A"
    assert record["model_version"] == "v1"
    assert record["input"] == {
        "content_type": "application/json",
        "encoding": "text",
        "data": BODY.decode(),
    }
    output = json.loads(record["output"]["data"])  # type: ignore[index]
    assert output["model_version"] == "v1" and "prediction" in output
    assert record["latencies"]["model_ms"] > 0  # type: ignore[index]
    assert str(record["custom_attributes"]).startswith("n=")
    assert str(record["time"]).endswith("Z")
    with world.server.admin() as admin:
        listed = admin.get(
            f"/api/v1/projects/{world.team}/{world.project}/artifacts",
            params={"prefix": "capture/sampled/"},
        ).json()
    hour = time.strftime("%Y/%m/%d/%H", time.gmtime())
    assert all(item["path"].startswith("capture/sampled/A/") for item in listed)
    assert any(f"/A/{hour}/" in item["path"] for item in listed)
    assert all(item["path"].endswith(".jsonl") for item in listed)


def test_binary_bodies_are_base64_and_inference_id_is_the_event_id(
    world: World, replicas: dict[str, Replica]
) -> None:
    capture = CaptureRoute(enabled=True, sampling_percent=100, prefix="capture/binary")
    world.publish("binary", [variant("A", [replicas["a1"]])], capture=capture)
    client = world.client()
    out = client.invoke_endpoint(
        EndpointName="binary",
        Body=b"25,2,0,1,0,0,0,0,0,0\n",
        ContentType="text/csv",
        InferenceId="my-own-id-1",
    )
    assert out["ResponseMetadata"]["HTTPHeaders"]["x-shipyard-event-id"] == "my-own-id-1"
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.zeros((1, 10)))
    with world.http() as http:
        r = http.post(
            "/endpoints/binary/invocations",
            content=buffer.getvalue(),
            headers={"content-type": "application/x-npy", "accept": "application/json"},
        )
    assert r.status_code == 200, r.text
    records = {r["event_id"]: r for r in _wait_records(world, "capture/binary/", 2)}
    assert records["my-own-id-1"]["input"]["encoding"] == "text"  # type: ignore[index]
    npy = records[r.headers["x-shipyard-event-id"]]["input"]
    assert npy["encoding"] == "base64"  # type: ignore[index]
    assert base64.b64decode(npy["data"]) == buffer.getvalue()  # type: ignore[index]


def test_store_outage_drops_captures_never_requests(
    world: World, replicas: dict[str, Replica]
) -> None:
    """The store cannot take the project's blobs (a file where its directory must go)."""
    _, project_id = world.ids("outage")
    blocked = world.server.home / "store" / "blobs" / project_id
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_bytes(b"not a directory")
    capture = CaptureRoute(enabled=True, sampling_percent=100, prefix="capture/outage")
    world.publish("outage", [variant("A", [replicas["a1"]])], capture=capture, project="outage")
    with world.http("team_invoker") as http:
        for _ in range(30):
            r = http.post("/endpoints/outage/invocations", content=BODY)
            assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    labels = {"endpoint": "outage", "variant": "A", "reason": "store"}
    while time.monotonic() < deadline:
        dropped = metric_value(world.metrics(), "shipyard_gateway_capture_dropped_total", **labels)
        if dropped >= 30:
            break
        time.sleep(0.2)
    assert dropped == 30
    log = world.server.log()
    assert log.count("capture: cannot write to the store") == 1, log[-3000:]


def test_sigterm_flushes_every_acknowledged_capture(
    world: World, replicas: dict[str, Replica]
) -> None:
    capture = CaptureRoute(enabled=True, sampling_percent=100, prefix="capture/flush")
    world.publish("flushed", [variant("A", [replicas["a2"]])], capture=capture)
    env = {  # nothing is written before the stop: an hour's interval, a huge batch
        "SHIPYARD_GATEWAY_CAPTURE_INTERVAL_S": "3600",
        "SHIPYARD_GATEWAY_CAPTURE_BATCH_RECORDS": "100000",
    }
    with standalone_gateway(world, env) as gateway:
        event_ids = []
        with world.http(base_url=gateway.url) as http:
            for _ in range(50):
                r = http.post("/endpoints/flushed/invocations", content=BODY)
                assert r.status_code == 200, r.text
                event_ids.append(r.headers["x-shipyard-event-id"])
        time.sleep(0.5)
        assert _captured(world, "capture/flush/") == []  # still queued
        assert gateway.stop() == 0, gateway.log()
    records = _captured(world, "capture/flush/")
    assert sorted(r["event_id"] for r in records) == sorted(event_ids)


def test_throttling_answers_429_with_retry_after(
    world: World, replicas: dict[str, Replica]
) -> None:
    world.publish("throttled", [variant("A", [replicas["a1"]])])
    key_id = world.keys["throttled"]["access_key_id"]
    env = {"SHIPYARD_GATEWAY_KEY_LIMITS": json.dumps({key_id: [1, 3]})}  # 1/s, bursts of 3
    with standalone_gateway(world, env) as gateway:
        with world.http("throttled", base_url=gateway.url) as http:
            statuses = [
                http.post("/endpoints/throttled/invocations", content=BODY) for _ in range(5)
            ]
        assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
        refused = statuses[3]
        assert refused.status_code == 429
        assert refused.headers["x-amzn-errortype"] == "ThrottlingException"
        assert int(refused.headers["retry-after"]) >= 1
        client = world.client("throttled", endpoint_url=gateway.url)  # retries off
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            client.invoke_endpoint(
                EndpointName="throttled", Body=BODY, ContentType="application/json"
            )
        assert caught.value.response["Error"]["Code"] == "ThrottlingException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        # other keys have their own buckets (the settings' defaults)
        with world.http(base_url=gateway.url) as http:
            assert http.post("/endpoints/throttled/invocations", content=BODY).status_code == 200
        time.sleep(1.1)
        with world.http("throttled", base_url=gateway.url) as http:
            assert http.post("/endpoints/throttled/invocations", content=BODY).status_code == 200
            # names the gateway does not know make it read the DB: they spend tokens too
            unknown = [http.post("/endpoints/nowhere/invocations", content=BODY) for _ in range(3)]
        assert [r.status_code for r in unknown][-1] == 429
