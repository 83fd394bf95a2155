"""InvokeEndpoint through the gateway with boto3 (SigV4) and bearer keys: answers, routing,
SageMaker's error shapes and the per-variant metrics."""

from __future__ import annotations

import json
import time
from collections import Counter

import botocore.exceptions
import pytest
from tests.integration.gateway.conftest import (
    BODY,
    ROW,
    Replica,
    World,
    metric_value,
    variant,
)

from shipyard.hosting.routes import ReplicaRoute, VariantRoute

MAIN = "churn-main"


@pytest.fixture(scope="module")
def main(world: World, replicas: dict[str, Replica]) -> str:
    """Variant A (v1, two replicas) and B (v2), weighted 3:1."""
    return world.publish(
        MAIN,
        [
            variant("A", [replicas["a1"], replicas["a2"]], weight=3),
            variant("B", [replicas["b"]], weight=1),
        ],
    )


def test_boto3_sigv4_json_and_csv(world: World, main: str) -> None:
    client = world.client()
    out = client.invoke_endpoint(EndpointName=MAIN, Body=BODY, ContentType="application/json")
    answer = json.loads(out["Body"].read())
    assert out["InvokedProductionVariant"] in {"A", "B"}
    assert answer["model_version"] == {"A": "v1", "B": "v2"}[out["InvokedProductionVariant"]]
    assert 0.0 <= answer["prediction"] <= 1.0
    assert out["ContentType"] == "application/json"

    csv = ",".join(str(x) for x in ROW) + "\n" + ",".join(str(x) for x in ROW) + "\n"
    out = client.invoke_endpoint(
        EndpointName=MAIN, Body=csv, ContentType="text/csv", Accept="text/csv"
    )
    lines = out["Body"].read().decode().split()
    assert len(lines) == 2 and float(lines[0]) == pytest.approx(answer["prediction"])
    assert out["ContentType"] == "text/csv"


def test_target_variant_and_custom_attributes(world: World, main: str) -> None:
    client = world.client()
    for target, version in (("A", "v1"), ("B", "v2")):
        out = client.invoke_endpoint(
            EndpointName=MAIN,
            Body=BODY,
            ContentType="application/json",
            TargetVariant=target,
            CustomAttributes="trace=abc-123",
        )
        assert out["InvokedProductionVariant"] == target
        assert json.loads(out["Body"].read())["model_version"] == version
        assert out["CustomAttributes"] == "echo=trace=abc-123"  # the replica's own answer


def test_bearer_key_works_too(world: World, main: str) -> None:
    with world.http("team_invoker") as http:
        r = http.post(f"/endpoints/{MAIN}/invocations", content=BODY)
    assert r.status_code == 200, r.text
    assert r.headers["x-amzn-invoked-production-variant"] in {"A", "B"}
    assert "x-shipyard-event-id" not in r.headers  # capture is off here


def test_weighted_routing_splits_by_weight(world: World, main: str) -> None:
    seen: Counter[str] = Counter()
    with world.http() as http:
        for _ in range(400):
            r = http.post(f"/endpoints/{MAIN}/invocations", content=BODY)
            assert r.status_code == 200, r.text
            seen[r.headers["x-amzn-invoked-production-variant"]] += 1
    assert seen["A"] + seen["B"] == 400
    assert 0.65 <= seen["A"] / 400 <= 0.85, seen  # 3:1 is 0.75; ±4 standard deviations


def _error(call: object) -> botocore.exceptions.ClientError:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_unknown_endpoint_and_variant_are_validation_errors(world: World, main: str) -> None:
    client = world.client()
    with pytest.raises(client.exceptions.ValidationError, match="Endpoint no-such not found"):
        client.invoke_endpoint(EndpointName="no-such", Body=BODY, ContentType="application/json")
    with pytest.raises(client.exceptions.ValidationError, match="Variant C"):
        client.invoke_endpoint(
            EndpointName=MAIN, Body=BODY, ContentType="application/json", TargetVariant="C"
        )


def test_an_endpoint_is_invocable_as_soon_as_it_is_in_service(
    world: World, replicas: dict[str, Replica]
) -> None:
    """Between two polls the gateway does not know the endpoint yet: the request makes it read
    the table at once instead of answering "not found" (as soon as the API says InService)."""
    with world.http() as http:
        for attempt in range(5):
            name = f"fresh-{attempt}"
            world.publish(name, [variant("A", [replicas["a1"]])], settle=False)
            r = http.post(f"/endpoints/{name}/invocations", content=BODY)
            assert r.status_code == 200, r.text
            assert r.headers["x-amzn-invoked-production-variant"] == "A"
    started = time.monotonic()
    with pytest.raises(world.client().exceptions.ValidationError, match="never-made not found"):
        world.client().invoke_endpoint(
            EndpointName="never-made", Body=BODY, ContentType="application/json"
        )
    assert time.monotonic() - started < 1.5  # one fresh read, not the whole wait


def test_model_refusal_is_a_model_error(world: World, main: str) -> None:
    client = world.client()
    with pytest.raises(client.exceptions.ModelError) as caught:
        client.invoke_endpoint(
            EndpointName=MAIN, Body=b'{"features": [1, 2]}', ContentType="application/json"
        )
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == 400
    assert "expecting 10 features" in response["OriginalMessage"]
    assert response["LogStreamArn"].endswith(MAIN)
    with pytest.raises(client.exceptions.ModelError) as caught:
        client.invoke_endpoint(
            EndpointName=MAIN, Body=BODY, ContentType="application/json", CustomAttributes="crash"
        )
    assert caught.value.response["OriginalStatusCode"] == 500
    assert "crashed on purpose" in caught.value.response["OriginalMessage"]


def test_body_limit_and_media_types(world: World, main: str) -> None:
    with world.http() as http:
        r = http.post(f"/endpoints/{MAIN}/invocations", content=b"0" * (6 * 1024 * 1024 + 1))
        assert r.status_code == 413
        assert r.headers["x-amzn-errortype"] == "ValidationError"
        r = http.post(
            f"/endpoints/{MAIN}/invocations", content=BODY, headers={"content-type": "nonsense"}
        )
        assert r.status_code == 415
        assert r.json()["__type"] == "ValidationError"
        # well formed, but no codec of the model takes it: the replica's 415 is passed on
        r = http.post(
            f"/endpoints/{MAIN}/invocations",
            content=BODY,
            headers={"content-type": "application/x-unknown"},
        )
        assert r.status_code == 415, r.text
    client = world.client()
    with pytest.raises(client.exceptions.ValidationError):
        client.invoke_endpoint(
            EndpointName=MAIN, Body=b"x" * (6 * 1024 * 1024 + 1), ContentType="text/csv"
        )


def test_refused_keys_get_aws_codes(world: World, main: str) -> None:
    call = {"EndpointName": MAIN, "Body": BODY, "ContentType": "application/json"}
    wrong = world.client(secret="not-the-secret")
    error = _error(lambda: wrong.invoke_endpoint(**call))
    assert error.response["Error"]["Code"] == "InvalidSignatureException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    for key in ("viewer", "other_project"):
        client = world.client(key)
        error = _error(lambda c=client: c.invoke_endpoint(**call))  # type: ignore[misc]
        assert error.response["Error"]["Code"] == "AccessDeniedException", key
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    with world.http(None) as http:
        r = http.post(f"/endpoints/{MAIN}/invocations", content=BODY)
        assert r.status_code == 403
        assert r.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
        r = http.post(
            f"/endpoints/{MAIN}/invocations",
            content=BODY,
            headers={"authorization": "Bearer shpk_NOPE_nope"},
        )
        assert r.status_code == 403
        assert r.json()["__type"] == "UnrecognizedClientException"


def test_unknown_key_id_is_unrecognized(world: World, main: str) -> None:
    creds = dict(world.keys["invoker"])
    world.keys["ghost"] = {**creds, "access_key_id": "SHKNOSUCHKEY00000000"}
    try:
        error = _error(
            lambda: world.client("ghost").invoke_endpoint(
                EndpointName=MAIN, Body=BODY, ContentType="application/json"
            )
        )
    finally:
        del world.keys["ghost"]
    assert error.response["Error"]["Code"] == "UnrecognizedClientException"


def test_other_paths_are_unknown_operations(world: World) -> None:
    with world.http() as http:
        r = http.get(f"/endpoints/{MAIN}/invocations")
        assert r.status_code == 404
        assert r.headers["x-amzn-errortype"] == "UnknownOperationException"
        assert http.get("/nothing/here").status_code == 404


def test_no_ready_replica_is_service_unavailable(world: World) -> None:
    world.publish("no-replicas", [VariantRoute("A", 1.0, "m", "v1", ())])
    client = world.client()
    error = _error(
        lambda: client.invoke_endpoint(
            EndpointName="no-replicas", Body=BODY, ContentType="application/json"
        )
    )
    assert error.response["Error"]["Code"] == "ServiceUnavailable"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    # a replica that is not listening: refused, no other to try
    dead = VariantRoute("A", 1.0, "m", "v1", (ReplicaRoute("dead", "127.0.0.1", 9),))
    world.publish("dead-replica", [dead])
    error = _error(
        lambda: client.invoke_endpoint(
            EndpointName="dead-replica", Body=BODY, ContentType="application/json"
        )
    )
    assert error.response["Error"]["Code"] == "ServiceUnavailable"


def test_only_serving_statuses_are_served(world: World, replicas: dict[str, Replica]) -> None:
    for status, served in (("Creating", False), ("Updating", True), ("Failed", False)):
        world.publish("by-status", [variant("A", [replicas["a1"]])], status=status)
        with world.http() as http:
            r = http.post("/endpoints/by-status/invocations", content=BODY)
        assert (r.status_code == 200) is served, (status, r.text)
        if not served:
            assert r.json()["__type"] == "ValidationError"


def test_shadow_gets_mirrored_traffic_the_client_never_sees(
    world: World, replicas: dict[str, Replica]
) -> None:
    world.publish(
        "with-shadow",
        [variant("prod", [replicas["a1"]])],
        shadow=variant("shadow", [replicas["shadow"]]),
    )
    dead_shadow = VariantRoute("ghost", 1.0, "m", "v9", (ReplicaRoute("x", "127.0.0.1", 9),))
    world.publish("dead-shadow", [variant("prod", [replicas["a1"]])], shadow=dead_shadow)
    with world.http() as http:
        for name in ("with-shadow", "dead-shadow"):
            for _ in range(40):
                r = http.post(f"/endpoints/{name}/invocations", content=BODY)
                assert r.status_code == 200, r.text
                assert r.headers["x-amzn-invoked-production-variant"] == "prod"
                assert r.json()["model_version"] == "v1"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = world.metrics()
        mirrored = metric_value(
            text, "shipyard_gateway_shadow_invocations_total", endpoint="with-shadow"
        )
        failed = metric_value(text, "shipyard_gateway_shadow_errors_total", endpoint="dead-shadow")
        if mirrored >= 40 and failed >= 40:
            break
        time.sleep(0.2)
    assert mirrored == 40
    assert metric_value(text, "shipyard_gateway_shadow_errors_total", endpoint="with-shadow") == 0
    assert failed == 40  # the shadow's failures are counted, never the client's
    assert (
        metric_value(text, "shipyard_gateway_invocation_5xx_errors_total", endpoint="dead-shadow")
        == 0
    )


def test_metrics_have_per_variant_series(world: World, main: str) -> None:
    with world.http() as http:
        for target in ("A", "B"):
            r = http.post(
                f"/endpoints/{MAIN}/invocations",
                content=BODY,
                headers={"x-amzn-sagemaker-target-variant": target},
            )
            assert r.status_code == 200
    text = world.metrics()
    for name in ("A", "B"):
        labels = {"endpoint": MAIN, "variant": name}
        assert metric_value(text, "shipyard_gateway_invocations_total", **labels) >= 1
        assert metric_value(text, "shipyard_gateway_model_latency_seconds_count", **labels) >= 1
        assert metric_value(text, "shipyard_gateway_overhead_latency_seconds_count", **labels) >= 1
    assert "shipyard_gateway_invocation_4xx_errors_total" in text
    assert "shipyard_gateway_capture_dropped_total" in text
