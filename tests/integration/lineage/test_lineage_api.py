"""Lineage through the real server: dataset version → job → run → model version, walked from
each of the four entities, plus a job-less run and a version from a plain artifact.

One module-scoped chain (one completed training job) serves every test: the job is the slow
part, and no test changes the chain.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant, make_tenant
from tests.support.jobs import base, pack, submit, upload, wait_for
from tests.support.servers import RunningServer

TRAIN = """
    import os, pathlib, pickle
    print("auc=0.81")
    pathlib.Path(os.environ["SM_MODEL_DIR"], "model.pkl").write_bytes(pickle.dumps({"w": 1}))
"""
MODEL = pickle.dumps({"coef": [0.1]})


@dataclass
class Chain:
    tenant: Tenant
    run_id: str  # the job's run
    notebook_run: str  # a run no job ran, which read the same dataset version


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.is_success, response.text
    return dict(response.json())


@pytest.fixture(scope="module")
def chain(server: RunningServer) -> Chain:
    """marketing v1 → job train-churn → its run → churn v1; plain artifact → churn v2;
    marketing v1 → notebook run → churn v3."""
    tenant = make_tenant(server, ("scientist", "viewer"))
    with server.client(tenant.keys["scientist"]) as c:
        _ok(c.put(f"{base(tenant)}/datasets/marketing/versions", content=b"a,b\n1,2\n"))
        upload(c, tenant, "src/train.tar.gz", pack({"train.py": TRAIN}))
        submit(
            c,
            tenant,
            name="train-churn",
            entry_point="train.py",
            source="src/train.tar.gz",
            inputs={"train": "dataset:marketing:1"},
            metric_definitions=[{"name": "auc", "regex": r"auc=([0-9.]+)"}],
        )
        _ok(c.post(f"{base(tenant)}/models", json={"name": "churn"}))
        upload(c, tenant, "models/plain.pkl", MODEL)
        run = _ok(c.post(f"{base(tenant)}/runs", json={"experiment": "notebooks"}))
        body = {"dataset": "marketing", "version": 1, "context": "training"}
        c.post(f"{base(tenant)}/runs/{run['id']}/inputs", json=body).raise_for_status()
        upload(c, tenant, f"runs/{run['id']}/artifacts/model.pkl", MODEL)
        done = wait_for(c, tenant, "train-churn")
        assert done["status"] == "Completed", done["reason"]
        versions = f"{base(tenant)}/models/churn/versions"
        assert _ok(c.post(versions, json={"job": "train-churn"}))["version"] == 1
        assert _ok(c.post(versions, json={"artifact_path": "models/plain.pkl"}))["version"] == 2
        from_run = {"run_id": run["id"], "artifact_path": "model.pkl"}
        assert _ok(c.post(versions, json=from_run))["version"] == 3
    return Chain(tenant, done["run_id"], run["id"])


def _lineage(
    server: RunningServer, tenant: Tenant, entity: str, role: str = "viewer"
) -> httpx.Response:
    with server.client(tenant.keys[role]) as c:
        return c.get(f"{base(tenant)}/lineage", params={"entity": entity})


def _graph(server: RunningServer, chain: Chain, entity: str) -> dict[str, Any]:
    response = _lineage(server, chain.tenant, entity)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _edges(graph: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(e["source"], e["target"], e["relation"]) for e in graph["edges"]}


def _nodes(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in graph["nodes"]}


def _job_chain(chain: Chain) -> set[tuple[str, str, str]]:
    run = f"run:{chain.run_id}"
    return {
        ("dataset:marketing:1", "job:train-churn", "input"),
        ("job:train-churn", run, "tracked as"),
        (run, "model:churn:1", "registered as"),
    }


def test_from_the_model_version_the_chain_goes_up_to_the_dataset(
    server: RunningServer, chain: Chain
) -> None:
    graph = _graph(server, chain, "model:churn:1")
    assert graph["root"] == "model:churn:1" and graph["truncated"] is False
    assert _edges(graph) == _job_chain(chain)
    nodes = _nodes(graph)
    assert graph["nodes"][0]["id"] == "model:churn:1"
    model, job = nodes["model:churn:1"], nodes["job:train-churn"]
    assert model["kind"] == "model" and model["label"] == "churn v1"
    assert model["attributes"]["status"] == "PendingManualApproval"
    assert model["attributes"]["job_name"] == "train-churn"
    assert model["attributes"]["created_at"]
    assert job["attributes"]["status"] == "Completed"
    assert nodes[f"run:{chain.run_id}"]["attributes"]["status"] == "FINISHED"
    assert nodes[f"run:{chain.run_id}"]["attributes"]["job"] == "train-churn"
    dataset = nodes["dataset:marketing:1"]
    assert dataset["label"] == "marketing v1" and len(dataset["attributes"]["digest"]) == 64


def test_from_the_dataset_version_everything_made_from_it_is_downstream(
    server: RunningServer, chain: Chain
) -> None:
    graph = _graph(server, chain, "dataset:marketing:1")
    notebook = f"run:{chain.notebook_run}"
    assert _edges(graph) == _job_chain(chain) | {
        ("dataset:marketing:1", notebook, "input"),  # a run no job ran reads it directly
        (notebook, "model:churn:3", "registered as"),
    }
    assert "model:churn:2" not in _nodes(graph)  # the plain artifact owes it nothing


@pytest.mark.parametrize("entity", ["job:train-churn", "run"])
def test_from_the_job_or_its_run_both_ways_but_no_siblings(
    server: RunningServer, chain: Chain, entity: str
) -> None:
    root = f"run:{chain.run_id}" if entity == "run" else entity
    graph = _graph(server, chain, root)
    assert graph["root"] == root
    assert _edges(graph) == _job_chain(chain)
    # The notebook run read the same dataset, but it is a sibling, not an ancestor.
    assert f"run:{chain.notebook_run}" not in _nodes(graph)


def test_a_version_from_a_plain_artifact_has_no_lineage(
    server: RunningServer, chain: Chain
) -> None:
    graph = _graph(server, chain, "model:churn:02")  # numbers are read as numbers
    assert graph["root"] == "model:churn:2"
    assert [n["id"] for n in graph["nodes"]] == ["model:churn:2"] and graph["edges"] == []


@pytest.mark.parametrize(
    "entity",
    ["churn", "model:churn", "model:churn:x", "model:churn:0", "model:churn:1:2", "table:x:1", ""],
)
def test_a_malformed_entity_is_a_422_naming_it(
    server: RunningServer, chain: Chain, entity: str
) -> None:
    r = _lineage(server, chain.tenant, entity)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "entity"


@pytest.mark.parametrize(
    "entity",
    ["model:churn:99", "model:nosuch:1", "job:nosuch", "run:0123abcd", "dataset:marketing:9"],
)
def test_an_unknown_entity_is_a_404(server: RunningServer, chain: Chain, entity: str) -> None:
    r = _lineage(server, chain.tenant, entity)
    assert r.status_code == 404, r.text


def test_another_teams_project_is_not_found(server: RunningServer, chain: Chain) -> None:
    stranger = make_tenant(server, ("lead",))
    with server.client(stranger.keys["lead"]) as c:
        r = c.get(f"{base(chain.tenant)}/lineage", params={"entity": "model:churn:1"})
    assert r.status_code == 404, r.text
    with server.client() as anonymous:
        r = anonymous.get(f"{base(chain.tenant)}/lineage", params={"entity": "model:churn:1"})
    assert r.status_code == 401
