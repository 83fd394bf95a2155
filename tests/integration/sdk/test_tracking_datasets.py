"""Datasets through the SDK against a real server: versions, profiles, registration, lineage."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import Tenant, unique
from tests.support.servers import RunningServer

import shipyard


def test_csv_then_parquet_versions_profiles_and_lineage(
    server: RunningServer, tenant: Tenant, tmp_path: Path
) -> None:
    csv = tmp_path / "marketing.csv"
    csv.write_text("age,visits,churn\n25,2,0\n41,7,1\n30,,0\n")
    parquet = tmp_path / "marketing.parquet"
    table = {"age": [25, 41, 30, 52], "visits": [2, 7, 1, 4], "churn": [0, 1, 0, 1]}
    pq.write_table(pa.table(table), parquet)
    name = unique("marketing-")
    project = f"{tenant.team}/{tenant.project}"
    with shipyard.Session(url=server.url, api_key=tenant.keys["scientist"]) as session:
        datasets = session.datasets(project)
        created = datasets.create(name, description="campaign responses")
        assert created["latest_version"] is None
        with pytest.raises(shipyard.NotFound):
            datasets.show(name)
        seen: list[tuple[int, int]] = []
        first = datasets.upload(name, csv, progress=lambda done, total: seen.append((done, total)))
        second = datasets.upload(name, parquet, description="cleaned")
        stored = session.artifacts(project).put(f"raw/{name}.csv", csv)
        third = datasets.register(name, stored.path, version=stored.version)

        assert (first["version"], first["format"], first["row_count"]) == (1, "csv", 3)
        assert first["digest"] == hashlib.sha256(csv.read_bytes()).hexdigest()
        assert seen[-1] == (csv.stat().st_size, csv.stat().st_size)
        assert [c["name"] for c in first["schema"]] == ["age", "visits", "churn"]
        visits = first["profile"]["columns"][1]
        assert (visits["count"], visits["missing"], visits["max"]) == (2, 1, 7.0)
        assert (second["version"], second["format"], second["row_count"]) == (2, "parquet", 4)
        assert second["profile"]["columns"][0]["mean"] == pytest.approx(37.0)
        assert (third["version"], third["digest"]) == (3, first["digest"])

        assert [v["version"] for v in datasets.versions(name)] == [1, 2, 3]
        assert datasets.show(name)["version"] == 3
        assert datasets.show(name, 2)["description"] == "cleaned"
        listed = {d["name"]: d for d in datasets.ls()}
        assert listed[name]["latest_version"] == 3

        tracking = session.tracking(project)
        with tracking.start_run(unique("lineage-")) as run:
            run.log_input(name, 2, context="training")
        assert [r["id"] for r in datasets.runs(name, 2)] == [run.id]
        assert datasets.runs(name, 1) == []
        (used,) = tracking.get_run(run.id)["inputs"]
        assert (used["dataset"], used["version"], used["context"]) == (name, 2, "training")
        found = tracking.search_runs(f"dataset.name = '{name}'")
        assert [r["id"] for r in found] == [run.id]


def test_a_file_that_does_not_parse_records_nothing(
    server: RunningServer, tenant: Tenant, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    name = unique("broken-")
    with shipyard.Session(url=server.url, api_key=tenant.keys["scientist"]) as session:
        datasets = session.datasets(f"{tenant.team}/{tenant.project}")
        with pytest.raises(shipyard.ValidationFailed):
            datasets.upload(name, bad, format="parquet")
        assert datasets.versions(name) == []
