"""``shipyard jobs`` and ``shipyard teams update`` as a user runs them, against a real server.

Every command is a subprocess (tests/support/cli.py); each test checks what is printed (JSON,
tables, log lines, one ``error:`` line) and the exit code.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import make_tenant
from tests.support.cli import CLI, cli_env, error_line, ok_json, run_cli
from tests.support.servers import RunningServer

TRAIN = """
    import json, os, pathlib, sys
    data = pathlib.Path(os.environ["SM_CHANNEL_TRAIN"], "train.csv").read_text()
    print("args", sys.argv[1:])
    print("hps", json.dumps(json.loads(os.environ["SM_HPS"]), sort_keys=True))
    print(f"rows={len(data.splitlines()) - 1} loss=[0.25]")
    pathlib.Path(os.environ["SM_MODEL_DIR"], "model.txt").write_text("m")
"""
SLEEPER = """
    import os, pathlib, time
    attempt = len(list(pathlib.Path(os.environ["SM_CHECKPOINT_DIR"]).glob("*"))) + 1
    pathlib.Path(os.environ["SM_CHECKPOINT_DIR"], f"a{attempt}").write_text("x")
    print(f"{os.environ['SM_CURRENT_HOST']} attempt {attempt} started", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def user(server: RunningServer, tmp_path: Path) -> dict[str, Any]:
    """A scientist (CLI environment with SHIPYARD_PROJECT set), a lead, and a source dir."""
    tenant = make_tenant(server, ("scientist", "lead"))
    project = f"{tenant.team}/{tenant.project}"
    src = tmp_path / "src"
    src.mkdir()
    for name, text in (("train.py", TRAIN), ("sleep.py", SLEEPER)):
        (src / name).write_text(textwrap.dedent(text))

    def env(role: str) -> dict[str, str]:
        return cli_env(
            tmp_path / role,
            SHIPYARD_URL=server.url,
            SHIPYARD_API_KEY=tenant.keys[role],
            SHIPYARD_PROJECT=project,
        )

    return {"sci": env("scientist"), "lead": env("lead"), "team": tenant.team, "src": src}


def jobs(env: dict[str, str], *args: str, src: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(env, "jobs", *args, cwd=src)


def test_submit_wait_json_then_ls_show_and_logs(user: dict[str, Any]) -> None:
    sci, src = user["sci"], user["src"]
    (src / "data").mkdir()
    (src / "data" / "train.csv").write_text("id,x\n1,2\n2,3\n")
    put = ("artifacts", "put", sci["SHIPYARD_PROJECT"], "data/train.csv", "data/train.csv")
    assert run_cli(sci, *put, cwd=src).returncode == 0
    done = ok_json(
        jobs(
            sci,
            "submit",
            "--name", "cli-train",
            "--hp", "epochs=2", "--hp", "lr=0.5", "--hp", "early=true", "--hp", "opt=adam",
            "--input", "train=data/train.csv",
            "--metric", "loss=loss=\\[([0-9.]+)\\]",
            "--wait", "--json",
            "--", "--verbose",
            src=src,
        )
    )  # fmt: skip
    assert done["status"] == "Completed", done["reason"]
    assert done["model_artifact"] == "jobs/cli-train/model.tar.gz@1"
    assert done["spec"]["hyperparameters"] == {"epochs": 2, "lr": 0.5, "early": True, "opt": "adam"}
    assert done["spec"]["source"] == "jobs-src/cli-train/source.tar.gz"

    listed = ok_json(jobs(sci, "ls", "--json", src=src))
    assert [(j["name"], j["status"]) for j in listed] == [("cli-train", "Completed")]
    table = jobs(sci, "ls", src=src).stdout
    assert "cli-train" in table and "Completed" in table and "1 x cpu.small" in table
    shown = ok_json(jobs(sci, "show", "cli-train", "--json", src=src))
    assert shown["run_id"] == done["run_id"] and shown["phase_times"].keys() >= {"Running"}
    text = jobs(sci, "show", "cli-train", src=src).stdout
    assert "status: Completed" in text
    assert "model_artifact: jobs/cli-train/model.tar.gz@1" in text

    printed = jobs(sci, "logs", "cli-train", src=src)
    assert printed.returncode == 0
    lines = printed.stdout.splitlines()
    # Hyperparameters become arguments as on SageMaker; those after -- follow them.
    assert (
        "args ['--early', 'True', '--epochs', '2', '--lr', '0.5', '--opt', 'adam', '--verbose']"
        in lines
    )
    assert 'hps {"early": true, "epochs": 2, "lr": 0.5, "opt": "adam"}' in lines
    assert "rows=2 loss=[0.25]" in lines  # brackets printed as they are, not as markup


def test_wait_logs_streams_and_a_failed_job_exits_1(user: dict[str, Any]) -> None:
    sci, src = user["sci"], user["src"]
    (src / "fail.py").write_text("print('about to fail')\nraise SystemExit('bad row 7')\n")
    result = jobs(
        sci, "submit", "--entry-point", "fail.py", "--name", "cli-fail", "--logs", src=src
    )
    assert result.returncode == 1, result.stderr
    assert "about to fail" in result.stdout.splitlines()
    assert "status: Failed" in result.stdout and "bad row 7" in result.stdout
    assert result.stderr.splitlines()[-1] == (
        "error: job cli-fail ended Failed: AlgorithmError: algo-1 exited with code 1"
    )


def test_follow_interrupt_and_stop_a_running_job(user: dict[str, Any]) -> None:
    sci, src = user["sci"], user["src"]
    args = ("--entry-point", "sleep.py", "--name", "cli-sleep", "--instance-count", "2")
    submitted = ok_json(jobs(sci, "submit", *args, "--checkpointing", "--json", src=src))
    assert submitted["status"] == "Pending"
    follow = subprocess.Popen(
        [*CLI, "jobs", "logs", "cli-sleep", "-f"],
        env=sci,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_until(sci, src, lambda job: job["status"] == "Running")
    _wait_for_line(sci, src, "algo-2 attempt 1 started")
    checkpoints = ("artifacts", "ls", sci["SHIPYARD_PROJECT"], "--prefix", "jobs/cli-sleep/")
    deadline = time.monotonic() + 30
    while not ok_json(run_cli(sci, *checkpoints, "--json")):  # synced every 0.5 s in tests
        assert time.monotonic() < deadline, "the checkpoint was never synced"
        time.sleep(0.2)

    interrupted = ok_json(jobs(sci, "interrupt", "cli-sleep", "--json", src=src))
    assert interrupted["name"] == "cli-sleep"
    _wait_until(sci, src, lambda job: job["attempt"] == 2 and job["status"] == "Running")
    _wait_for_line(sci, src, "algo-2 attempt 2 started")  # resumed from its checkpoint

    stopped = jobs(sci, "stop", "cli-sleep", src=src)
    assert stopped.returncode == 0 and "Stopping job cli-sleep" in stopped.stderr
    out, errors = follow.communicate(timeout=60)  # -f ends by itself when the job ends
    assert follow.returncode == 0, errors
    lines = out.splitlines()
    assert "[algo-1] algo-1 attempt 1 started" in lines
    assert "[algo-2] algo-2 attempt 2 started" in lines
    assert len(lines) == len(set(lines)), "a followed line was shown twice"
    assert ok_json(jobs(sci, "show", "cli-sleep", "--json", src=src))["status"] == "Stopped"
    only = jobs(sci, "logs", "cli-sleep", "--instance", "algo-2", src=src).stdout.splitlines()
    assert "algo-2 attempt 2 started" in only and not any("algo-1" in line for line in only)
    again = error_line(jobs(sci, "stop", "cli-sleep", src=src), 1)
    assert "job 'cli-sleep' is Stopped" in again and "409 conflict" in again


def _wait_until(env: dict[str, str], src: Path, check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check(job := ok_json(jobs(env, "show", "cli-sleep", "--json", src=src))):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def _wait_for_line(env: dict[str, str], src: Path, line: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while line not in jobs(env, "logs", "cli-sleep", "--instance", "algo-2", src=src).stdout:
        assert time.monotonic() < deadline, f"no {line!r} in the log"
        time.sleep(0.2)


def test_bad_submissions_print_one_clear_error(user: dict[str, Any]) -> None:
    sci, src = user["sci"], user["src"]
    unknown = error_line(jobs(sci, "submit", "--instance-type", "gpu.huge", src=src), 1)
    assert "unknown instance type 'gpu.huge'; valid types: cpu.small" in unknown
    assert "[field: instance_type]" in unknown and "422 validation_failed" in unknown

    missing = error_line(jobs(sci, "submit", "--requirements", "requirements.txt", src=src), 2)
    assert missing == "error: requirements file 'requirements.txt' is not in source_dir '.'"
    bad_hp = jobs(sci, "submit", "--hp", "epochs", src=src)
    assert bad_hp.returncode == 2 and "expected KEY=VALUE, got 'epochs'" in bad_hp.stderr
    assert ok_json(jobs(sci, "ls", "--json", src=src)) == []


def test_teams_update_sets_the_quota_and_policy_jobs_then_meet(user: dict[str, Any]) -> None:
    sci, lead, src, team = user["sci"], user["lead"], user["src"], user["team"]
    updated = ok_json(run_cli(lead, "teams", "update", team, "--max-instance-count", "2", "--json"))
    assert updated["quotas"] == {"max_instance_count": 2}
    over = error_line(jobs(sci, "submit", "--instance-count", "3", src=src), 1)
    assert "instance_count 3 is above team" in over and "max_instance_count=2" in over
    assert "403 permission_denied" in over

    policy = run_cli(lead, "teams", "update", team, "--require-network-isolation", "--json")
    assert ok_json(policy)["policies"] == {"require_network_isolation": True}
    assert ok_json(policy)["quotas"] == {"max_instance_count": 2}  # kept, not replaced
    open_net = error_line(jobs(sci, "submit", src=src), 1)
    assert "requires network_isolation=true" in open_net and "403" in open_net

    lifted = run_cli(
        lead, "teams", "update", team, "--max-instance-count", "0",
        "--no-require-network-isolation", "--json",
    )  # fmt: skip
    assert ok_json(lifted)["quotas"] == {}
    shown = run_cli(lead, "teams", "show", team).stdout
    assert "require_network_isolation=False" in shown
    denied = error_line(run_cli(sci, "teams", "update", team, "--max-instance-count", "9"), 1)
    assert "403" in denied
    assert json.loads(run_cli(lead, "teams", "show", team, "--json").stdout)["quotas"] == {}
