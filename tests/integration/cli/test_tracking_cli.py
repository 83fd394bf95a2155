"""``shipyard experiments|runs|metrics|datasets`` as a user runs them, against a real server.

Runs are made through the SDK (quicker than many CLI calls); every command is then run as a
subprocess and checked for what it prints, as a table and as ``--json``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from tests.conftest import Tenant, unique
from tests.support.cli import cli_env, error_line, ok_json, run_cli, run_cli_in_pty
from tests.support.servers import RunningServer

import shipyard


@pytest.fixture
def sci(server: RunningServer, tenant: Tenant, tmp_path: Path) -> dict[str, str]:
    return cli_env(
        tmp_path / "sci", SHIPYARD_URL=server.url, SHIPYARD_API_KEY=tenant.keys["scientist"]
    )


@pytest.fixture
def project(tenant: Tenant) -> str:
    return f"{tenant.team}/{tenant.project}"


@pytest.fixture
def tracking(server: RunningServer, tenant: Tenant, project: str) -> shipyard.Tracking:
    return shipyard.Session(url=server.url, api_key=tenant.keys["scientist"]).tracking(project)


def _runs(tracking: shipyard.Tracking, experiment: str) -> list[str]:
    ids = []
    for c, auc in ((0.1, 0.71), (1.0, 0.93)):
        with tracking.start_run(experiment, name=f"C={c}", params={"C": c}) as run:
            for step in range(200):
                run.log_metric("loss", 1 / (step + 1), step=step)
            run.log_metric("auc", auc)
        ids.append(run.id)
    return ids


def test_experiments_create_ls_and_show(sci: dict[str, str], project: str) -> None:
    name = unique("cli-exp-")
    made = ok_json(
        run_cli(sci, "experiments", "create", project, name, "--tag", "owner=ana", "--json")
    )
    assert made["name"] == name and made["tags"] == {"owner": "ana"}
    listed = ok_json(run_cli(sci, "experiments", "ls", project, "--json"))
    assert name in [e["name"] for e in listed]
    table = run_cli(sci, "experiments", "ls", project)
    assert table.returncode == 0 and name in table.stdout and "created_by" in table.stdout
    shown = ok_json(run_cli(sci, "experiments", "show", project, made["id"], "--json"))
    assert shown["name"] == name
    again = error_line(run_cli(sci, "experiments", "create", project, name), 1)
    assert "409 conflict" in again


def test_runs_ls_show_search_and_compare(
    sci: dict[str, str], project: str, tracking: shipyard.Tracking
) -> None:
    experiment = unique("cli-runs-")
    low, high = _runs(tracking, experiment)
    listed = ok_json(run_cli(sci, "runs", "ls", project, "-e", experiment, "--json"))
    assert {r["id"] for r in listed} == {low, high}
    assert (
        len(ok_json(run_cli(sci, "runs", "ls", project, "-e", experiment, "--max", "1", "--json")))
        == 1
    )
    table = run_cli(sci, "runs", "ls", project, "--experiment", experiment).stdout
    assert "C=0.1" in table and "FINISHED" in table and "auc=0.93" in table

    shown = ok_json(run_cli(sci, "runs", "show", project, high, "--json"))
    assert shown["params"] == {"C": "1.0"} and shown["metrics"]["auc"]["value"] == 0.93
    text = run_cli(sci, "runs", "show", project, high).stdout
    assert f"id: {high}" in text and "status: FINISHED" in text
    assert re.search(r"auc\s*│\s*0\.93", text) and re.search(r"C\s*│\s*1\.0", text)

    query = ("runs", "search", project, "metrics.auc > 0.8", "-e", experiment)
    found = ok_json(run_cli(sci, *query, "--json"))
    assert [r["id"] for r in found] == [high]
    ordered = ok_json(
        run_cli(
            sci,
            "runs",
            "search",
            project,
            "params.C != ''",
            "-e",
            experiment,
            "--order-by",
            "metrics.auc ASC",
            "--json",
        )
    )
    assert [r["id"] for r in ordered] == [low, high]

    compared = ok_json(run_cli(sci, "runs", "compare", project, low, high, "--json"))
    assert compared["metrics"]["auc"] == [0.71, 0.93]
    grid = run_cli(sci, "runs", "compare", project, low, high).stdout
    header, *rows = [line for line in grid.splitlines() if line.strip()]
    assert header.index("C=0.1") < header.index("C=1.0")
    assert any(re.match(r"params\.C\s*│\s*0\.1\s*│\s*1\.0", r) for r in rows), grid
    assert any(re.match(r"metrics\.auc\s*│\s*0\.71\s*│\s*0\.93", r) for r in rows), grid


def test_a_bad_filter_is_pointed_at_with_a_caret(sci: dict[str, str], project: str) -> None:
    result = run_cli(sci, "runs", "search", project, "metrics.auc > > 0.5")
    assert result.returncode == 1 and result.stdout == "" and "Traceback" not in result.stderr
    message, shown, caret = result.stderr.splitlines()
    assert message.startswith("error: ") and "400 bad_request" in message
    assert shown == "  metrics.auc > > 0.5"
    assert caret == "  " + " " * 14 + "^"  # under the second '>'
    result = run_cli(sci, "runs", "search", project, "", "--order-by", "metrics.auc SIDEWAYS")
    message, shown, caret = result.stderr.splitlines()
    assert "order_by[0]" in message and shown == "  metrics.auc SIDEWAYS"
    assert caret.index("^") == shown.index("SIDEWAYS")


def test_metric_history_in_full_and_downsampled(
    sci: dict[str, str], project: str, tracking: shipyard.Tracking
) -> None:
    with tracking.start_run(unique("cli-hist-")) as run:
        for step in range(100):
            run.log_metric("loss", 0.5 if step else math.nan, step=step)
    raw = run_cli(sci, "metrics", "history", project, run.id, "loss", "--json")
    assert "NaN" in raw.stdout and json.loads(raw.stdout, parse_constant=pytest.fail)
    full = ok_json(raw)
    assert full["steps"] == list(range(100)) and full["values"][0] == "NaN"
    assert full["total_points"] == 100 and full["downsampled"] is False
    small = ok_json(
        run_cli(sci, "metrics", "history", project, run.id, "loss", "--max-points", "5", "--json")
    )
    assert small["downsampled"] is True and len(small["steps"]) <= 5
    assert sum(small["counts"]) == 100
    table = run_cli(sci, "metrics", "history", project, run.id, "loss", "--max-points", "5")
    assert (
        table.returncode == 0
        and "count" in table.stdout
        and "buckets of 100 points" in table.stderr
    )


def test_datasets_create_upload_ls_versions_show_and_runs(
    sci: dict[str, str], project: str, tracking: shipyard.Tracking, tmp_path: Path
) -> None:
    csv = tmp_path / "marketing.csv"
    csv.write_text("age,visits,churn\n25,2,0\n41,7,1\n")
    name = unique("cli-data-")
    made = ok_json(
        run_cli(sci, "datasets", "create", project, name, "--description", "raw", "--json")
    )
    assert made["name"] == name
    first = run_cli(sci, "datasets", "upload", project, name, str(csv))
    assert first.returncode == 0 and "version: 1" in first.stdout and "row_count: 2" in first.stdout
    second = ok_json(run_cli(sci, "datasets", "upload", project, name, str(csv), "--json"))
    assert second["version"] == 2 and second["schema"][0] == {
        "name": "age",
        "type": "integer",
        "physical_type": "BIGINT",
    }
    listed = ok_json(run_cli(sci, "datasets", "ls", project, "--json"))
    assert {d["name"]: d["latest_version"] for d in listed}[name] == 2
    assert [
        v["version"] for v in ok_json(run_cli(sci, "datasets", "versions", project, name, "--json"))
    ] == [1, 2]
    shown = run_cli(sci, "datasets", "show", project, name, "--version", "1")
    assert "version: 1" in shown.stdout
    assert re.search(
        r"age\s*│\s*integer\s*│\s*2\s*│\s*0\s*│\s*2\s*│\s*25\s*│\s*41\s*│\s*33", shown.stdout
    ), shown.stdout
    assert ok_json(run_cli(sci, "datasets", "show", project, name, "--json"))["version"] == 2

    with tracking.start_run(unique("cli-lineage-")) as run:
        run.log_input(name, 2, context="training")
    readers = ok_json(run_cli(sci, "datasets", "runs", project, name, "2", "--json"))
    assert [r["id"] for r in readers] == [run.id]
    missing = error_line(run_cli(sci, "datasets", "show", project, name, "--version", "9"), 1)
    assert "404 not_found" in missing


def test_dataset_upload_shows_progress_on_a_terminal(
    sci: dict[str, str], project: str, tmp_path: Path
) -> None:
    big = tmp_path / "big.csv"
    rows = "".join(f"{i},{i % 97},{i % 2}\n" for i in range(600_000))
    big.write_text("id,visits,churn\n" + rows)
    code, screen = run_cli_in_pty(
        {**sci, "TERM": "xterm-256color"}, "datasets", "upload", project, unique("big-"), str(big)
    )
    assert code == 0, screen
    assert "upload big.csv" in screen and re.search(r"\d+\.\d/\d+\.\d MB", screen), screen
    assert "row_count: 600000" in screen


def test_runs_create_records_a_finished_run_and_quiet_prints_ids(
    sci: dict[str, str], project: str, tracking: shipyard.Tracking
) -> None:
    experiment = unique("cli-create-")
    args = ("runs", "create", project, "-e", experiment, "--name", "shell")
    made = ok_json(
        run_cli(
            sci,
            *args,
            "--param",
            "C=1",
            "--tag",
            "via=cli",
            "--metric",
            "loss=0.9",
            "--metric",
            "loss=0.4",
            "--metric",
            "auc=nan",
            "--status",
            "FAILED",
            "--json",
        )
    )
    assert (made["status"], made["params"], made["tags"]) == ("FAILED", {"C": "1"}, {"via": "cli"})
    assert made["metrics"]["auc"]["value"] == "NaN"
    assert tracking.metric_history(made["id"], "loss")["values"] == [0.9, 0.4]
    second = run_cli(sci, "runs", "create", project, "-e", experiment, "-q")
    assert second.returncode == 0 and re.fullmatch(r"[0-9a-f]{32}\n", second.stdout)
    listed = run_cli(sci, "runs", "ls", project, "-e", experiment, "-q").stdout.split()
    assert listed == [second.stdout.strip(), made["id"]]  # newest first
    bad = run_cli(sci, "runs", "create", project, "--metric", "auc=high")
    assert bad.returncode == 2 and "KEY=NUMBER" in bad.stderr and "Traceback" not in bad.stderr
