"""The stock ``mlflow`` client against a real Shipyard server, as a user would point it.

``MLFLOW_TRACKING_URI`` is the server, ``MLFLOW_TRACKING_TOKEN`` a Shipyard API key scoped to
one project; everything the client does lands in that project and is visible through the
native API. Status codes and error bodies are checked with httpx, since the client turns them
into exceptions. Tests share one experiment per backend and name their own objects, so they
run in any order. They use a team of their own rather than the session's shared ``tenant``:
the security suite asserts that every audit entry of that team names it in its path, and
MLflow's routes carry the run in the body, not the path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus, Metric, Param, RunTag
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking.request_header.abstract_request_header_provider import (
    RequestHeaderProvider,
)
from mlflow.tracking.request_header.registry import _request_header_provider_registry
from sklearn.linear_model import LogisticRegression
from tests.conftest import Tenant, make_tenant, unique
from tests.support.servers import RunningServer

V1 = "/api/v1"
MLFLOW = "/api/2.0/mlflow"


@dataclass(frozen=True)
class Project:
    """The shared tenant's project, keys scoped to it, and an experiment the tests share."""

    server: RunningServer
    tenant: Tenant
    writer: str
    viewer: str
    experiment_id: str

    @property
    def label(self) -> str:
        return f"{self.tenant.team}/{self.tenant.project}"

    @property
    def native(self) -> str:
        return f"{V1}/projects/{self.tenant.team}/{self.tenant.project}"


def project_key(server: RunningServer, project: str, role: str) -> str:
    with server.admin() as admin:
        r = admin.post(V1 + "/keys", json={"project": project, "role": role, "name": role})
        assert r.status_code == 201, r.text
        return str(r.json()["api_key"])


@pytest.fixture(scope="module")
def project(server: RunningServer) -> Project:
    tenant = make_tenant(server, roles=("lead", "scientist"))
    label = f"{tenant.team}/{tenant.project}"
    writer = project_key(server, label, "scientist")
    with server.client(writer) as c:
        r = c.post(MLFLOW + "/experiments/create", json={"name": unique("mlflow-shared-")})
        assert r.status_code == 200, r.text
    return Project(
        server, tenant, writer, project_key(server, label, "viewer"), r.json()["experiment_id"]
    )


@pytest.fixture
def client(project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowClient]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", project.server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", project.writer)
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(project.server.url)
    yield MlflowClient()
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None restores the default


def as_key(monkeypatch: pytest.MonkeyPatch, token: str) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    return MlflowClient()


def error_code(excinfo: pytest.ExceptionInfo[MlflowException]) -> str:
    return str(excinfo.value.error_code)


# --- experiments ---------------------------------------------------------------------------


def test_experiments_are_created_found_and_searched(client: MlflowClient) -> None:
    name = unique("mlflow-exp-")
    experiment_id = client.create_experiment(name, tags={"owner": "ml"})
    found = client.get_experiment(experiment_id)
    assert (found.name, found.tags, found.lifecycle_stage) == (name, {"owner": "ml"}, "active")
    by_name = client.get_experiment_by_name(name)
    assert by_name is not None and by_name.experiment_id == experiment_id
    assert client.get_experiment_by_name(unique("absent-")) is None
    searched = client.search_experiments(filter_string=f"name = '{name}'")
    assert [e.experiment_id for e in searched] == [experiment_id]
    with pytest.raises(RestException) as excinfo:
        client.create_experiment(name)
    assert error_code(excinfo) == "RESOURCE_ALREADY_EXISTS"
    assert client.get_experiment("0").name == "Default"


def test_the_default_experiment_is_the_projects_default(
    client: MlflowClient, project: Project
) -> None:
    run = client.create_run("0")
    assert run.info.experiment_id == "0"
    with project.server.client(project.writer) as c:
        native = c.get(f"{project.native}/runs/{run.info.run_id}").json()
    assert native["experiment"] == "Default"


# --- runs, params, metrics, tags -------------------------------------------------------------


def test_a_run_round_trips_and_the_native_api_sees_it(
    client: MlflowClient, project: Project
) -> None:
    run = client.create_run(project.experiment_id, run_name="baseline", tags={"stage": "dev"})
    run_id = run.info.run_id
    assert run.info.artifact_uri == f"mlflow-artifacts:/runs/{run_id}/artifacts"
    client.log_param(run_id, "C", "0.5")
    client.set_tag(run_id, "team", "search")
    for step in range(3):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
    client.log_batch(
        run_id,
        metrics=[Metric("acc", 0.9, 1_700_000_000_000, 2)],
        params=[Param("penalty", "l2")],
        tags=[RunTag("note", "batch")],
    )
    client.set_terminated(run_id)

    got = client.get_run(run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "baseline"
    assert got.data.params == {"C": "0.5", "penalty": "l2"}
    assert {"stage": "dev", "team": "search", "note": "batch"}.items() <= got.data.tags.items()
    assert got.data.metrics == {"loss": pytest.approx(1 / 3), "acc": 0.9}
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]

    with project.server.client(project.viewer) as c:
        native = c.get(f"{project.native}/runs/{run_id}").json()
    assert native["status"] == "FINISHED" and native["name"] == "baseline"
    assert native["params"] == {"C": "0.5", "penalty": "l2"}
    assert native["metrics"]["acc"] == {"value": 0.9, "step": 2, "timestamp": 1_700_000_000_000}

    with pytest.raises(RestException) as excinfo:
        client.log_metric(run_id, "loss", 0.1, step=3)
    assert error_code(excinfo) == "INVALID_STATE"


def test_non_finite_values_round_trip(client: MlflowClient, project: Project) -> None:
    run_id = client.create_run(project.experiment_id).info.run_id
    values = [math.nan, math.inf, -math.inf, 0.25]
    client.log_batch(run_id, metrics=[Metric("odd", v, 1, i) for i, v in enumerate(values)])
    client.log_metric(run_id, "last", math.nan, step=0)
    history = [m.value for m in client.get_metric_history(run_id, "odd")]
    assert math.isnan(history[0]) and history[1:] == [math.inf, -math.inf, 0.25]
    assert math.isnan(client.get_run(run_id).data.metrics["last"])


def test_search_runs_filters_and_orders(client: MlflowClient) -> None:
    experiment_id = client.create_experiment(unique("mlflow-search-"))
    scores = {"a": 0.91, "b": 0.42, "c": 0.77, "d": 0.15, "e": 0.88}
    ids = {}
    for name, score in scores.items():
        run_id = client.create_run(experiment_id, run_name=name).info.run_id
        kind = "tree" if name in "ace" else "linear"
        client.log_batch(run_id, metrics=[Metric("auc", score, 1, 0)], params=[Param("kind", kind)])
        ids[name] = run_id
    found = client.search_runs(
        [experiment_id],
        "metrics.auc > 0.5 and params.kind = 'tree'",
        order_by=["metrics.auc DESC"],
    )
    assert [r.info.run_name for r in found] == ["a", "e", "c"]
    page = client.search_runs([experiment_id], order_by=["metrics.auc ASC"], max_results=2)
    rest = client.search_runs(
        [experiment_id], order_by=["metrics.auc ASC"], max_results=2, page_token=page.token
    )
    assert [r.info.run_name for r in page + rest] == ["d", "b", "c", "e"]
    by_name = client.search_runs([experiment_id], "tags.`mlflow.runName` = 'b'")
    assert [r.info.run_id for r in by_name] == [ids["b"]]
    with pytest.raises(RestException) as excinfo:
        client.search_runs([experiment_id], "metrics.auc >")
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"


def test_a_deleted_run_refuses_data_until_restored(client: MlflowClient, project: Project) -> None:
    run_id = client.create_run(project.experiment_id).info.run_id
    client.delete_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(RestException) as excinfo:
        client.log_metric(run_id, "x", 1.0)
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"
    client.restore_run(run_id)
    client.log_metric(run_id, "x", 1.0)


# --- artifacts and models --------------------------------------------------------------------


def test_artifacts_round_trip_byte_exact(
    client: MlflowClient, project: Project, tmp_path: Path
) -> None:
    run_id = client.create_run(project.experiment_id).info.run_id
    payload = os.urandom(300_000)
    (tmp_path / "up" / "plots").mkdir(parents=True)
    (tmp_path / "up" / "weights.bin").write_bytes(payload)
    (tmp_path / "up" / "plots" / "roc.txt").write_text("curve")
    client.log_artifacts(run_id, str(tmp_path / "up"), "outputs")
    listed = client.list_artifacts(run_id, "outputs")
    assert [(f.path, f.is_dir) for f in listed] == [
        ("outputs/plots", True),
        ("outputs/weights.bin", False),
    ]
    assert listed[1].file_size == len(payload)
    local = Path(client.download_artifacts(run_id, "outputs", str(tmp_path / "down")))
    assert (local / "weights.bin").read_bytes() == payload
    assert (local / "plots" / "roc.txt").read_text() == "curve"
    with project.server.client(project.viewer) as c:
        native = c.get(f"{project.native}/artifacts/runs/{run_id}/artifacts/outputs/weights.bin")
    assert native.status_code == 200 and native.content == payload


def test_sklearn_log_model_then_load_model_predicts_the_same(
    client: MlflowClient, project: Project
) -> None:
    features = np.array([[0.0, 1.0], [1.0, 0.5], [2.0, 0.0], [3.0, 1.5], [4.0, 0.2], [5.0, 1.0]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    model = LogisticRegression().fit(features, labels)
    # By id, not ``mlflow.set_experiment``: that also exports MLFLOW_EXPERIMENT_ID into
    # os.environ, which would follow every later subprocess of the test session.
    with mlflow.start_run(experiment_id=project.experiment_id) as run:
        # Named requirements: else MLflow infers them by loading the model in a subprocess
        # (seconds of CPU, and not what this test is about).
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    for uri in (info.model_uri, f"runs:/{run.info.run_id}/model"):
        loaded = mlflow.sklearn.load_model(uri)
        assert (loaded.predict(features) == model.predict(features)).all()
    logged = client.get_logged_model(info.model_id)
    assert logged.source_run_id == run.info.run_id
    assert logged.status == LoggedModelStatus.READY
    with project.server.client(project.viewer) as c:
        stored = c.get(f"{project.native}/artifacts", params={"prefix": f"models/{info.model_id}/"})
    assert f"models/{info.model_id}/artifacts/MLmodel" in [a["path"] for a in stored.json()]


# --- authentication, authorisation, scoping ---------------------------------------------------


def _http(project: Project, token: str | None, **headers: str) -> httpx.Client:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=project.server.url, headers={**auth, **headers}, timeout=60)


def _post(project: Project, token: str | None, path: str, body: dict[str, Any]) -> httpx.Response:
    with project.server.client(token) as c:
        return c.post(MLFLOW + path, json=body)


def test_requests_without_a_valid_token_get_401(project: Project) -> None:
    for token in (None, "shpk_NOPE_secret"):
        r = _post(project, token, "/runs/search", {"experiment_ids": [project.experiment_id]})
        assert r.status_code == 401
        assert r.json()["error_code"] == "UNAUTHENTICATED" and r.json()["message"]
    with project.server.client() as anonymous:
        r = anonymous.get("/api/2.0/mlflow-artifacts/artifacts", params={"path": "runs"})
    assert r.status_code == 401


def test_a_viewer_reads_but_cannot_write(
    client: MlflowClient, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = client.create_run(project.experiment_id).info.run_id
    client.log_metric(run_id, "loss", 0.5)
    viewer = as_key(monkeypatch, project.viewer)
    assert viewer.get_run(run_id).data.metrics == {"loss": 0.5}
    with pytest.raises(RestException) as excinfo:
        viewer.log_metric(run_id, "loss", 0.4)
    assert error_code(excinfo) == "PERMISSION_DENIED"
    body = {"run_id": run_id, "key": "loss", "value": 0.4, "timestamp": 1, "step": 1}
    assert _post(project, project.viewer, "/runs/log-metric", body).status_code == 403
    with project.server.client(project.viewer) as c:
        put = c.put(
            f"/api/2.0/mlflow-artifacts/artifacts/runs/{run_id}/artifacts/x.txt", content=b"x"
        )
    assert put.status_code == 403


def test_another_teams_key_cannot_see_the_runs(
    client: MlflowClient, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = client.create_run(project.experiment_id).info.run_id
    other = make_tenant(project.server, roles=("lead",))
    outsider = project_key(project.server, f"{other.team}/{other.project}", "lead")
    with pytest.raises(RestException) as excinfo:
        as_key(monkeypatch, outsider).get_run(run_id)
    assert error_code(excinfo) == "RESOURCE_DOES_NOT_EXIST"
    with _http(project, outsider, **{"X-Shipyard-Project": project.label}) as c:
        r = c.get(MLFLOW + "/runs/get", params={"run_id": run_id})
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_a_team_key_names_its_project_in_a_header(
    client: MlflowClient, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    team_key = project.tenant.keys["scientist"]
    body = {"experiment_ids": [project.experiment_id]}
    missing = _post(project, team_key, "/runs/search", body)
    assert missing.status_code == 400 and "X-Shipyard-Project" in missing.json()["message"]
    with _http(project, team_key, **{"X-Shipyard-Project": "no-slash"}) as c:
        malformed = c.post(MLFLOW + "/runs/search", json=body)
    assert malformed.status_code == 400 and "X-Shipyard-Project" in malformed.json()["message"]

    class ProjectHeader(RequestHeaderProvider):
        def in_context(self) -> bool:
            return True

        def request_headers(self) -> dict[str, str]:
            return {"X-Shipyard-Project": project.label}

    registry = _request_header_provider_registry
    monkeypatch.setattr(registry, "_registry", [*registry._registry, ProjectHeader()])
    with_header = as_key(monkeypatch, team_key)
    run_id = with_header.create_run(project.experiment_id).info.run_id
    with_header.log_metric(run_id, "loss", 0.3)
    assert client.get_run(run_id).data.metrics == {"loss": 0.3}


# --- errors ------------------------------------------------------------------------------------


def test_unknown_runs_and_routes_answer_in_mlflows_shape(
    client: MlflowClient, project: Project
) -> None:
    with pytest.raises(RestException) as excinfo:
        client.get_run("0" * 32)
    assert error_code(excinfo) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(RestException) as excinfo:
        client.log_metric("f" * 32, "loss", 1.0)
    assert error_code(excinfo) == "RESOURCE_DOES_NOT_EXIST"
    with project.server.client(project.writer) as c:
        r = c.get(MLFLOW + "/no-such-endpoint")
    assert r.status_code == 404 and r.json()["error_code"] == "ENDPOINT_NOT_FOUND"


def test_a_batch_over_10000_items_is_413(client: MlflowClient, project: Project) -> None:
    run_id = client.create_run(project.experiment_id).info.run_id
    metrics = [{"key": "m", "value": 1.0, "timestamp": 1, "step": i} for i in range(10_001)]
    r = _post(project, project.writer, "/runs/log-batch", {"run_id": run_id, "metrics": metrics})
    assert r.status_code == 413
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE" and "10000" in r.json()["message"]
    assert client.get_metric_history(run_id, "m") == []


# --- audit -------------------------------------------------------------------------------------


def test_mlflow_writes_are_audited_under_the_team(client: MlflowClient, project: Project) -> None:
    run_id = client.create_run(project.experiment_id).info.run_id
    request_id = unique("mlflow-audit-")
    body = {"run_id": run_id, "key": "loss", "value": 0.2, "timestamp": 1, "step": 0}
    with _http(project, project.writer, **{"X-Request-Id": request_id}) as c:
        assert c.post(MLFLOW + "/runs/log-metric", json=body).status_code == 200
    with project.server.client(project.tenant.keys["lead"]) as lead:  # sees its teams' entries
        entries = lead.get(V1 + "/audit", params={"n": 200}).json()
    [entry] = [e for e in entries if e["request_id"] == request_id]
    assert entry["action"] == "POST /api/2.0/mlflow/runs/log-metric"
    assert entry["outcome"] == "ok" and entry["status_code"] == 200
    assert "POST /api/2.0/mlflow/runs/create" in {e["action"] for e in entries}
