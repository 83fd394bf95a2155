"""Datasets over real HTTP: versions, digest, schema and profile, bad files, lineage."""

from __future__ import annotations

import hashlib
import io

import pyarrow as pa
import pyarrow.parquet as pq
from tests.conftest import Tenant, unique
from tests.support.servers import RunningServer

CSV = b"age,plan,spend\n25,basic,10.5\n31,pro,\n47,pro,99.0\n52,basic,12.0\n"


def _base(tenant: Tenant) -> str:
    return f"/api/v1/projects/{tenant.team}/{tenant.project}"


def _parquet() -> bytes:
    table = pa.table({"age": [25, 31], "plan": ["basic", "pro"]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def test_upload_profiles_and_versions_a_dataset(server: RunningServer, tenant: Tenant) -> None:
    name, base = unique("marketing-"), _base(tenant)
    with server.client(tenant.keys["scientist"]) as c:
        first = c.put(f"{base}/datasets/{name}/versions", content=CSV, params={"format": "csv"})
        second = c.put(f"{base}/datasets/{name}/versions", content=_parquet())
        listed = c.get(f"{base}/datasets").json()
        versions = c.get(f"{base}/datasets/{name}/versions").json()
        one = c.get(f"{base}/datasets/{name}/versions/1").json()
        stored = c.get(f"{base}/artifacts/{one['artifact_path']}", params={"version": 1})
    assert first.status_code == 201, first.text
    assert second.status_code == 201 and second.json()["format"] == "parquet"
    assert [v["version"] for v in versions] == [1, 2]
    assert {"name": name, "latest_version": 2}.items() <= next(
        d for d in listed if d["name"] == name
    ).items()
    assert one["digest"] == hashlib.sha256(CSV).hexdigest() and one["row_count"] == 4
    assert [col["name"] for col in one["schema"]] == ["age", "plan", "spend"]
    spend = next(col for col in one["profile"]["columns"] if col["name"] == "spend")
    assert (spend["missing"], spend["min"], spend["max"]) == (1, 10.5, 99.0)
    plan = next(col for col in one["profile"]["columns"] if col["name"] == "plan")
    assert plan["top_values"][0] == ["basic", 2] or plan["top_values"][0] == ["pro", 2]
    assert stored.content == CSV  # the bytes are kept exactly, in the artifact store


def test_a_file_that_does_not_parse_records_nothing(server: RunningServer, tenant: Tenant) -> None:
    name, base = unique("broken-"), _base(tenant)
    with server.client(tenant.keys["scientist"]) as c:
        c.post(f"{base}/datasets", json={"name": name})
        bad = c.put(
            f"{base}/datasets/{name}/versions", content=b"PAR1garbage", params={"format": "parquet"}
        )
        bad_name = c.put(f"{base}/datasets/..%2Fx/versions", content=CSV)
        versions = c.get(f"{base}/datasets/{name}/versions").json()
        missing = c.get(f"{base}/datasets/{name}/versions/1")
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "body"
    assert bad_name.status_code in (404, 422)
    assert versions == []
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "version"


def test_register_from_the_store_and_lineage(server: RunningServer, tenant: Tenant) -> None:
    name, base = unique("churn-"), _base(tenant)
    with server.client(tenant.keys["scientist"]) as c:
        c.put(f"{base}/artifacts/raw/churn.csv", content=CSV)
        made = c.post(f"{base}/datasets/{name}/versions", json={"artifact_path": "raw/churn.csv"})
        run = c.post(f"{base}/runs", json={"experiment": unique("exp-")}).json()
        logged = c.post(
            f"{base}/runs/{run['id']}/inputs",
            json={"dataset": name, "version": 1, "context": "training"},
        )
        unknown = c.post(f"{base}/runs/{run['id']}/inputs", json={"dataset": name, "version": 9})
        usage = c.get(f"{base}/datasets/{name}/versions/1/runs").json()
        got = c.get(f"{base}/runs/{run['id']}").json()
        found = c.post(f"{base}/runs/search", json={"filter": f"datasets.name = '{name}'"}).json()
    assert made.status_code == 201 and made.json()["digest"] == hashlib.sha256(CSV).hexdigest()
    assert logged.status_code == 204 and unknown.status_code == 404
    assert [r["id"] for r in usage["runs"]] == [run["id"]]
    assert got["inputs"][0] | {"digest": ""} == {
        "dataset": name,
        "version": 1,
        "context": "training",
        "digest": "",
    }
    assert [r["id"] for r in found["runs"]] == [run["id"]]
