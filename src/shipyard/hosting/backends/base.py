"""What a compute backend offers the endpoint controller: start a replica, find out when it
is ready or why it ended, tell whether one recorded earlier is still the same process, stop
it. The controller holds the logic (fleets, health, routes, deployments); a backend only
places processes, so a local process and (later) a Ray actor behave alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ReplicaLaunch:
    """One model-server process to start."""

    model_dir: Path
    flavor: str
    model_version: str
    predict: str
    work_dir: Path  # private; the replica's cwd and log
    cpus: int = 1
    memory_mib: int | None = None  # the instance type's memory: the process's cap
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Placed:
    """What to record to find the replica again after a restart."""

    host: str
    pid: int
    cwd: str


class ReplicaExited(Exception):
    """The replica ended (or cannot be the one recorded); the message says why."""


class ReplicaBackend(Protocol):
    name: str

    def start(self, launch: ReplicaLaunch) -> Placed:
        """Start the process; it prints ``READY <port>`` when it serves."""

    def ready_port(self, placed: Placed) -> int | None:
        """The port once the replica printed READY; None while it loads. Raises
        ReplicaExited (with the replica's own error line) if it ended."""

    def alive(self, placed: Placed) -> bool:
        """Whether the recorded process still runs and is the replica (same cwd)."""

    def stop(self, placed: Placed, grace_s: float) -> None:
        """SIGTERM to its process group, ``grace_s`` to drain, then SIGKILL."""

    def cpu_seconds(self, placed: Placed) -> float | None:
        """CPU time used so far (user + system), or None if unknown."""

    def log_tail(self, placed: Placed, lines: int = 20) -> str: ...
