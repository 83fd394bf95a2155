"""The churn walk-through (DESIGN §1), as CI runs it, on a fresh ``shipyard up`` with its gateway:

- ``examples/churn/walkthrough.py``, exactly as a user runs it against ``make up``. The script
  checks each step itself and exits non-zero at the first that fails; the test also reads what
  it printed (what the issue promises a user will see) and asks the server for what the last
  step left behind, so a walk-through that "passed" while saying the wrong thing fails here.
- The README's section "The churn walk-through", command by command: the ``$ `` lines of its
  ``console`` blocks and its ``py`` blocks, in order, in one bash script after the README's
  first steps. (Its blocks are not ``sh``/``python`` ones because tests/e2e/test_docs.py runs
  those on a server without a gateway.)

Short capture and monitoring intervals keep both quick; nothing else differs from a default
server.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.cli import cli_env
from tests.support.servers import RunningServer, start_server

ROOT = Path(__file__).resolve().parents[2]
WALKTHROUGH = ROOT / "examples" / "churn" / "walkthrough.py"
SUFFIX = "ci"
PROJECT = f"growth-{SUFFIX}/churn"
README = ROOT / "README.md"
SECTION = "## The churn walk-through"
DOC_URL = "http://127.0.0.1:8080"
FIRST_STEPS_SKIPPED = ("make ", "source ", "export ", "shipyard up")
QUICK = {
    "SHIPYARD_GATEWAY_CAPTURE_INTERVAL_S": "1",  # captures reach the store within a second
    "SHIPYARD_MONITORING_POLL_S": "1",  # a requested monitor run starts within a second
}


def run_walkthrough(server: RunningServer, workdir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    command = [
        sys.executable,
        str(WALKTHROUGH),
        "--url",
        server.url,
        "--credentials",
        str(server.home / "admin-credentials.json"),
        "--workdir",
        str(workdir),
        "--suffix",
        SUFFIX,
        "--epochs",
        "12",
        "--epoch-seconds",
        "0.5",
    ]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def found(pattern: str, text: str) -> re.Match[str]:
    match = re.search(pattern, text, flags=re.M)
    assert match is not None, f"the walk-through never printed /{pattern}/:\n{text}"
    return match


@pytest.mark.slow
def test_the_churn_walkthrough_runs_end_to_end(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", gateway=True, extra_env=QUICK)
    try:
        result = run_walkthrough(server, tmp_path / "work")
        out = result.stdout
        assert result.returncode == 0, (
            f"the walk-through failed:\n{out}\n{result.stderr}\n--- server log ---\n"
            f"{server.log()[-5000:]}"
        )

        # Training: 2 spot instances, interrupted once, resumed from a checkpoint.
        found(r"Completed after [2-9] attempts", out)
        resumed = found(r"\[algo-1\] resumed from epoch (\d+)", out)
        assert int(resumed[1]) >= 1
        # Four eyes: registered by ana, approved by lee.
        found(rf"registered by ana-{SUFFIX}$", out)
        found(rf"churn v1: Approved by lee-{SUFFIX}$", out)
        # The invocation: {"prediction": <float in [0, 1]>, "model_version": "v23"}.
        answer = json.loads(found(r"→ (\{.*\})$", out)[1])
        assert set(answer) == {"prediction", "model_version"}
        assert answer["model_version"] == "v23"
        assert isinstance(answer["prediction"], float) and 0.5 < answer["prediction"] <= 1.0
        # Drift: the verdict names the drifted features, the alert reaches the receiver.
        found(r"verdict alert", out)
        drifted = found(r"drifted features: (.+)$", out)[1].split(", ")
        assert {"age", "spend_30d"} <= set(drifted)
        found(r"webhook delivered monitor\.violation", out)
        found(r"chat message: :rotating_light: .*monitor churn-drift .*customer-churn-v23", out)
        retrain = found(r"retraining job (churn-retrain-\d{14}) started by the monitor", out)[1]

        # What the server says, not only what the script printed.
        with server.admin() as admin:
            base = f"/api/v1/projects/{PROJECT}"
            job = admin.get(f"{base}/jobs/{retrain}").json()
            assert job["status"] == "Completed", job
            versions = admin.get(f"{base}/models/churn/versions").json()
            [retrained] = [v for v in versions if v["job_name"] == retrain]
            assert retrained["version"] >= 2 and retrained["status"] == "PendingManualApproval"
            endpoint = admin.get(f"{base}/endpoints/customer-churn-v23").json()
            assert endpoint["status"] == "InService", endpoint
    finally:
        server.stop()


# --- the README's commands ------------------------------------------------------------------


def section(text: str, heading: str) -> str:
    """The text under ``heading``, up to the next heading of the same level."""
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + len(heading) + 2)
    return text[start : end if end != -1 else len(text)]


def first_steps(text: str) -> list[str]:
    """The commands of the README's first steps (what the walk-through says it continues)."""
    lines = []
    for block in re.findall(r"^```sh\n(.*?)^```", section(text, "## First steps"), re.S | re.M):
        for raw in block.splitlines():
            line = raw.split("  #", 1)[0].strip()
            if line and not line.startswith(FIRST_STEPS_SKIPPED):
                lines.append(line)
    return lines


def walkthrough_script(text: str) -> list[str]:
    """The section's commands in order: ``$ `` lines of console blocks (but the one that runs
    walkthrough.py: the other test does), and each py block as a ``python -`` heredoc."""
    script = []
    for language, body in re.findall(r"^```(console|py)\n(.*?)^```", text, re.S | re.M):
        if language == "py":
            script.append(f"python - <<'PYTHON'\n{body}PYTHON")
            continue
        for line in body.splitlines():
            if line.startswith("$ ") and "walkthrough.py" not in line:
                script.append(line[2:])
    return script


def bash_script(server: RunningServer, admin_password: str) -> str:
    """First steps as the admin, then the walk-through with lee's password for the prompts;
    ``set -x`` shows which command failed, the trap stops the background receiver."""
    text = README.read_text()
    lines = [
        "set -euxo pipefail",
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
        f"export SHIPYARD_PASSWORD='{admin_password}' SHIPYARD_NEW_PASSWORD=ana-password-1",
        *first_steps(text),
        "export SHIPYARD_PASSWORD=lee-password-1 SHIPYARD_NEW_PASSWORD=lee-password-1",
        *walkthrough_script(section(text, SECTION)),
    ]
    return "\n".join(lines).replace(DOC_URL, server.url) + "\n"


def run_script(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in its own session, so that on a timeout the background receiver is
    ended with bash (and does not keep its port for the next run)."""
    proc = subprocess.Popen(
        ["bash", "-c", script],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
def test_the_readme_walkthrough_commands_work_as_written(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", gateway=True, extra_env=QUICK)
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")  # the commands run from the repo root
    (work / "marketing.csv").write_text("age,visits,churn\n25,2,0\n41,7,1\n")  # first steps
    env = cli_env(tmp_path / "user")
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    try:
        result = run_script(bash_script(server, server.credentials["password"]), env, work)
        out = result.stdout
        assert result.returncode == 0, (
            f"a README command failed:\n{out}\n{result.stderr[-6000:]}\n--- server log ---\n"
            f"{server.log()[-3000:]}"
        )
        found(r"^\[algo-1\] resumed from epoch \d+$", out)
        found(r"^Completed 2 jobs/churn-v23/model\.tar\.gz@1$", out)
        found(r"^decided_by: lee$", out)
        invoked = found(r'^(\{\n  "prediction": [^\n]+\n  "model_version": [^\n]+\n\})$', out)
        answer = json.loads(invoked[1])
        assert answer["model_version"] == "v23" and 0.5 < answer["prediction"] <= 1.0
        found(r"^deploy +│ ok +│ created endpoint customer-churn-v23 \(dev\) *$", out)
        found(r"^verdict: alert$", out)
        assert {"age", "spend_30d"} <= set(found(r"^drifted_features: (.+)$", out)[1].split(", "))
        found(r"^retrain_job: churn-retrain-\d{14}$", out)
        alerts = (work / "alerts.log").read_text()
        assert "monitor.violation: :rotating_light: [ml/churn] monitor churn-drift" in alerts
    finally:
        server.stop()
