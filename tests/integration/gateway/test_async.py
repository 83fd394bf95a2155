"""Asynchronous inference: InvokeEndpointAsync with boto3 (SigV4) and with bearer keys, the
queue that survives a dead gateway, results and failures through the API, completion events,
and SageMaker's error shapes for bad input."""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.exceptions
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.integration.gateway.conftest import BODY, Replica, World, standalone_gateway, variant

from shipyard.hosting.models import AsyncInvocation

ASYNC = "churn-async"
EMPTY = "churn-async-empty"


@pytest.fixture(scope="module")
def served(world: World, replicas: dict[str, Replica]) -> str:
    return world.publish(ASYNC, [variant("A", [replicas["a1"]])])


@pytest.fixture(scope="module")
def engineer(world: World) -> dict[str, str]:
    """A key that may invoke and read the project's artifacts (so it may name an input)."""
    with world.server.admin() as admin:
        r = admin.post(
            "/api/v1/keys",
            json={
                "name": "async-engineer",
                "project": f"{world.team}/{world.project}",
                "role": "engineer",
            },
        )
        assert r.status_code == 201, r.text
        world.keys["engineer"] = r.json()
        return r.json()


def _api(world: World, key: str = "invoker") -> httpx.Client:
    return world.http(key, base_url=world.server.url)


def _base(world: World, endpoint: str = ASYNC) -> str:
    return f"/api/v1/projects/{world.team}/{world.project}/endpoints/{endpoint}/async-invocations"


def _wait_done(
    world: World, inference_id: str, endpoint: str = ASYNC, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with _api(world) as api:
        while True:
            r = api.get(f"{_base(world, endpoint)}/{inference_id}")
            assert r.status_code == 200, r.text
            if r.json()["status"] in ("Completed", "Failed"):
                return dict(r.json())
            assert time.monotonic() < deadline, f"still {r.json()}"
            time.sleep(0.2)


def _result(world: World, inference_id: str, endpoint: str = ASYNC) -> httpx.Response:
    with _api(world) as api:
        return api.get(f"{_base(world, endpoint)}/{inference_id}/result")


def _events(world: World, type_: str) -> list[dict[str, Any]]:
    with world.server.admin() as admin:
        r = admin.get(
            f"/api/v1/projects/{world.team}/{world.project}/events", params={"type": type_}
        )
        assert r.status_code == 200, r.text
        return list(r.json()["events"] if isinstance(r.json(), dict) else r.json())


def _upload(world: World, path: str, data: bytes) -> None:
    with world.server.admin() as admin:
        r = admin.put(
            f"/api/v1/projects/{world.team}/{world.project}/artifacts/{path}",
            content=data,
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code in (200, 201), r.text


def test_boto3_queues_from_an_input_location_and_the_answer_lands_there(
    world: World, served: str, engineer: dict[str, str]
) -> None:
    _upload(world, "requests/one.json", BODY)
    client = world.client("engineer")
    queued = client.invoke_endpoint_async(
        EndpointName=ASYNC,
        InputLocation=f"shipyard://{world.team}/{world.project}/requests/one.json",
        ContentType="application/json",
        InferenceId="boto-1",
    )
    assert queued["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert queued["InferenceId"] == "boto-1"
    prefix = f"shipyard://{world.team}/{world.project}/async-inference/{ASYNC}"
    assert queued["OutputLocation"] == f"{prefix}/output/boto-1.out"
    assert queued["FailureLocation"] == f"{prefix}/failures/boto-1.error"

    done = _wait_done(world, "boto-1")
    assert done["status"] == "Completed" and done["variant"] == "A" and done["attempts"] == 1
    answer = _result(world, "boto-1").json()
    direct = json.loads(client.invoke_endpoint(EndpointName=ASYNC, Body=BODY)["Body"].read())
    assert answer == direct and answer["model_version"] == "v1"
    # the answer is an artifact of the project, where OutputLocation says
    with world.server.admin() as admin:
        stored = admin.get(
            f"/api/v1/projects/{world.team}/{world.project}/artifacts/"
            f"async-inference/{ASYNC}/output/boto-1.out"
        )
    assert stored.status_code == 200 and stored.json() == direct
    completed = [
        e for e in _events(world, "endpoint.async.*") if e["data"]["inference_id"] == "boto-1"
    ]
    assert [e["type"] for e in completed] == ["endpoint.async.completed"]
    assert completed[0]["data"]["output_path"] == f"async-inference/{ASYNC}/output/boto-1.out"


def test_a_body_is_queued_for_an_invoker_key_and_the_sdk_waits_for_it(
    world: World, served: str
) -> None:
    with world.http() as gateway:
        r = gateway.post(
            f"/endpoints/{ASYNC}/async-invocations",
            content=BODY,
            headers={"Content-Type": "application/json"},
        )
    assert r.status_code == 202, r.text
    inference_id = r.json()["InferenceId"]
    assert r.headers["x-amzn-sagemaker-outputlocation"] == r.json()["OutputLocation"]
    assert _wait_done(world, inference_id)["status"] == "Completed"
    assert _result(world, inference_id).json()["model_version"] == "v1"

    from shipyard.sdk import Session as SdkSession
    from shipyard.sdk._config import Profile

    profile = Profile(url=world.server.url, api_key=world.keys["invoker"]["api_key"])
    with SdkSession.from_profile(profile) as session:
        queued = session.predictor(ASYNC).predict_async({"features": json.loads(BODY)["features"]})
        assert queued.result(timeout=30)["model_version"] == "v1"
        listed = session.hosting(f"{world.team}/{world.project}").async_invocations(ASYNC)
    assert queued.inference_id in [row["inference_id"] for row in listed]


def test_a_model_failure_is_recorded_with_its_message_and_event(world: World, served: str) -> None:
    client = world.client()
    _upload(world, "requests/two.json", BODY)
    with world.http() as gateway:
        r = gateway.post(
            f"/endpoints/{ASYNC}/async-invocations",
            content=BODY,
            headers={
                "Content-Type": "application/json",
                "X-Amzn-SageMaker-Custom-Attributes": "crash",
                "X-Amzn-SageMaker-Inference-Id": "crashing-1",
            },
        )
    assert r.status_code == 202, r.text
    done = _wait_done(world, "crashing-1")
    assert done["status"] == "Failed" and "crashed on purpose" in done["error"]
    document = _result(world, "crashing-1").json()
    assert document["code"] == "ModelError" and document["OriginalStatusCode"] == 500
    failed = [
        e
        for e in _events(world, "endpoint.async.failed")
        if e["data"]["inference_id"] == "crashing-1"
    ]
    assert len(failed) == 1 and "crashed on purpose" in failed[0]["data"]["error"]
    # an invoker key may not name an input it could not read itself
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client.invoke_endpoint_async(EndpointName=ASYNC, InputLocation="requests/two.json")
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"


@pytest.mark.parametrize(
    ("headers", "status", "words"),
    [
        ({"X-Amzn-SageMaker-InputLocation": "requests/missing.json"}, 400, "InputLocation"),
        (
            {"X-Amzn-SageMaker-InputLocation": "shipyard://gwteam/elsewhere/x.json"},
            400,
            "not in the project",
        ),
        ({"X-Amzn-SageMaker-InputLocation": "s3://bucket/x.json"}, 400, "InputLocation"),
        ({}, 400, "InputLocation is required"),
        ({"X-Amzn-SageMaker-RequestTTLSeconds": "0"}, 400, "RequestTTLSeconds"),
        ({"X-Amzn-SageMaker-Inference-Id": "a b"}, 400, "InferenceId"),
    ],
)
def test_bad_requests_are_refused_in_sagemakers_shape(
    world: World,
    served: str,
    engineer: dict[str, str],
    headers: dict[str, str],
    status: int,
    words: str,
) -> None:
    body = b"" if "InputLocation" in str(headers) or not headers else BODY
    with world.http("engineer") as gateway:
        r = gateway.post(f"/endpoints/{ASYNC}/async-invocations", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["x-amzn-errortype"] == "ValidationError"
    assert words in r.json()["message"]


def test_unknown_endpoint_is_a_validation_error_for_boto3(world: World) -> None:
    client = world.client()
    with pytest.raises(client.exceptions.ValidationError) as refused:
        client.invoke_endpoint_async(EndpointName="no-such-endpoint", InputLocation="x.json")
    assert "no-such-endpoint" in str(refused.value)


def test_requests_wait_for_a_replica_and_survive_a_killed_gateway(
    world: World, replicas: dict[str, Replica]
) -> None:
    """Accepted while no replica serves, through a gateway that is then killed: every one is
    answered once a replica is there. A request left Running by a dead gateway is run again."""
    world.publish(EMPTY, [variant("A", [])])
    with standalone_gateway(world, {}) as doomed:
        with httpx.Client(
            base_url=doomed.url,
            timeout=30,
            headers={"Authorization": f"Bearer {world.keys['invoker']['api_key']}"},
        ) as gw:
            ids = []
            for _ in range(5):
                r = gw.post(
                    f"/endpoints/{EMPTY}/async-invocations",
                    content=BODY,
                    headers={"Content-Type": "application/json"},
                )
                assert r.status_code == 202, r.text
                ids.append(r.json()["InferenceId"])
        doomed.proc.kill()
        doomed.proc.wait()
    # the state a gateway killed mid-request leaves: Running, under its (unexpired) lease
    dead_owner = f"{socket.gethostname()[:40]}:{_dead_pid()}:00000000"
    with Session(world.engine) as s, s.begin():
        row = s.scalars(select(AsyncInvocation).where(AsyncInvocation.inference_id == ids[0])).one()
        row.status, row.lease_owner = "Running", dead_owner
        row.lease_until = datetime.now(UTC) + timedelta(hours=1)
    world.publish(EMPTY, [variant("A", [replicas["a2"]])])
    for inference_id in ids:
        done = _wait_done(world, inference_id, EMPTY, timeout=60)
        assert done["status"] == "Completed", done
        assert _result(world, inference_id, EMPTY).json()["model_version"] == "v1"


def _dead_pid() -> int:
    """A pid no process has now."""
    pid = 999_999
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1
