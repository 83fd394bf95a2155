"""The registry through the real server: numbering under concurrency, scanning, the
four-eyes approval gate, and registering from a job with its lineage."""

from __future__ import annotations

import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from tests.conftest import Tenant, make_tenant
from tests.support.jobs import base, pack, submit, upload, wait_for
from tests.support.servers import RunningServer


def _benign_model() -> bytes:
    return pack({"model.pkl": pickle.dumps({"coef": [0.1, 0.2], "intercept": 0.3})})


class _Payload:
    """Unpickling this would run a shell command that leaves a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _group(client: httpx.Client, tenant: Tenant, name: str) -> None:
    r = client.post(f"{base(tenant)}/models", json={"name": name})
    assert r.status_code == 201, r.text


def _register(client: httpx.Client, tenant: Tenant, group: str, **body: Any) -> httpx.Response:
    return client.post(f"{base(tenant)}/models/{group}/versions", json=body)


def test_concurrent_registrations_get_unique_increasing_numbers(server: RunningServer) -> None:
    tenant = make_tenant(server, ("scientist",))
    with server.client(tenant.keys["scientist"]) as client:
        upload(client, tenant, "models/churn.tar.gz", _benign_model())
        _group(client, tenant, "churn")

        def register(_: int) -> int:
            with server.client(tenant.keys["scientist"]) as own:
                r = _register(own, tenant, "churn", artifact_path="models/churn.tar.gz")
                assert r.status_code == 201, r.text
                return int(r.json()["version"])

        with ThreadPoolExecutor(max_workers=8) as pool:
            numbers = list(pool.map(register, range(24)))
        assert sorted(numbers) == list(range(1, 25))
        listed = client.get(f"{base(tenant)}/models/churn/versions").json()
        assert [v["version"] for v in listed] == list(range(24, 0, -1))
        first = listed[-1]
        assert first["status"] == "PendingManualApproval"
        assert first["registered_by"] == tenant.users["scientist"]
        assert len(first["manifest_digest"]) == 64
        assert first["scan"]["dangerous"] is False
        assert client.get(f"{base(tenant)}/models/churn").json()["last_version"] == 24


def test_the_approval_gate(server: RunningServer) -> None:
    tenant = make_tenant(server, ("lead", "admin", "scientist"))
    lead, admin, scientist = (server.client(tenant.keys[r]) for r in ("lead", "admin", "scientist"))
    try:
        upload(lead, tenant, "models/m.tar.gz", _benign_model())
        _group(lead, tenant, "gate")
        assert _register(lead, tenant, "gate", artifact_path="models/m.tar.gz").status_code == 201
        url = f"{base(tenant)}/models/gate/versions/1"

        r = scientist.post(f"{url}/approve", json={"comment": "lgtm"})
        assert r.status_code == 403
        r = lead.post(f"{url}/approve", json={"comment": "my own"})
        assert r.status_code == 403
        assert "four-eyes" in r.json()["error"]["message"]
        r = admin.post(f"{url}/reject", json={"comment": "  "})
        assert r.status_code == 422 and r.json()["error"]["field"] == "comment"

        r = admin.post(f"{url}/approve", json={"comment": "reviewed the card"})
        assert r.status_code == 200, r.text
        approved = r.json()
        assert approved["status"] == "Approved"
        assert approved["decided_by"] == tenant.users["admin"]
        r = admin.post(f"{url}/reject", json={"comment": "changed my mind"})
        assert r.status_code == 409
        assert lead.get(url).json()["status"] == "Approved"
    finally:
        for client in (lead, admin, scientist):
            client.close()


def test_concurrent_decisions_leave_exactly_one_outcome(server: RunningServer) -> None:
    tenant = make_tenant(server, ("scientist", "lead", "admin"))
    with server.client(tenant.keys["scientist"]) as client:
        upload(client, tenant, "models/race.tar.gz", _benign_model())
        _group(client, tenant, "race")
        for _ in range(5):
            assert _register(client, tenant, "race", artifact_path="models/race.tar.gz").is_success

    def decide(args: tuple[int, str]) -> int:
        number, who = args
        verb = "approve" if who == "lead" else "reject"
        with server.client(tenant.keys[who]) as c:
            url = f"{base(tenant)}/models/race/versions/{number}/{verb}"
            return c.post(url, json={"comment": f"{who} says {verb}"}).status_code

    calls = [(n, who) for n in range(1, 6) for who in ("lead", "admin")]
    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(decide, calls))
    with server.client(tenant.keys["lead"]) as client:
        for number in range(1, 6):
            pair = [codes[i] for i, (n, _) in enumerate(calls) if n == number]
            assert sorted(pair) == [200, 409], (number, pair)
            status = client.get(f"{base(tenant)}/models/race/versions/{number}").json()["status"]
            assert status in ("Approved", "Rejected")


def test_a_malicious_pickle_is_blocked_and_never_runs(
    server: RunningServer, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    tenant = make_tenant(server, ("scientist", "lead"))
    evil = pack({"model.pkl": pickle.dumps(_Payload(marker))})
    with server.client(tenant.keys["scientist"]) as client:
        upload(client, tenant, "models/evil.tar.gz", evil)
        _group(client, tenant, "evil")
        r = _register(client, tenant, "evil", artifact_path="models/evil.tar.gz")
        assert r.status_code == 201, r.text
        version = r.json()
        assert version["status"] == "Blocked"
        assert version["scan"]["dangerous"] is True
        assert any("model.pkl" in f["path"] for f in version["scan"]["findings"])
    with server.client(tenant.keys["lead"]) as lead:
        r = lead.post(f"{base(tenant)}/models/evil/versions/1/approve", json={"comment": "ok"})
        assert r.status_code == 409
        assert "Blocked" in r.json()["error"]["message"]
    assert not marker.exists()


def test_sources_outside_the_project_are_not_found(server: RunningServer) -> None:
    mine, theirs = make_tenant(server, ("scientist",)), make_tenant(server, ("scientist",))
    with server.client(theirs.keys["scientist"]) as other:
        upload(other, theirs, "models/secret.tar.gz", _benign_model())
    with server.client(mine.keys["scientist"]) as client:
        _group(client, mine, "probe")
        r = _register(client, mine, "probe", artifact_path="models/secret.tar.gz")
        assert r.status_code == 404 and r.json()["error"]["field"] == "artifact_path"
        r = _register(client, mine, "probe", artifact_path="../x", run_id=None)
        assert r.status_code in (400, 404)
        r = _register(client, mine, "nosuch", artifact_path="models/secret.tar.gz")
        assert r.status_code == 404 and r.json()["error"]["field"] == "group"
        r = _register(client, mine, "probe")
        assert r.status_code == 422


TRAIN = """
    import os, pathlib, pickle
    rows = pathlib.Path(os.environ["SM_CHANNEL_TRAIN"]).glob("*")
    print("auc=0.87")
    pathlib.Path(os.environ["SM_MODEL_DIR"], "model.pkl").write_bytes(pickle.dumps({"w": 1}))
"""


def test_registering_from_a_job_carries_its_lineage(server: RunningServer) -> None:
    tenant = make_tenant(server, ("scientist",))
    with server.client(tenant.keys["scientist"]) as client:
        r = client.put(f"{base(tenant)}/datasets/marketing/versions", content=b"a,b\n1,2\n")
        assert r.status_code == 201
        upload(client, tenant, "src/t.tar.gz", pack({"train.py": TRAIN}))
        submit(
            client,
            tenant,
            name="train-churn",
            entry_point="train.py",
            source="src/t.tar.gz",
            inputs={"train": "dataset:marketing:1"},
            metric_definitions=[{"name": "auc", "regex": r"auc=([0-9.]+)"}],
        )
        done = wait_for(client, tenant, "train-churn")
        assert done["status"] == "Completed", done["reason"]
        _group(client, tenant, "churn")
        r = _register(client, tenant, "churn", job="train-churn", flavor="sklearn")
        assert r.status_code == 201, r.text
        version = r.json()
        assert version["job_name"] == "train-churn"
        assert version["run_id"] == done["run_id"]
        assert version["metrics"] == {"auc": 0.87}
        assert [d["dataset"] for d in version["dataset_versions"]] == ["marketing"]
        assert version["artifact_path"] == "jobs/train-churn/model.tar.gz"
