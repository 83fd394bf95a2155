"""Promotion dev → staging → prod: the rules (approval, staging before prod, the engineer
role), the recorded steps (verify, deploy, test, rollback), and what a failure leaves."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant, make_tenant, role_clients, unique
from tests.support.cli import cli_env, ok_json, run_cli
from tests.support.endpoints import (
    EXAMPLE,
    FAILS_TO_LOAD,
    approve,
    endpoint,
    hosting_server,
    in_service,
    invoke_replica,
    light_model,
    register,
    replicas,
    scripted_model,
    sklearn_model,
    tamper,
    wait_promotion,
)
from tests.support.jobs import base, upload
from tests.support.servers import RunningServer

import shipyard

SIGNATURE = {"inputs": [{"name": f"x{i}", "type": "double"} for i in range(3)], "outputs": [{}]}


@pytest.fixture(scope="module")
def server(db_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with hosting_server(db_backend, tmp_path_factory.mktemp("promote") / "home") as running:
        yield running


@pytest.fixture(scope="module")
def tenant(server: RunningServer) -> Tenant:
    return make_tenant(server, ("lead", "engineer", "scientist", "viewer"))


@pytest.fixture(scope="module")
def c(server: RunningServer, tenant: Tenant) -> Iterator[dict[str, httpx.Client]]:
    with role_clients(server, tenant) as made:
        yield made


def _promote(
    client: httpx.Client, tenant: Tenant, group: str, version: int, env: str, **extra: Any
) -> httpx.Response:
    url = f"{base(tenant)}/models/{group}/versions/{version}/promote"
    return client.post(url, json={"environment": env, **extra})


def _run(
    client: httpx.Client, tenant: Tenant, group: str, version: int, env: str, **extra: Any
) -> dict[str, Any]:
    r = _promote(client, tenant, group, version, env, **extra)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "Running"
    return wait_promotion(client, tenant, r.json())


def _steps(run: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["step"], s["status"]) for s in run["steps"]]


def test_a_version_goes_dev_staging_prod(
    server: RunningServer, c: dict[str, httpx.Client], tenant: Tenant
) -> None:
    group = unique("churn")
    version = register(c["scientist"], tenant, group, light_model(), signature=SIGNATURE)

    # dev takes a pending version, from a scientist
    dev = _run(c["scientist"], tenant, group, version, "dev")
    assert dev["status"] == "Succeeded", dev
    assert dev["endpoint_name"] == f"{group}-dev"
    assert _steps(dev) == [("check", "ok"), ("verify", "ok"), ("deploy", "ok"), ("test", "ok")]

    # staging: approved versions only, engineers only
    r = _promote(c["engineer"], tenant, group, version, "staging")
    assert r.status_code == 403 and "approved-versions-only" in r.json()["error"]["message"]
    approve(c["lead"], tenant, group, version)
    r = _promote(c["scientist"], tenant, group, version, "staging")
    assert r.status_code == 403 and "prod requires the engineer role" in r.text
    # prod: only after staging
    r = _promote(c["engineer"], tenant, group, version, "prod")
    assert r.status_code == 409 and "prod-after-staging" in r.json()["error"]["message"]
    # ... and not around the pipeline either: a prod endpoint made by hand is held to it
    hosted = {"name": f"{group}-hm", "group": group, "version": version}
    assert c["engineer"].post(f"{base(tenant)}/hosted-models", json=hosted).status_code == 201
    config = {"name": f"{group}-cfg", "variants": [{"model": f"{group}-hm"}]}
    assert c["engineer"].post(f"{base(tenant)}/endpoint-configs", json=config).status_code == 201
    by_hand = {"name": f"{group}-byhand", "config_name": f"{group}-cfg", "environment": "prod"}
    r = c["engineer"].post(f"{base(tenant)}/endpoints", json=by_hand)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["field"] == "config_name"
    assert "prod-after-staging" in r.json()["error"]["message"]

    staging = _run(c["engineer"], tenant, group, version, "staging")
    assert staging["status"] == "Succeeded", staging
    prod = _run(c["engineer"], tenant, group, version, "prod", endpoint_name=f"{group}-live")
    assert prod["status"] == "Succeeded", prod

    live = in_service(c["viewer"], tenant, f"{group}-live")
    assert live["environment"] == "prod"
    [replica] = replicas(live)
    assert invoke_replica(replica).json()["model_version"] == f"v{version}"
    listed = c["viewer"].get(f"{base(tenant)}/promotions", params={"group": group}).json()
    assert [(p["environment"], p["status"]) for p in listed] == [
        ("prod", "Succeeded"),
        ("staging", "Succeeded"),
        ("dev", "Succeeded"),
    ]
    events = c["viewer"].get(f"{base(tenant)}/events", params={"limit": 1000}).json()
    promoted = [e for e in events if e["type"] == "promotion.succeeded"]
    assert {e["data"]["environment"] for e in promoted if e["data"]["group"] == group} == {
        "dev",
        "staging",
        "prod",
    }


def test_a_new_version_replaces_the_old_and_a_failing_test_rolls_back(
    c: dict[str, httpx.Client], tenant: Tenant
) -> None:
    group = unique("swap")
    first = register(c["scientist"], tenant, group, light_model(1))
    approve(c["lead"], tenant, group, first)
    capture = {"enabled": True, "sampling_percent": 25}
    staged = _run(c["engineer"], tenant, group, first, "staging", data_capture=capture)
    assert staged["status"] == "Succeeded", staged
    name = f"{group}-staging"
    serving = endpoint(c["viewer"], tenant, name)["current_config"]

    second = register(c["scientist"], tenant, group, light_model(2))
    approve(c["lead"], tenant, group, second)
    updated = _run(c["engineer"], tenant, group, second, "staging")
    assert updated["status"] == "Succeeded", updated
    after = in_service(c["viewer"], tenant, name)
    assert after["current_config"] != serving
    assert {v["model_version"] for v in after["variants"]} == {f"v{second}"}
    # the new version keeps capturing what the endpoint captured (its monitors read it)
    config = c["viewer"].get(f"{base(tenant)}/endpoint-configs/{after['current_config']}")
    assert config.json()["data_capture"]["enabled"] is True
    assert config.json()["data_capture"]["sampling_percent"] == 25

    # an example the model rejects (two features, not three): the test fails, rolls back
    broken = register(
        c["scientist"], tenant, group, light_model(3), example={"features": [1.0, 2.0]}
    )
    approve(c["lead"], tenant, group, broken)
    failed = _run(c["engineer"], tenant, group, broken, "staging")
    assert failed["status"] == "Failed", failed
    assert _steps(failed)[-2:] == [("test", "failed"), ("rollback", "ok")]
    assert failed["reason"].startswith("test: the example was answered 400")
    restored = in_service(c["viewer"], tenant, name)
    assert restored["current_config"] == after["current_config"]
    assert {v["model_version"] for v in restored["variants"]} == {f"v{second}"}


def test_tampered_bytes_fail_the_promotion_at_verify(
    server: RunningServer, c: dict[str, httpx.Client], tenant: Tenant
) -> None:
    group = unique("tamper")
    path = f"models/{group}.tar.gz"
    upload(c["scientist"], tenant, path, sklearn_model(1))
    c["scientist"].post(f"{base(tenant)}/models", json={"name": group})
    body = {"artifact_path": path, "example": {"features": [0.0, 0.0, 0.0]}}
    r = c["scientist"].post(f"{base(tenant)}/models/{group}/versions", json=body)
    assert r.status_code == 201, r.text
    approve(c["lead"], tenant, group, 1)
    # an insider points the approved version's artifact at other (validly stored) weights
    upload(c["scientist"], tenant, path, sklearn_model(7))
    tamper(server, path)

    run = _run(c["engineer"], tenant, group, 1, "staging")
    assert run["status"] == "Failed"
    assert _steps(run) == [("check", "ok"), ("verify", "failed")]
    assert "model.joblib" in run["reason"] and run["reason"].startswith("verify:")
    assert c["viewer"].get(f"{base(tenant)}/endpoints/{group}-staging").status_code == 404
    # and the endpoint API refuses it the same way
    model = {"name": unique("tm-"), "group": group, "version": 1}
    assert c["engineer"].post(f"{base(tenant)}/hosted-models", json=model).status_code == 201
    config = {"name": unique("tc-"), "variants": [{"model": model["name"]}]}
    assert c["engineer"].post(f"{base(tenant)}/endpoint-configs", json=config).status_code == 201
    body = {"name": unique("te-"), "config_name": config["name"], "environment": "staging"}
    r = c["engineer"].post(f"{base(tenant)}/endpoints", json=body)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "verification_failed"
    assert "model.joblib" in r.json()["error"]["message"]


def test_the_cli_promotes_and_shows_endpoints(
    server: RunningServer, c: dict[str, httpx.Client], tenant: Tenant, tmp_path: Path
) -> None:
    group = unique("cli")
    version = register(c["scientist"], tenant, group, light_model())
    env = cli_env(tmp_path, SHIPYARD_URL=server.url, SHIPYARD_API_KEY=tenant.keys["scientist"])
    project = f"{tenant.team}/{tenant.project}"
    run = ok_json(
        run_cli(
            env, "models", "promote", group, str(version), "-p", project, "--env", "dev", "--json"
        )
    )
    assert run["status"] == "Succeeded" and run["endpoint_name"] == f"{group}-dev"
    shown = ok_json(run_cli(env, "endpoints", "show", f"{group}-dev", "-p", project, "--json"))
    assert shown["status"] == "InService"
    listed = ok_json(run_cli(env, "endpoints", "ls", "-p", project, "--json"))
    assert f"{group}-dev" in {e["name"] for e in listed}
    text_out = run_cli(env, "models", "promotions", "-p", project, group)
    assert text_out.returncode == 0 and "test:ok" in text_out.stdout
    scaled = ok_json(
        run_cli(env, "endpoints", "scale", f"{group}-dev", "-p", project, "--count", "2", "--json")
    )
    assert scaled["name"] == f"{group}-dev"
    in_service(c["viewer"], tenant, f"{group}-dev")
    assert len(replicas(endpoint(c["viewer"], tenant, f"{group}-dev"))) == 2
    gone = run_cli(env, "endpoints", "delete", f"{group}-dev", "-p", project)
    assert gone.returncode == 0, gone.stderr
    assert c["viewer"].get(f"{base(tenant)}/endpoints/{group}-dev").status_code == 404


def _predict_once_routed(predictor: shipyard.Predictor, payload: Any) -> Any:
    """The gateway loads a new route within its poll interval; until then it does not know
    the endpoint (SageMaker's answer: 400 ValidationError "Endpoint … not found")."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return predictor.predict(payload)
        except shipyard.APIError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_sdk_deploys_predicts_through_the_gateway_and_reports_rollbacks(
    server: RunningServer, c: dict[str, httpx.Client], tenant: Tenant
) -> None:
    group = unique("sdk")
    good = register(c["scientist"], tenant, group, light_model())
    bad = register(c["scientist"], tenant, group, scripted_model(FAILS_TO_LOAD), flavor="custom")
    project = f"{tenant.team}/{tenant.project}"
    name = unique("sdk-dev-")
    with shipyard.Session(server.url, tenant.keys["scientist"]) as session:
        version = session.models(project).version(group, good)
        predictor = version.deploy(name, instance_type="cpu.small", initial_instance_count=1)
        assert predictor.endpoint_name == name
        hosting = session.hosting(project)
        live = hosting.endpoint(name)
        assert live.status == "InService" and live.environment == "dev"
        answer = _predict_once_routed(predictor, EXAMPLE)
        assert answer["model_version"] == f"v{good}" and answer["prediction"] in (0, 1)

        hosting.create_model(f"{name}-bad", group=group, version=bad)
        hosting.create_config(f"{name}-bad", [{"model": f"{name}-bad"}])
        with pytest.raises(shipyard.DeploymentFailed) as failed:
            hosting.update_endpoint(
                name, config_name=f"{name}-bad", deployment={"strategy": "blue_green", "bake_s": 1}
            )
        assert failed.value.status == "RolledBack"
        assert "cannot be loaded" in failed.value.reason
        assert _predict_once_routed(predictor, EXAMPLE)["model_version"] == f"v{good}"

        scaled = hosting.scale(name, count=2)
        assert scaled.name == name
        in_service(c["viewer"], tenant, name)
        hosting.delete_endpoint(name)
        with pytest.raises(shipyard.NotFound):
            hosting.endpoint(name)
