"""Batch transform through the API, the job controller and a real job process: the output is
the model's own predictions, line for line; what may not run is refused with the right status.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from tests.conftest import Tenant, make_tenant, role_clients, unique
from tests.support.cli import cli_env, ok_json, run_cli
from tests.support.endpoints import FEATURES, register, sklearn_model, tamper
from tests.support.jobs import base, logs, upload
from tests.support.servers import RunningServer

import shipyard

TERMINAL = {"Completed", "Failed", "Stopped"}


@pytest.fixture(scope="module")
def tenant(server: RunningServer) -> Tenant:
    return make_tenant(server, ("scientist", "viewer"))


@pytest.fixture(scope="module")
def c(server: RunningServer, tenant: Tenant) -> Iterator[dict[str, httpx.Client]]:
    with role_clients(server, tenant) as made:
        yield made


def _weights(seed: int) -> Any:
    """The model inside ``sklearn_model(seed)``, to compute the expected predictions."""
    with tarfile.open(fileobj=io.BytesIO(sklearn_model(seed)), mode="r:gz") as tar:
        member = tar.extractfile("model.joblib")
        assert member is not None
        return joblib.load(io.BytesIO(member.read()))


def _csv(rows: np.ndarray[Any, Any], header: bool = False) -> bytes:
    head = ",".join(f"x{i}" for i in range(FEATURES)) + "\n" if header else ""
    return (head + "".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows)).encode()


def _create(client: httpx.Client, tenant: Tenant, **body: Any) -> httpx.Response:
    return client.post(f"{base(tenant)}/transform-jobs", json=body)


def _wait(client: httpx.Client, tenant: Tenant, name: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"{base(tenant)}/transform-jobs/{name}")
        assert r.status_code == 200, r.text
        if r.json()["status"] in TERMINAL or time.monotonic() > deadline:
            return dict(r.json())
        time.sleep(0.2)


def _download(client: httpx.Client, tenant: Tenant, stored: str) -> str:
    path, _, version = stored.rpartition("@")
    r = client.get(f"{base(tenant)}/artifacts/{path}", params={"version": version})
    assert r.status_code == 200, r.text
    return r.text


def test_a_dataset_is_scored_like_the_model_would(
    c: dict[str, httpx.Client], tenant: Tenant
) -> None:
    group = unique("score")
    version = register(c["scientist"], tenant, group, sklearn_model(3))
    rows = np.random.default_rng(5).normal(size=(23, FEATURES))
    dataset = unique("to-score")
    url = f"{base(tenant)}/datasets/{dataset}/versions"
    r = c["scientist"].put(url, content=_csv(rows, header=True), params={"format": "csv"})
    assert r.status_code == 201, r.text
    name = unique("tr-")

    r = _create(
        c["scientist"],
        tenant,
        name=name,
        model={"group": group, "version": version},
        input=f"dataset:{dataset}:1",
        skip_header=True,
        max_payload_records=5,
    )
    assert r.status_code == 201, r.text
    assert (
        r.json()["status"] == "Pending" and r.json()["output_path"] == f"transform/{name}/output/"
    )
    done = _wait(c["viewer"], tenant, name)

    assert done["status"] == "Completed", done["reason"]
    [stored] = done["outputs"]
    assert stored.startswith(f"transform/{name}/output/") and ".csv.out@" in stored
    predicted = [int(line) for line in _download(c["viewer"], tenant, stored).splitlines()]
    assert predicted == _weights(3).predict(rows).tolist()
    # it is a job of the project: its log shows the progress, lineage and listing know it
    assert "transform: 23/23 records (100%)" in logs(c["viewer"], tenant, name)
    job = c["viewer"].get(f"{base(tenant)}/jobs/{name}").json()
    assert job["kind"] == "transform" and job["spec"]["inputs"]["data"] == f"dataset:{dataset}:1"
    listed = c["viewer"].get(f"{base(tenant)}/transform-jobs").json()
    assert name in [t["name"] for t in listed]
    graph = c["viewer"].get(f"{base(tenant)}/lineage", params={"entity": f"dataset:{dataset}:1"})
    assert f"job:{name}" in {node["id"] for node in graph.json()["nodes"]}


def test_the_sdk_shares_a_prefix_among_instances(
    server: RunningServer, c: dict[str, httpx.Client], tenant: Tenant, tmp_path: Path
) -> None:
    group = unique("shard")
    version = register(c["scientist"], tenant, group, sklearn_model(4))
    rows = np.random.default_rng(6).normal(size=(6, FEATURES))
    prefix = f"inputs/{unique('batch')}"
    for i in range(3):
        lines = "".join(
            json.dumps({"features": r.tolist()}) + "\n" for r in rows[2 * i : 2 * i + 2]
        )
        upload(c["scientist"], tenant, f"{prefix}/part-{i}.jsonl", lines.encode())

    with shipyard.Session(server.url, tenant.keys["scientist"]) as session:
        job = session.transformer(f"{tenant.team}/{tenant.project}").transform(
            prefix,
            model=(group, version),
            content_type="application/jsonlines",
            instance_count=2,
            wait=True,
            timeout=90,
        )
        files = job.download(tmp_path / "scores")
        assert any("transform: done:" in line for line in job.logs())

    assert job.status == "Completed" and job.output_path == f"transform/{job.name}/output/"
    assert sorted(f.relative_to(tmp_path / "scores").as_posix() for f in files) == [
        "algo-1/part-0.jsonl.out",
        "algo-1/part-2.jsonl.out",
        "algo-2/part-1.jsonl.out",
    ]
    got = [
        json.loads(line)
        for path in sorted(files, key=lambda f: f.name)
        for line in path.read_text().splitlines()
    ]
    assert got == _weights(4).predict(rows).tolist()


class _Payload:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("true",))


def test_what_may_not_run_is_refused(c: dict[str, httpx.Client], tenant: Tenant) -> None:
    group = unique("refuse")
    version = register(c["scientist"], tenant, group, sklearn_model())
    upload(c["scientist"], tenant, "inputs/refuse.csv", b"1,2,3\n")
    ok = {"model": {"group": group, "version": version}, "input": "inputs/refuse.csv"}

    r = _create(c["scientist"], tenant, name=unique("tr-"), **{**ok, "split_type": "Lines"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "split_type", r.text
    r = _create(
        c["scientist"], tenant, name=unique("tr-"), **ok, split_type="None", skip_header=True
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "skip_header", r.text
    r = _create(c["scientist"], tenant, name=unique("tr-"), **{**ok, "input": "inputs/nope.csv"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "input", r.text
    unknown = {**ok, "model": {"group": group, "version": version + 5}}
    assert _create(c["scientist"], tenant, name=unique("tr-"), **unknown).status_code == 404
    no_group = {**ok, "model": {"group": unique("nogroup"), "version": 1}}
    assert _create(c["scientist"], tenant, name=unique("tr-"), **no_group).status_code == 404
    assert _create(c["viewer"], tenant, name=unique("tr-"), **ok).status_code == 403

    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        data = pickle.dumps(_Payload())
        info = tarfile.TarInfo("model.pkl")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    blocked = register(c["scientist"], tenant, group, evil.getvalue())
    r = _create(
        c["scientist"],
        tenant,
        name=unique("tr-"),
        **{**ok, "model": {"group": group, "version": blocked}},
    )
    assert r.status_code == 409, r.text
    assert "Blocked" in r.json()["error"]["message"]
    assert r.json()["error"]["field"] == "model.version"


def test_a_tampered_artifact_is_refused_naming_the_file(
    server: RunningServer, c: dict[str, httpx.Client], tenant: Tenant
) -> None:
    group = unique("tamper")
    path = f"models/{group}.tar.gz"
    upload(c["scientist"], tenant, path, sklearn_model(1))
    c["scientist"].post(f"{base(tenant)}/models", json={"name": group})
    r = c["scientist"].post(f"{base(tenant)}/models/{group}/versions", json={"artifact_path": path})
    assert r.status_code == 201, r.text
    upload(c["scientist"], tenant, path, sklearn_model(7))
    tamper(server, path)
    upload(c["scientist"], tenant, "inputs/tamper.csv", b"1,2,3\n")

    body = {"model": {"group": group, "version": 1}, "input": "inputs/tamper.csv"}
    r = _create(c["scientist"], tenant, name=unique("tr-"), **body)

    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "verification_failed"
    assert "model.joblib" in r.json()["error"]["message"]


def test_the_cli_creates_waits_and_names_a_rejected_line(
    server: RunningServer, c: dict[str, httpx.Client], tenant: Tenant, tmp_path: Path
) -> None:
    group = unique("cli")
    version = register(c["scientist"], tenant, group, sklearn_model(2))
    rows = np.random.default_rng(8).normal(size=(4, FEATURES))
    upload(c["scientist"], tenant, "inputs/cli.csv", _csv(rows))
    upload(c["scientist"], tenant, "inputs/cli-bad.csv", _csv(rows) + b"1,2,x\n")
    env = cli_env(tmp_path, SHIPYARD_URL=server.url, SHIPYARD_API_KEY=tenant.keys["scientist"])
    project = f"{tenant.team}/{tenant.project}"
    name = unique("tr-")
    create = ("transform", "create", "-p", project, "--model", f"{group}:{version}")

    done = ok_json(run_cli(env, *create, name, "--input", "inputs/cli.csv", "--wait", "--json"))

    assert done["status"] == "Completed" and done["model"] == {"group": group, "version": version}
    [stored] = done["outputs"]
    predicted = [int(v) for v in _download(c["viewer"], tenant, stored).splitlines()]
    assert predicted == _weights(2).predict(rows).tolist()
    shown = ok_json(run_cli(env, "transform", "show", name, "-p", project, "--json"))
    assert shown["outputs"] == [stored]
    assert name in [
        t["name"] for t in ok_json(run_cli(env, "transform", "ls", "-p", project, "--json"))
    ]

    bad = run_cli(env, *create, unique("tr-"), "--input", "inputs/cli-bad.csv", "--wait")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "cli-bad.csv line 5: the model rejected the record" in bad.stderr.splitlines()[-1]
