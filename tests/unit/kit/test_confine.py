"""The launcher applies an instance's limits before the command's first instruction."""

from __future__ import annotations

import os
import subprocess
import sys

from shipyard.kit.confine import CANNOT_CONFINE, confined

REPORT = (
    "import os, resource\n"
    "print(sorted(os.sched_getaffinity(0)), resource.getrlimit(resource.RLIMIT_AS)[0])\n"
)


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_the_command_starts_pinned_and_capped() -> None:
    cpu = min(os.sched_getaffinity(0))
    result = _run(confined([sys.executable, "-c", REPORT], [cpu], 512 * 1024 * 1024))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("]")[0] + "]" == f"[{cpu}]"
    assert result.stdout.split()[-1] == str(512 * 1024 * 1024)


def test_no_limits_leaves_the_command_as_it_was() -> None:
    result = _run(confined([sys.executable, "-c", REPORT], [], None))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == str(-1)  # RLIM_INFINITY


def test_a_cpu_the_machine_lacks_is_a_clear_exit() -> None:
    result = _run(confined([sys.executable, "-c", "print('ran')"], [100_000], None))
    assert result.returncode == CANNOT_CONFINE
    assert "ran" not in result.stdout
    assert "cannot start" in result.stderr and "with its limits" in result.stderr


def test_a_missing_command_is_a_clear_exit() -> None:
    result = _run(confined(["/nonexistent/python"], [], None))
    assert result.returncode == CANNOT_CONFINE
    assert "/nonexistent/python" in result.stderr
