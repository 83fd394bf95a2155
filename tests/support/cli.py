"""The ``shipyard`` CLI as a user runs it: a real subprocess in a private environment.

``cli_env`` builds an environment that cannot touch the developer's own configuration: the
profile file is ``<dir>/profiles.json`` (``SHIPYARD_CONFIG``), ``HOME`` is ``<dir>`` (so the
local admin-credentials fallback finds no ``~/.shipyard``), and every ``SHIPYARD_*`` variable of
the calling process is dropped, so a test only sees the server and credentials it sets.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "shipyard.cli.main"]
# Variables that would make Rich treat a pipe as a terminal (or the reverse), or pin its width.
_TERMINAL_VARS = {
    "FORCE_COLOR",
    "NO_COLOR",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "COLUMNS",
    "LINES",
    "XDG_CONFIG_HOME",
}
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[@-Z\\-_])")


def cli_env(directory: Path, **extra: str) -> dict[str, str]:
    """An environment for the CLI with its profile file and ``HOME`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SHIPYARD_") and k not in _TERMINAL_VARS
    }
    env.update(HOME=str(directory), SHIPYARD_CONFIG=str(directory / "profiles.json"))
    env.update(extra)
    return env


def run_cli(
    env: dict[str, str], *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``shipyard ARGS...`` with pipes (not a terminal) and return what it printed."""
    raw = run_cli_bytes(env, *args, cwd=cwd, timeout=timeout)
    return subprocess.CompletedProcess(
        raw.args, raw.returncode, raw.stdout.decode(), raw.stderr.decode()
    )


def run_cli_bytes(
    env: dict[str, str], *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    """Like ``run_cli`` but stdout and stderr stay bytes (for ``-o -``)."""
    return subprocess.run(
        [*CLI, *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def run_cli_in_pty(
    env: dict[str, str],
    *args: str,
    cwd: Path | None = None,
    timeout: float = 120,
    columns: int = 120,
) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdin, stdout and stderr.

    Returns the exit code and everything the terminal received, escape sequences removed.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    try:
        proc = subprocess.Popen(
            [*CLI, *args], env=env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave
        )
    finally:
        os.close(slave)  # the child holds its copies: EIO on read means it is gone
    received = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                raise TimeoutError(f"the CLI did not exit in {timeout}s: {received[-2000:]!r}")
            ready, _, _ = select.select([master], [], [], min(left, 1.0))
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every copy of the slave side is closed
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(master)
    code = proc.wait(timeout=30)
    return code, _ANSI.sub("", received.decode(errors="replace"))


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a successful command printed on stdout."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}"
    return json.loads(result.stdout)


def error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The single ``error: …`` line a failed command printed, after checking exit code, no
    traceback and nothing on stdout."""
    assert result.returncode == code, (
        f"expected exit {code}, got {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == "", result.stdout
    return lines[0]
