"""A job instance is a real process group: limits applied, logs captured, stops reach all."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil
import pytest

from shipyard.jobs.backends.process import InstanceProcess, Limits, pick_cpus, tail_lines, wait_all

PY = sys.executable


def _start(tmp_path: Path, code: str, limits: Limits | None = None) -> InstanceProcess:
    return InstanceProcess(
        [PY, "-u", "-c", code],
        env={**os.environ, "GREETING": "hello"},
        cwd=tmp_path,
        log_path=tmp_path / "logs" / "algo-1.log",
        limits=limits or Limits(cpus=pick_cpus(1), memory_bytes=None),
    )


def test_output_and_exit_code_are_captured(tmp_path: Path) -> None:
    proc = _start(tmp_path, "import os,sys; print(os.environ['GREETING']); sys.exit(3)")
    assert proc.wait(20) == 3
    assert tail_lines(proc.log_path, 5) == ["hello"]


def test_cpus_are_pinned_and_memory_is_capped(tmp_path: Path) -> None:
    cpu = pick_cpus(1)
    code = (
        "import os, resource\n"
        "print(sorted(os.sched_getaffinity(0)))\n"
        "print(resource.getrlimit(resource.RLIMIT_AS)[0])\n"
        "try:\n    b = bytearray(1024 * 1024 * 1024)\n    print('allocated')\n"
        "except MemoryError:\n    print('refused')\n"
    )
    proc = _start(tmp_path, code, Limits(cpus=cpu, memory_bytes=512 * 1024 * 1024))
    assert proc.wait(20) == 0
    assert tail_lines(proc.log_path, 3) == [str(list(cpu)), str(512 * 1024 * 1024), "refused"]


def test_stop_sends_sigterm_to_the_whole_group_then_waits(tmp_path: Path) -> None:
    code = (
        "import signal, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "def bye(*_):\n    print('saving checkpoint', flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "time.sleep(60)\n"
    )
    proc = _start(tmp_path, code)
    deadline = time.monotonic() + 10
    while not tail_lines(proc.log_path, 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(tail_lines(proc.log_path, 1)[0])
    assert proc.stop(grace_s=10) == 0
    assert "saving checkpoint" in tail_lines(proc.log_path, 5)
    deadline = time.monotonic() + 5
    while psutil.pid_exists(child) and psutil.Process(child).status() != "zombie":
        assert time.monotonic() < deadline, "the script's own child outlived the stop"
        time.sleep(0.05)


def test_a_script_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = _start(tmp_path, code)
    while not tail_lines(proc.log_path, 1):
        time.sleep(0.05)
    started = time.monotonic()
    assert proc.stop(grace_s=0.5) == -9
    assert time.monotonic() - started < 5


def test_kill_is_immediate_like_a_spot_reclaim(tmp_path: Path) -> None:
    procs = [_start(tmp_path, "import time; time.sleep(60)") for _ in range(2)]
    for proc in procs:
        proc.kill()
    assert wait_all(procs) == [-9, -9]


def test_tail_reads_only_the_end_of_a_long_log(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text("".join(f"line {i}\n" for i in range(200_000)))
    assert tail_lines(log, 3) == ["line 199997", "line 199998", "line 199999"]
    assert tail_lines(tmp_path / "missing.log", 3) == []


@pytest.mark.parametrize(("count", "pool", "expected"), [(2, [5, 1, 3], (1, 3)), (9, [0], (0,))])
def test_pick_cpus_takes_the_lowest_available(
    count: int, pool: list[int], expected: tuple[int, ...]
) -> None:
    assert pick_cpus(count, pool) == expected
