"""The commands in the README and docs/ are run as written, against a real server.

Each document gets a fresh server. Its file blocks (fences like ```` ```python file=a/b.py ````,
which render as ordinary code) are written first, under those names; then every
``shipyard ...`` line of its ``sh`` blocks runs in a shell with the CLI on PATH, then every
``python`` block runs; each must succeed. Password prompts are answered through the documented
variables (``SHIPYARD_PASSWORD``, ``SHIPYARD_NEW_PASSWORD``). Lines that start the server or set
up S3 are skipped (the server is already up), and a ``SHK...`` placeholder becomes the id of
the key made just before.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.cli import cli_env
from tests.support.servers import RunningServer, start_server

ROOT = Path(__file__).resolve().parents[2]
DOCS = [
    "README.md",
    "docs/artifacts.md",
    "docs/security.md",
    "docs/tracking.md",
    "docs/jobs.md",
    "docs/models.md",
    "docs/hosting.md",
    "docs/monitoring.md",
]
# The documents whose commands invoke endpoints: their server starts its gateway.
INVOKING = {"docs/hosting.md", "docs/monitoring.md"}
DOC_URL = "http://127.0.0.1:8080"
SKIPPED = ("make ", "source ", "export ", "shipyard up")
# What a document assumes was done before it (it says so in its text).
PRELUDE = {
    "docs/artifacts.md": "README.md",
    "docs/tracking.md": "README.md",
    "docs/jobs.md": "README.md",
    "docs/models.md": "README.md",
    "docs/hosting.md": "README.md",
    "docs/monitoring.md": "README.md",
}


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def file_blocks(text: str) -> list[tuple[str, str]]:
    """``(path, content)`` of every block whose info string names a file."""
    return re.findall(r"^```\w+ file=(\S+)\n(.*?)^```", text, flags=re.S | re.M)


def shell_lines(text: str) -> list[str]:
    lines = []
    for block in blocks(text, "sh"):
        for raw in block.splitlines():
            line = raw.split("  #", 1)[0].strip()
            if line and not line.startswith(SKIPPED):
                lines.append(line)
    return lines


def _run(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture
def doc_server(tmp_path: Path, request: pytest.FixtureRequest) -> RunningServer:
    doc = request.node.callspec.params["doc"]
    server = start_server(tmp_path / "home", gateway=doc in INVOKING)
    yield server  # type: ignore[misc]
    server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS)
def test_documented_commands_work_as_written(
    doc: str, doc_server: RunningServer, tmp_path: Path
) -> None:
    text = (ROOT / doc).read_text()
    work = tmp_path / "work"
    work.mkdir()
    (work / "marketing.csv").write_text("age,visits,churn\n25,2,0\n41,7,1\n")
    (work / "model.pkl").write_bytes(b"not really a pickle, just bytes")
    env = cli_env(
        tmp_path / "user",
        SHIPYARD_PASSWORD=doc_server.credentials["password"],
        SHIPYARD_NEW_PASSWORD="ana-password-1",
    )
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    for name, content in file_blocks(text):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(content)
    last_key_id = ""
    commands = shell_lines(text)
    assert commands, f"{doc} has no shell commands to check"
    if doc in PRELUDE:
        commands = shell_lines((ROOT / PRELUDE[doc]).read_text()) + commands
    for command in commands:
        command = command.replace(DOC_URL, doc_server.url).replace("SHK...", last_key_id)
        result = _run(command, env, work)
        assert result.returncode == 0, f"{doc}: `{command}` failed:\n{result.stderr}"
        if "keys create" in command and "--json" in command:
            last_key_id = json.loads(result.stdout)["key_id"]
    for code in blocks(text, "python"):
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{doc}: python block failed:\n{result.stderr}"
    if doc == "README.md":
        assert (work / "copy.csv").read_bytes() == (work / "marketing.csv").read_bytes()
