"""Ending a process tree started in its own session (a Ray head and everything it spawned)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def session_members(sid: int) -> list[int]:
    """Pids of the processes in session ``sid``: the leader's children keep its session even
    when they make process groups of their own (Ray's workers do)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
    return pids


def end_session(proc: subprocess.Popen[bytes], grace_s: float = 15) -> None:
    """SIGTERM the leader (``ray start --block`` then ends its processes), then SIGKILL
    whatever is left in its session (workers whose raylet went first, say)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace_s)
    deadline = time.monotonic() + 10
    while (left := session_members(proc.pid)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
