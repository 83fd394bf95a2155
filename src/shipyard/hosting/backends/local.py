"""The default backend: every replica is a process group on this machine.

Replicas are started in their own session (so a stop reaches everything they started) with a
clean environment — the platform's own variables (the master key among them) never reach a
model's code — and write stdout and stderr to ``replica.log`` in their private working
directory, where the controller finds ``READY <port>``. That file, not a pipe, is how a
controller that restarted learns about replicas it did not start itself. Replicas do not die
with the controller: after a crash the next controller adopts the ones still answering.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from shipyard.hosting.backends.base import Placed, ReplicaExited, ReplicaLaunch
from shipyard.kit.confine import confined
from shipyard.kit.files import ensure_private_dir

LOOPBACK = "127.0.0.1"
LOG_NAME = "replica.log"
READY = re.compile(rb"^READY (\d+)\s*$", re.M)
READ_LIMIT = 1 << 20
# Variables a replica inherits from the platform's process; nothing else (no secrets).
INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class CpuPool:
    """Hands out CPU sets round-robin, so two one-CPU replicas do not share a core."""

    def __init__(self) -> None:
        self._cpus = sorted(os.sched_getaffinity(0))
        self._next = itertools.count()
        self._lock = threading.Lock()

    def take(self, count: int) -> set[int]:
        count = max(1, min(count, len(self._cpus)))
        with self._lock:
            start = next(self._next) * count
        return {self._cpus[(start + i) % len(self._cpus)] for i in range(count)}


def replica_env(launch: ReplicaLaunch) -> dict[str, str]:
    env = {name: os.environ[name] for name in INHERITED if name in os.environ}
    env.update(
        {
            "HOME": str(launch.work_dir),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": str(launch.cpus),
        }
    )
    env.update(launch.environment)
    return env


def _proc_state(pid: int) -> str | None:
    """The process's state letter from /proc (``Z`` for a zombie), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


def _same_cwd(pid: int, cwd: str) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/cwd") == cwd
    except OSError:
        return False


class LocalReplicaBackend:
    name = "local"

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._cpus = CpuPool()

    def start(self, launch: ReplicaLaunch) -> Placed:
        ensure_private_dir(launch.work_dir)
        cmd = [
            sys.executable,
            "-m",
            "shipyard.hosting.modelserver",
            "--model-dir",
            str(launch.model_dir),
            "--flavor",
            launch.flavor,
            "--host",
            LOOPBACK,
            "--port",
            "0",
            "--model-version",
            launch.model_version,
            "--predict",
            launch.predict,
        ]
        memory = launch.memory_mib * 1024 * 1024 if launch.memory_mib else None
        cmd = confined(cmd, self._cpus.take(launch.cpus), memory)
        fd = os.open(launch.work_dir / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=launch.work_dir,
                env=replica_env(launch),
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a stop reaches all of it
            )
        finally:
            os.close(fd)
        with self._lock:
            self._children[proc.pid] = proc
        return Placed(LOOPBACK, proc.pid, str(launch.work_dir))

    def _child(self, pid: int) -> subprocess.Popen[bytes] | None:
        with self._lock:
            return self._children.get(pid)

    def alive(self, placed: Placed) -> bool:
        child = self._child(placed.pid)
        if child is not None:
            return child.poll() is None
        state = _proc_state(placed.pid)
        return state is not None and state not in ("Z", "X") and _same_cwd(placed.pid, placed.cwd)

    def ready_port(self, placed: Placed) -> int | None:
        if not self.alive(placed):
            raise ReplicaExited(self._exit_reason(placed))
        found = READY.search(self._read_log(placed))
        return int(found.group(1)) if found else None

    def _exit_reason(self, placed: Placed) -> str:
        child = self._child(placed.pid)
        code = child.poll() if child is not None else None
        how = f" with code {code}" if code is not None and code >= 0 else ""
        if code is not None and code < 0:
            how = f" killed by signal {-code}"
        return f"the replica exited{how}: {self.log_tail(placed, 5) or 'no output'}"

    def _read_log(self, placed: Placed) -> bytes:
        try:
            with open(Path(placed.cwd) / LOG_NAME, "rb") as f:
                return f.read(READ_LIMIT)
        except OSError:
            return b""

    def log_tail(self, placed: Placed, lines: int = 20) -> str:
        """The replica's own error line when it wrote one, else its last lines."""
        try:
            data = (Path(placed.cwd) / LOG_NAME).read_bytes()[-64_000:]
        except OSError:
            return ""
        text = data.decode("utf-8", errors="replace").splitlines()
        errors = [line for line in text if line.startswith("modelserver: error:")]
        if errors:
            return errors[-1]
        return " | ".join(line for line in text[-lines:] if line.strip())

    def stop(self, placed: Placed, grace_s: float) -> None:
        if not self.alive(placed):
            self._forget(placed.pid)
            return
        with contextlib.suppress(OSError):
            os.killpg(placed.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and self.alive(placed):
            time.sleep(0.05)
        if self.alive(placed):
            with contextlib.suppress(OSError):
                os.killpg(placed.pid, signal.SIGKILL)
        child = self._child(placed.pid)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(5)
        self._forget(placed.pid)

    def _forget(self, pid: int) -> None:
        with self._lock:
            child = self._children.pop(pid, None)
        if child is not None:
            child.poll()  # reap

    def cpu_seconds(self, placed: Placed) -> float | None:
        try:
            stat = Path(f"/proc/{placed.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rpartition(")")[2].split()
        # utime and stime are fields 14 and 15 of the whole line; 12 and 13 after the name
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
