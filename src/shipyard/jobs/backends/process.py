"""One job instance as a local process group, sized like its instance type.

Each instance runs in its own session (its own process group), so a stop reaches every
process the user's script started. CPUs are pinned and memory is capped before the command
runs (``kit.confine``). stdout and stderr go to one log file per instance, which the platform
stores and streams. Stopping is SIGTERM to the group, a grace
period for the script to save a checkpoint, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shipyard.kit.confine import confined
from shipyard.kit.files import open_private_append


@dataclass(frozen=True)
class Limits:
    """What the instance type grants: these CPUs (ids) and at most this much memory."""

    cpus: tuple[int, ...]
    memory_bytes: int | None


def pick_cpus(count: int, available: Sequence[int] | None = None) -> tuple[int, ...]:
    """``count`` CPU ids from those this process may use (all of them if fewer exist)."""
    pool = sorted(available if available is not None else os.sched_getaffinity(0))
    return tuple(pool[: max(1, min(count, len(pool)))])


class InstanceProcess:
    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
        limits: Limits,
    ) -> None:
        self.log_path = log_path
        with open_private_append(log_path) as log:
            self._proc = subprocess.Popen(
                confined(command, limits.cpus, limits.memory_bytes),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop reaches every child
                umask=0o077,  # what the job writes (model, checkpoints) is the job's alone
            )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def poll(self) -> int | None:
        return self._proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self._proc.wait(timeout)

    def stop(self, grace_s: float) -> int:
        """SIGTERM to the whole group, ``grace_s`` to finish, then SIGKILL; the exit code."""
        if self._proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                return self._proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        self._signal_group(signal.SIGKILL)
        return self._proc.wait()

    def kill(self) -> int:
        """Like a spot reclaim: no warning, no grace."""
        self._signal_group(signal.SIGKILL)
        return self._proc.wait()

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # already gone, with its whole group
            os.killpg(self._proc.pid, sig)


def tail_lines(path: Path, count: int, *, max_bytes: int = 256 * 1024) -> list[str]:
    """The last ``count`` lines of a log, reading at most ``max_bytes`` from its end."""
    if not path.exists():
        return []
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - max_bytes))
        data = f.read()
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]  # the first may be cut
    return lines[-count:]


def wait_all(instances: Sequence[InstanceProcess], poll_s: float = 0.05) -> list[int]:
    """Exit codes once every instance has ended (the order of ``instances``)."""
    while any(p.poll() is None for p in instances):
        time.sleep(poll_s)
    return [p.wait() for p in instances]
