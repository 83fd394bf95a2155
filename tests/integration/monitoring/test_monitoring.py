"""Model monitoring end to end on a real server, gateway and replica: a baseline of a dataset
version, traffic captured by the gateway, a monitor run over it (clean, then drifted), the
alert delivered to a webhook as a Slack-compatible message, the retraining job it starts and
the pending version that job becomes; model quality from uploaded ground truth; the
Prometheus gauges; and the bad input the issue names."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pytest
from tests.conftest import Tenant, make_tenant, role_clients, unique
from tests.integration.events.helpers import RECEIVERS, allow, create_hook
from tests.support.endpoints import hosting_server, in_service, register, sklearn_model
from tests.support.jobs import base, pack, upload
from tests.support.jobs import wait_for as wait_job
from tests.support.receiver import Receiver
from tests.support.servers import RunningServer

FEATURES = ("f0", "f1", "f2")
MONITORING_ENV = {
    "SHIPYARD_GATEWAY_CAPTURE_INTERVAL_S": "0.2",
    "SHIPYARD_MONITORING_POLL_S": "0.5",
}
TRAIN = """
    import glob, os
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    [path] = glob.glob(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "*"))
    rows = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    model = LogisticRegression().fit(rows[:, :-1], rows[:, -1])
    joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
    print("retrained on", len(rows), "rows")
"""


def _csv(rows: np.ndarray[Any, Any], labels: np.ndarray[Any, Any]) -> bytes:
    lines = [",".join([*FEATURES, "churn"])]
    lines += [
        ",".join(f"{v:.5f}" for v in row) + f",{int(y)}"
        for row, y in zip(rows, labels, strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def server(db_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("monitoring") / "home"
    with hosting_server(db_backend, home, MONITORING_ENV) as running:
        yield running


@pytest.fixture(scope="module")
def tenant(server: RunningServer) -> Tenant:
    return make_tenant(server, ("lead", "scientist", "viewer", "invoker"))


@pytest.fixture(scope="module")
def c(server: RunningServer, tenant: Tenant) -> Iterator[dict[str, httpx.Client]]:
    with role_clients(server, tenant) as made, server.admin() as platform:
        yield {**made, "platform": platform}


@pytest.fixture(scope="module")
def served(c: dict[str, httpx.Client], tenant: Tenant) -> dict[str, Any]:
    """A dataset version, a model trained like it, and a dev endpoint capturing everything."""
    scientist = c["scientist"]
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(2000, 3))
    data = _csv(rows, rows[:, 0] > 0)
    r = scientist.put(f"{base(tenant)}/datasets/mon-data/versions", content=data)
    assert r.status_code == 201, r.text
    version = register(scientist, tenant, "churn-mon", sklearn_model())
    name = unique("monitored-")
    hosted = {"name": f"{name}-m", "group": "churn-mon", "version": version}
    assert scientist.post(f"{base(tenant)}/hosted-models", json=hosted).status_code == 201
    config = {
        "name": f"{name}-cfg",
        "variants": [{"model": f"{name}-m"}],
        "data_capture": {"enabled": True, "sampling_percent": 100},
    }
    assert scientist.post(f"{base(tenant)}/endpoint-configs", json=config).status_code == 201
    body = {"name": name, "config_name": config["name"], "environment": "dev"}
    assert scientist.post(f"{base(tenant)}/endpoints", json=body).status_code == 201
    in_service(scientist, tenant, name, timeout=60)
    return {"endpoint": name, "version": version}


def _gateway(server: RunningServer, tenant: Tenant) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{server.port + 1}",
        headers={"Authorization": f"Bearer {tenant.keys['invoker']}"},
        timeout=30,
    )


def _traffic(server: RunningServer, tenant: Tenant, endpoint: str, rows: Any) -> list[str]:
    """Invoke once per row through the gateway; the capture event ids of the answers, once
    the gateway has written every one of them to the store."""
    ids = []
    with _gateway(server, tenant) as gateway:
        for row in rows:
            r = gateway.post(f"/endpoints/{endpoint}/invocations", json={"features": list(row)})
            assert r.status_code == 200, r.text
            ids.append(r.headers["x-shipyard-event-id"])
    _wait_captured(server, tenant, endpoint, set(ids))
    return ids


def _wait_captured(
    server: RunningServer, tenant: Tenant, endpoint: str, ids: set[str], timeout: float = 30
) -> None:
    prefix = f"capture/{endpoint}/"
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    with server.admin() as admin:
        while not ids <= seen:
            assert time.monotonic() < deadline, f"{len(ids - seen)} records never captured"
            time.sleep(0.2)
            listed = admin.get(f"{base(tenant)}/artifacts", params={"prefix": prefix}).json()
            seen = set()
            for item in listed:
                data = admin.get(f"{base(tenant)}/artifacts/{item['path']}").content
                seen |= {json.loads(line)["event_id"] for line in data.splitlines() if line}


def _run(
    client: httpx.Client, tenant: Tenant, monitor: str, start: datetime, timeout: float = 60
) -> dict[str, Any]:
    """Run now over [start, now); the finished execution."""
    url = f"{base(tenant)}/monitoring/schedules/{monitor}/run"
    r = client.post(url, json={"start": start.isoformat()})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + timeout
    execution = r.json()
    while execution["status"] not in ("Completed", "Failed"):
        assert time.monotonic() < deadline, f"execution still {execution['status']}"
        time.sleep(0.3)
        execution = client.get(f"{base(tenant)}/monitoring/executions/{execution['id']}").json()
    return dict(execution)


@pytest.fixture(scope="module")
def baseline(c: dict[str, httpx.Client], tenant: Tenant, served: dict[str, Any]) -> dict[str, Any]:
    r = c["scientist"].post(
        f"{base(tenant)}/monitoring/baselines",
        json={"name": "marketing", "dataset": "mon-data:1", "exclude": ["churn"]},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_drift_alerts_and_starts_the_retraining_loop(
    server: RunningServer,
    c: dict[str, httpx.Client],
    tenant: Tenant,
    served: dict[str, Any],
    baseline: dict[str, Any],
) -> None:
    scientist, lead, endpoint = c["scientist"], c["lead"], served["endpoint"]
    assert baseline["features"] == list(FEATURES) and baseline["rows"] == 2000
    constraints = scientist.get(
        f"{base(tenant)}/monitoring/baselines/marketing/versions/1/constraints"
    ).json()
    assert set(constraints["features"]) == set(FEATURES)

    upload(scientist, tenant, "code/train.tar.gz", pack({"train.py": TRAIN}))
    retrain = {
        "job": {
            "name": "retrain-churn",
            "entry_point": "train.py",
            "source": "code/train.tar.gz",
            "inputs": {"train": "dataset:mon-data:1"},
        },
        "register_group": "churn-mon",
    }
    monitor = {
        "name": "churn-drift",
        "endpoint": endpoint,
        "baseline": {"name": "marketing"},
        "cron": "0 3 * * *",
        "window_s": 3600,
        "actions": {"retrain": retrain},
    }
    r = scientist.post(f"{base(tenant)}/monitoring/schedules", json=monitor)
    assert r.status_code == 201, r.text
    assert r.json()["next_run_at"] is not None

    allow(c["platform"], RECEIVERS)
    with Receiver() as receiver:
        create_hook(lead, tenant, receiver.url, ["monitor.*"])
        rng = np.random.default_rng(12)

        # traffic like the baseline: no drift, no violation, no alert
        start = datetime.now(UTC)
        _traffic(server, tenant, endpoint, rng.normal(size=(150, 3)).round(4))
        clean = _run(scientist, tenant, "churn-drift", start)
        assert clean["status"] == "Completed", clean
        assert clean["summary"]["records"] == 150
        assert clean["summary"]["drifted_features"] == [], clean["summary"]["feature_metrics"]
        assert clean["alerts"] == []
        assert clean["retrain_job"] is None

        # f0 shifted by 3 standard deviations and beyond the baseline's range
        start = datetime.now(UTC)
        drifted = rng.normal(size=(200, 3))
        drifted[:, 0] += 3.0
        _traffic(server, tenant, endpoint, drifted.round(4))
        alert = _run(scientist, tenant, "churn-drift", start)
        assert alert["status"] == "Completed", alert
        assert alert["verdict"] == "alert"
        assert alert["summary"]["records"] == 200
        assert alert["summary"]["drifted_features"] == ["f0"]
        assert alert["summary"]["violations"] >= 1
        assert {a["metric"] for a in alert["alerts"]} == {"drifted_features", "violations"}
        assert alert["summary"]["feature_metrics"]["f0"]["psi"] > 0.2
        assert alert["summary"]["feature_metrics"]["f1"]["psi"] < 0.2

        # the alert, delivered and signed, reads as a Slack message
        deadline = time.monotonic() + 20
        while not [q for q in receiver.requests if q.json["type"] == "monitor.violation"]:
            assert time.monotonic() < deadline, [q.json["type"] for q in receiver.requests]
            time.sleep(0.1)
        [violation] = [q.json for q in receiver.requests if q.json["type"] == "monitor.violation"]
        assert "churn-drift" in violation["text"] and "drifted_features" in violation["text"]
        assert violation["data"]["execution"] == alert["id"]
        assert violation["data"]["retrain_job"] == alert["retrain_job"]

    # the retraining job runs, and its model becomes a new pending version
    job = wait_job(scientist, tenant, alert["retrain_job"], timeout=120)
    assert job["status"] == "Completed", job
    deadline = time.monotonic() + 60
    while (found := scientist.get(f"{base(tenant)}/monitoring/executions/{alert['id']}").json())[
        "retrain_version"
    ] is None:
        assert time.monotonic() < deadline, found
        time.sleep(0.3)
    version = scientist.get(
        f"{base(tenant)}/models/churn-mon/versions/{found['retrain_version']}"
    ).json()
    assert version["status"] == "PendingManualApproval"
    assert version["version"] == served["version"] + 1

    # the reports and the gauges
    report = scientist.get(f"{base(tenant)}/monitoring/executions/{alert['id']}/report").json()
    assert [f["name"] for f in report["features"] if f["drifted"]] == ["f0"]
    html = scientist.get(f"{base(tenant)}/monitoring/executions/{alert['id']}/report.html")
    assert html.status_code == 200 and html.text.count("<svg") >= len(FEATURES)
    metrics = httpx.get(f"{server.url}/metrics").text
    drifted_line = re.search(
        r'shipyard_monitor_drifted_features\{[^}]*monitor="churn-drift"[^}]*\} (\S+)', metrics
    )
    assert drifted_line is not None and float(drifted_line.group(1)) == 1.0
    listed = scientist.get(
        f"{base(tenant)}/monitoring/executions", params={"monitor": "churn-drift"}
    )
    assert [e["id"] for e in listed.json()][:2] == [alert["id"], clean["id"]]


def test_model_quality_joins_labels_and_counts_unknown_ids(
    server: RunningServer, c: dict[str, httpx.Client], tenant: Tenant, served: dict[str, Any]
) -> None:
    scientist, endpoint = c["scientist"], served["endpoint"]
    monitor = {
        "name": "churn-quality",
        "endpoint": endpoint,
        "kind": "model_quality",
        "problem_type": "classification",
        "rules": [{"metric": "accuracy", "op": "<", "threshold": 0.9}],
    }
    r = scientist.post(f"{base(tenant)}/monitoring/schedules", json=monitor)
    assert r.status_code == 201, r.text
    start = datetime.now(UTC)
    rows = np.random.default_rng(3).normal(size=(40, 3)).round(4)
    ids = _traffic(server, tenant, endpoint, rows)
    truth = (rows[:, 0] > 0).astype(int)
    truth[:10] = 1 - truth[:10]  # the model (trained on x0 > 0) gets at most 30 of 40 right
    labels = [{"event_id": i, "label": int(y)} for i, y in zip(ids, truth, strict=True)]
    labels += [{"event_id": f"no-such-event-{n}", "label": 1} for n in range(5)]
    r = c["invoker"].post(
        f"{base(tenant)}/endpoints/{endpoint}/ground-truth", json={"labels": labels}
    )
    assert r.status_code == 201, r.text
    assert r.json()["accepted"] == 45

    execution = _run(scientist, tenant, "churn-quality", start)
    assert execution["status"] == "Completed", execution
    summary = execution["summary"]
    assert summary["matched"] == 40 and summary["unmatched"] == 5
    predicted = (rows[:, 0] > 0).astype(int)  # what a model trained on x0 > 0 answers, near 0
    expected = float(np.mean(predicted == truth))
    assert summary["metrics"]["accuracy"] == pytest.approx(expected, abs=0.1)
    assert summary["metrics"]["accuracy"] < 0.9
    assert [a["metric"] for a in execution["alerts"]] == ["accuracy"]


def test_bad_input_is_refused_naming_the_field(
    c: dict[str, httpx.Client], tenant: Tenant, served: dict[str, Any], baseline: dict[str, Any]
) -> None:
    scientist = c["scientist"]
    r = scientist.put(f"{base(tenant)}/datasets/empty-data/versions", content=b"f0,f1,f2\n")
    assert r.status_code == 201, r.text
    r = scientist.post(
        f"{base(tenant)}/monitoring/baselines", json={"name": "empty", "dataset": "empty-data:1"}
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "dataset"

    monitor = {
        "name": "bad-cron",
        "endpoint": served["endpoint"],
        "baseline": {"name": "marketing"},
        "cron": "every hour",
    }
    r = scientist.post(f"{base(tenant)}/monitoring/schedules", json=monitor)
    assert r.status_code == 422, r.text
    assert "cron" in r.json()["error"]["message"]
    assert "every hour" in r.json()["error"]["message"]

    r = scientist.post(
        f"{base(tenant)}/monitoring/schedules",
        json={**monitor, "cron": "0 * * * *", "rules": [{"metric": "nonsense", "threshold": 1}]},
    )
    assert r.status_code == 422 and "rules[0].metric" in r.json()["error"]["message"]
    r = scientist.post(
        f"{base(tenant)}/monitoring/schedules",
        json={**monitor, "cron": "0 * * * *", "endpoint": "nope"},
    )
    assert r.status_code == 404, r.text
    r = c["viewer"].post(
        f"{base(tenant)}/monitoring/schedules", json={**monitor, "cron": "0 * * * *"}
    )
    assert r.status_code == 403, r.text

    edited = scientist.get(
        f"{base(tenant)}/monitoring/baselines/marketing/versions/1/constraints"
    ).json()
    edited["features"]["f0"]["max"] = "high"
    r = scientist.put(
        f"{base(tenant)}/monitoring/baselines/marketing/versions/1/constraints", json=edited
    )
    assert r.status_code == 422 and "features.f0.max" in r.json()["error"]["message"]
