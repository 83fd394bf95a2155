"""The model registry and lineage through the SDK, against a real server.

One completed training job per module (the slow part) is registered into a fresh group by
each test, so the tests stay independent of one another.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from tests.conftest import Tenant, make_tenant
from tests.support.jobs import pack
from tests.support.servers import RunningServer

import shipyard

TRAIN = """
    import os, pathlib, pickle
    print("auc=0.81")
    pathlib.Path(os.environ["SM_MODEL_DIR"], "model.pkl").write_bytes(pickle.dumps({"w": 1}))
"""


@dataclass
class Setup:
    tenant: Tenant
    project: str
    sessions: dict[str, shipyard.Session]

    def models(self, role: str) -> shipyard.ModelRegistry:
        return self.sessions[role].models(self.project)

    def job(self, role: str = "scientist") -> shipyard.Job:
        return self.sessions[role].jobs(self.project).get("train-sdk")


@pytest.fixture(scope="module")
def setup(server: RunningServer) -> Iterator[Setup]:
    tenant = make_tenant(server, ("scientist", "lead", "admin", "viewer"))
    project = f"{tenant.team}/{tenant.project}"
    sessions = {
        role: shipyard.Session(url=server.url, api_key=key) for role, key in tenant.keys.items()
    }
    sci = sessions["scientist"]
    try:
        datasets = sci.datasets(project)
        datasets.create("marketing")
        store = sci.artifacts(project)
        store.put("data/marketing.csv", b"a,b\n1,2\n")
        datasets.register("marketing", "data/marketing.csv")
        store.put("src/train.tar.gz", pack({"train.py": TRAIN}))
        store.put("models/plain.pkl", pickle.dumps({"coef": [0.3]}))
        jobs = sci.jobs(project)
        jobs.submit(
            name="train-sdk",
            entry_point="train.py",
            source="src/train.tar.gz",
            inputs={"train": "dataset:marketing:1"},
            metric_definitions=[{"name": "auc", "regex": r"auc=([0-9.]+)"}],
        )
        jobs.wait("train-sdk", poll=0.1)
        yield Setup(tenant, project, sessions)
    finally:
        for session in sessions.values():
            session.close()


def test_job_register_creates_the_group_and_carries_the_lineage(setup: Setup) -> None:
    models = setup.models("scientist")
    with pytest.raises(shipyard.NotFound):
        models.group("churn-sdk")
    version = setup.job().register(group="churn-sdk", description="first cut")
    assert isinstance(version, shipyard.ModelVersion)
    assert (version.group, version.version) == ("churn-sdk", 1)
    assert version.status == "PendingManualApproval"
    assert version.job_name == "train-sdk" and version.run_id == setup.job().run_id
    assert version.metrics == {"auc": 0.81} and version.description == "first cut"
    assert [d["dataset"] for d in version.dataset_versions] == ["marketing"]
    assert version.scan["dangerous"] is False and version.created_at is not None
    assert version.registered_by == setup.tenant.users["scientist"]
    assert repr(version) == "<ModelVersion churn-sdk v1 PendingManualApproval>"
    with pytest.raises(AttributeError):
        version.status = "Approved"  # type: ignore[misc]

    again = setup.job().register(group="churn-sdk")  # the group exists now: just the next
    assert again.version == 2
    assert models.group("churn-sdk")["last_version"] == 2
    assert [v.version for v in models.versions("churn-sdk")] == [2, 1]
    assert "churn-sdk" in [g["name"] for g in models.groups()]


def test_approval_by_another_user_and_the_four_eyes_rule(setup: Setup) -> None:
    sci, lead, admin = (setup.models(r) for r in ("scientist", "lead", "admin"))
    mine = setup.job().register(group="gate-sdk")
    with pytest.raises(shipyard.PermissionDenied):
        mine.approve("scientists cannot approve")
    own = lead.register("gate-sdk", artifact_path="models/plain.pkl")
    with pytest.raises(shipyard.PermissionDenied) as denied:
        own.approve("my own work")
    assert "four-eyes" in str(denied.value) and denied.value.details["rule"] == "four-eyes"

    approved = lead.approve("gate-sdk", mine.version, "metrics and card reviewed")
    assert approved.status == "Approved"
    assert approved.decided_by == setup.tenant.users["lead"]
    assert approved.decision_comment == "metrics and card reviewed"
    assert mine.refresh().status == "Approved" and mine.decided_at is not None
    with pytest.raises(shipyard.Conflict):
        admin.reject("gate-sdk", mine.version, "too late")

    with pytest.raises(shipyard.ValidationFailed) as blank:
        admin.reject("gate-sdk", own.version, "  ")
    assert blank.value.field == "comment"
    rejected = admin.version("gate-sdk", own.version).reject("trained on a toy pickle")
    assert rejected.status == "Rejected"
    assert sci.version("gate-sdk", own.version).decision_comment == "trained on a toy pickle"


def test_the_card_is_edited_while_pending_and_frozen_after_approval(setup: Setup) -> None:
    sci, lead = setup.models("scientist"), setup.models("lead")
    version = sci.register("card-sdk", artifact_path="models/plain.pkl", create_group=True)
    card = version.edit_card(intended_use="rank customers for calls", risk_rating="low")
    assert (card["revision"], card["risk_rating"], card["frozen"]) == (2, "low", False)
    with pytest.raises(TypeError, match="unknown fields"):
        sci.edit_card("card-sdk", 1, intended_usage="typo")
    with pytest.raises(shipyard.Conflict):
        sci.edit_card("card-sdk", 1, caveats="stale", base_revision=1)
    assert sci.card("card-sdk", 1, revision=1)["intended_use"] == ""
    assert [c["revision"] for c in sci.card_revisions("card-sdk", 1)] == [1, 2]
    assert "rank customers for calls" in sci.card_markdown("card-sdk", 1)
    assert "<html" in sci.card_html("card-sdk", 1)

    lead.approve("card-sdk", 1, "ok")
    with pytest.raises(shipyard.Conflict) as frozen:
        version.edit_card(caveats="after the fact")
    assert "frozen" in str(frozen.value)
    assert version.card()["frozen"] is True
    assert version.verify()["verified"] is True


def test_the_dashboard_deletes_and_who_may_register(setup: Setup) -> None:
    sci, viewer = setup.models("scientist"), setup.models("viewer")
    sci.create_group("dash-sdk", description="for the dashboard", tags={"team": "growth"})
    with pytest.raises(shipyard.Conflict):
        sci.create_group("dash-sdk")
    for _ in range(3):
        sci.register("dash-sdk", artifact_path="models/plain.pkl")
    sci.delete("dash-sdk", 3)
    with pytest.raises(shipyard.NotFound):
        sci.version("dash-sdk", 3)
    with pytest.raises(shipyard.PermissionDenied):
        viewer.register("dash-sdk", artifact_path="models/plain.pkl")
    board = {g["name"]: g for g in viewer.dashboard()}
    dash = board["dash-sdk"]
    assert (dash["last_version"], dash["pending"], dash["latest_approved"]) == (3, 2, None)
    assert [v["version"] for v in dash["versions"]] == [2, 1]


def test_lineage_of_a_version_registered_from_the_job(setup: Setup) -> None:
    version = setup.job().register(group="lineage-sdk")
    viewer = setup.sessions["viewer"]
    graph = viewer.lineage(setup.project, version.entity)
    run = f"run:{version.run_id}"
    assert graph["root"] == "model:lineage-sdk:1"
    assert {(e["source"], e["relation"], e["target"]) for e in graph["edges"]} == {
        ("dataset:marketing:1", "input", "job:train-sdk"),
        ("job:train-sdk", "tracked as", run),
        (run, "registered as", "model:lineage-sdk:1"),
    }
    assert version.lineage() == graph
    from_dataset = viewer.lineage(setup.project, "dataset:marketing:1")
    assert "model:lineage-sdk:1" in {n["id"] for n in from_dataset["nodes"]}
    with pytest.raises(shipyard.ValidationFailed) as bad:
        viewer.lineage(setup.project, "model:lineage-sdk")
    assert bad.value.field == "entity"
    with pytest.raises(shipyard.NotFound):
        viewer.lineage(setup.project, "job:nosuch")
