"""``shipyard models`` and ``shipyard lineage`` as a user runs them, against a real server.

Every command is a subprocess (tests/support/cli.py). One completed training job per module
(the slow part); each test works in its own model groups.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from tests.conftest import Tenant, make_tenant
from tests.support.cli import cli_env, error_line, ok_json, run_cli
from tests.support.jobs import base, pack, submit, upload, wait_for
from tests.support.servers import RunningServer

TRAIN = """
    import os, pathlib, pickle
    print("auc=0.81")
    pathlib.Path(os.environ["SM_MODEL_DIR"], "model.pkl").write_bytes(pickle.dumps({"w": 1}))
"""


def _model(coef: float) -> bytes:
    return pack({"model.pkl": pickle.dumps({"coef": [coef]}), "README.txt": "a model\n"})


@dataclass
class Users:
    tenant: Tenant
    envs: dict[str, dict[str, str]]
    work: Path

    def cli(self, role: str, *args: str) -> Any:
        return run_cli(self.envs[role], *args, cwd=self.work)


@pytest.fixture(scope="module")
def users(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Users:
    """A scientist and a lead (CLI environments with SHIPYARD_PROJECT set), a completed
    job ``train-cli`` that read ``marketing`` v1, and two model artifacts."""
    tenant = make_tenant(server, ("scientist", "lead"))
    work = tmp_path_factory.mktemp("models-cli")
    envs = {
        role: cli_env(
            work / role,
            SHIPYARD_URL=server.url,
            SHIPYARD_API_KEY=tenant.keys[role],
            SHIPYARD_PROJECT=f"{tenant.team}/{tenant.project}",
        )
        for role in ("scientist", "lead")
    }
    with server.client(tenant.keys["scientist"]) as c:
        r = c.put(f"{base(tenant)}/datasets/marketing/versions", content=b"a,b\n1,2\n")
        assert r.status_code == 201, r.text
        upload(c, tenant, "src/train.tar.gz", pack({"train.py": TRAIN}))
        submit(
            c,
            tenant,
            name="train-cli",
            entry_point="train.py",
            source="src/train.tar.gz",
            inputs={"train": "dataset:marketing:1"},
            metric_definitions=[{"name": "auc", "regex": r"auc=([0-9.]+)"}],
        )
        upload(c, tenant, "models/plain.tar.gz", _model(0.1))
        upload(c, tenant, "models/swap.tar.gz", _model(0.5))
        assert wait_for(c, tenant, "train-cli")["status"] == "Completed"
    return Users(tenant, envs, work)


def test_create_register_from_an_artifact_show_and_list(users: Users) -> None:
    created = ok_json(users.cli("scientist", "models", "create", "cli-art", "--json"))
    assert created["name"] == "cli-art" and created["last_version"] == 0
    line = error_line(users.cli("scientist", "models", "create", "cli-art"), 1)
    assert "already exists" in line and "409" in line
    (users.work / "example.json").write_text('{"features": [25, 2, 0.0]}')
    register = ("models", "register", "cli-art", "--path", "models/plain.tar.gz")
    version = ok_json(users.cli("scientist", *register, "--example-file", "example.json", "--json"))
    assert version["version"] == 1 and version["example"] == {"features": [25, 2, 0.0]}

    shown = users.cli("scientist", "models", "show", "cli-art", "1")
    assert shown.returncode == 0, shown.stderr
    assert "status: PendingManualApproval" in shown.stdout
    assert "scan: clean (" in shown.stdout and "artifact: models/plain.tar.gz@1" in shown.stdout
    listed = users.cli("scientist", "models", "ls")
    assert listed.returncode == 0 and "cli-art" in listed.stdout
    versions = ok_json(users.cli("scientist", "models", "ls", "cli-art", "--json"))
    assert [v["version"] for v in versions] == [1]
    table = users.cli("scientist", "models", "ls", "cli-art")
    assert "PendingManualApproval" in table.stdout and "models/plain.tar.gz@1" in table.stdout

    assert users.cli("scientist", "models", "register", "cli-art").returncode == 2
    both = users.cli("scientist", *register, "--job", "train-cli")
    assert both.returncode == 2 and "Traceback" not in both.stderr
    line = error_line(users.cli("scientist", "models", "show", "cli-art", "9"), 1)
    assert "404" in line


def test_register_from_the_job_and_show_its_lineage(users: Users) -> None:
    register = ("models", "register", "cli-job", "--job", "train-cli", "--create-group")
    version = ok_json(users.cli("scientist", *register, "--json"))
    assert version["job_name"] == "train-cli" and version["run_id"]
    shown = users.cli("scientist", "models", "show", "cli-job", "1").stdout
    assert "job: train-cli" in shown and "datasets: marketing v1" in shown
    assert "metrics: auc=0.81" in shown

    tree = users.cli("scientist", "lineage", "show", "model:cli-job:1")
    assert tree.returncode == 0, tree.stderr
    upstream, downstream = tree.stdout.split("downstream of")
    ancestors = [f"← run:{version['run_id']}", "← job:train-cli", "← dataset:marketing:1"]
    positions = [upstream.index(text) for text in ancestors]
    assert positions == sorted(positions), tree.stdout  # each one deeper than the last
    assert "[registered as]" in upstream and "(nothing)" in downstream

    graph = ok_json(users.cli("scientist", "lineage", "show", "dataset:marketing:1", "--json"))
    assert "model:cli-job:1" in {n["id"] for n in graph["nodes"]}
    down = users.cli("scientist", "lineage", "show", "job:train-cli").stdout.split("downstream")
    assert "→ model:cli-job:1" in down[1]
    line = error_line(users.cli("scientist", "lineage", "show", "model:cli-job"), 1)
    assert "[field: entity]" in line and "422" in line


def test_approve_reject_and_the_four_eyes_rule(users: Users) -> None:
    register = ("models", "register", "cli-gate", "--path", "models/plain.tar.gz")
    assert users.cli("lead", *register, "--create-group").returncode == 0  # v1, the lead's
    for _ in range(2):  # v2 and v3, the scientist's
        assert users.cli("scientist", *register).returncode == 0

    line = error_line(users.cli("lead", "models", "approve", "cli-gate", "1"), 1)
    assert "four-eyes" in line and "403" in line
    line = error_line(users.cli("scientist", "models", "approve", "cli-gate", "2"), 1)
    assert "403" in line
    approved = users.cli("lead", "models", "approve", "cli-gate", "2", "--comment", "ok")
    assert approved.returncode == 0, approved.stderr
    assert "status: Approved" in approved.stdout and "comment: ok" in approved.stdout

    missing = users.cli("lead", "models", "reject", "cli-gate", "3")
    assert missing.returncode == 2 and "--comment" in missing.stderr
    reject = ("models", "reject", "cli-gate", "3", "--comment", "old data", "--json")
    assert ok_json(users.cli("lead", *reject))["status"] == "Rejected"
    line = error_line(users.cli("lead", "models", "approve", "cli-gate", "3"), 1)
    assert "409" in line


def test_card_edit_markdown_html_and_frozen_after_approval(users: Users) -> None:
    register = ("models", "register", "cli-card", "--path", "models/plain.tar.gz")
    assert users.cli("scientist", *register, "--create-group").returncode == 0
    edit = ("models", "card-edit", "cli-card", "1")
    fields = ("--intended-use", "rank [bold]calls[/]", "--risk-rating", "low")
    card = ok_json(users.cli("scientist", *edit, *fields, "--json"))
    assert (card["revision"], card["risk_rating"]) == (2, "low")
    assert users.cli("scientist", *edit, "--risk-rating", "huge").returncode == 2
    assert users.cli("scientist", *edit).returncode == 2  # nothing to change

    shown = users.cli("scientist", "models", "card", "cli-card", "1")
    assert "risk_rating: low" in shown.stdout
    assert "rank [bold]calls[/]" in shown.stdout  # text, not markup
    markdown = users.cli("scientist", "models", "card", "cli-card", "1", "--markdown").stdout
    assert markdown.startswith("# Model card: cli-card v1") and "rank [bold]calls[/]" in markdown
    first = users.cli("scientist", "models", "card", "cli-card", "1", "--revision", "1", "--json")
    assert ok_json(first)["intended_use"] == ""
    html = users.cli("scientist", "models", "card", "cli-card", "1", "--html-out", "card.html")
    assert html.returncode == 0, html.stderr
    assert "<html" in (users.work / "card.html").read_text()

    assert users.cli("lead", "models", "approve", "cli-card", "1").returncode == 0
    line = error_line(users.cli("scientist", *edit, "--caveats", "after the fact"), 1)
    assert "frozen" in line and "409" in line


def test_verify_delete_and_the_dashboard(users: Users, server: RunningServer) -> None:
    register = ("models", "register", "cli-verify", "--path", "models/swap.tar.gz")
    assert users.cli("scientist", *register, "--create-group").returncode == 0
    assert users.cli("scientist", *register).returncode == 0
    verified = users.cli("scientist", "models", "verify", "cli-verify", "1")
    assert verified.returncode == 0, verified.stderr
    assert "verified: cli-verify v1, 2 file(s)" in verified.stdout

    _swap_bytes(server, users.tenant, "models/swap.tar.gz")
    line = error_line(users.cli("scientist", "models", "verify", "cli-verify", "1"), 1)
    assert "model.pkl" in line and "README.txt" not in line and "409" in line

    deleted = users.cli("scientist", "models", "delete", "cli-verify", "2", "--json")
    assert ok_json(deleted) == {"group": "cli-verify", "version": 2, "deleted": True}
    assert error_line(users.cli("scientist", "models", "show", "cli-verify", "2"), 1)

    board = ok_json(users.cli("lead", "models", "dashboard", "--json"))
    row = {g["name"]: g for g in board}["cli-verify"]
    assert (row["last_version"], row["pending"]) == (2, 1)
    table = users.cli("lead", "models", "dashboard")
    assert table.returncode == 0 and "cli-verify" in table.stdout
    assert "v1 PendingManualApproval" in table.stdout


def _swap_bytes(server: RunningServer, tenant: Tenant, path: str) -> None:
    """An insider points version 1 of ``path`` at other, validly encrypted weights."""
    with server.client(tenant.keys["scientist"]) as c:
        upload(c, tenant, path, _model(9.9))
    engine = create_engine(server.db_url)
    try:
        with engine.begin() as conn:
            project = conn.execute(
                text(
                    "SELECT p.id FROM projects p JOIN teams t ON p.team_id = t.id "
                    "WHERE t.name = :team AND p.name = :project"
                ),
                {"team": tenant.team, "project": tenant.project},
            ).scalar_one()
            rows = "FROM artifact_versions WHERE project_id = :p AND path = :path"
            other = conn.execute(
                text(f"SELECT blob_key, sha256, size {rows} AND version = 2"),
                {"p": project, "path": path},
            ).one()
            conn.execute(
                text(
                    "UPDATE artifact_versions SET blob_key = :k, sha256 = :s, size = :n "
                    "WHERE project_id = :p AND path = :path AND version = 1"
                ),
                {
                    "k": other.blob_key,
                    "s": other.sha256,
                    "n": other.size,
                    "p": project,
                    "path": path,
                },
            )
    finally:
        engine.dispose()
