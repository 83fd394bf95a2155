"""What a compute backend offers the job controller: start one attempt's instances and drive
them. The controller holds the job's logic (phases, checkpoints, uploads, retries); a backend
only places instances and carries calls to them, so local processes and Ray behave alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from shipyard.jobs.host import FileState, InstanceSpec


class Cluster(Protocol):
    """The instances of one attempt, in rank order (``algo-1`` first)."""

    hosts: list[str]

    def prepare(self) -> None:
        """Download code, inputs and checkpoints into every instance; build environments."""

    def start(self) -> list[dict[str, object]]:
        """Start every instance; what to record to find them again ({"host", "pid", ...})."""

    def poll(self) -> list[int | None]:
        """Each instance's exit code, or None while it runs."""

    def stop(self, grace_s: float) -> None:
        """SIGTERM, up to ``grace_s`` to finish, then SIGKILL; every instance."""

    def kill(self) -> None:
        """End every instance at once, like a spot reclaim."""

    def pump_logs(self) -> dict[str, list[str]]:
        """New complete lines per host since the last call; written to the server-side log."""

    def checkpoint_files(self) -> dict[str, FileState]:
        """The leader's checkpoints/ as {relative path: state}."""

    def read_file(self, area: str, relative: str, host: int = 0) -> bytes: ...

    def output_files(self, host: int) -> dict[str, FileState]: ...

    def pack_model(self) -> bytes:
        """The leader's model/ as model.tar.gz."""

    def failure_text(self, host: int) -> str: ...

    def close(self) -> None:
        """Release everything the attempt held (trees, namespaces, actors)."""


#: Builds the instances' specs once the backend knows where rank 0 listens (address, port).
SpecBuilder = Callable[[str, int], list[InstanceSpec]]


class IsolationRefused(Exception):
    """The job asks for network isolation and this backend cannot provide it here."""


class Backend(Protocol):
    name: str

    def isolation_problem(self) -> str | None:
        """Why network isolation cannot be had on this backend here, or None if it can."""

    def launch(
        self,
        work_dir: Path,
        build: SpecBuilder,
        logs: Sequence[Path],
        *,
        isolate_network: bool,
    ) -> Cluster:
        """Place ``len(logs)`` instances; ``logs`` are the server-side log paths, in rank
        order. Raises IsolationRefused rather than run an isolated job unisolated."""
