"""The default backend: every instance is a process group on this machine.

Instances talk to each other over loopback. With network isolation they share one network
namespace that holds only its own loopback, so they still reach each other but nothing else.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shipyard.jobs.backends.base import IsolationRefused, SpecBuilder
from shipyard.jobs.host import FileState, InstanceHost
from shipyard.jobs.isolation import JobNetwork, NetworkIsolationUnavailable, check_available

LOOPBACK = "127.0.0.1"
PythonFor = Callable[[bytes | None, Callable[[str], None]], Path]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class CpuPool:
    """Hands out CPU sets round-robin, so two one-CPU instances do not share a core."""

    def __init__(self, cpus: Sequence[int] | None = None) -> None:
        self._cpus = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
        self._next = itertools.count()
        self._lock = threading.Lock()

    def take(self, count: int) -> tuple[int, ...]:
        count = max(1, min(count, len(self._cpus)))
        with self._lock:
            start = next(self._next) * count
        return tuple(sorted({self._cpus[(start + i) % len(self._cpus)] for i in range(count)}))


class LineReader:
    """Complete new lines of a growing file; a partial last line waits for its end."""

    def __init__(self, read: Callable[[int], bytes], start: int = 0) -> None:
        self._read = read
        self._offset = start
        self._partial = b""

    def lines(self) -> list[str]:
        chunk = self._read(self._offset)
        if not chunk:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        return [line.decode("utf-8", errors="replace") for line in complete]


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


class LocalCluster:
    def __init__(self, hosts: list[InstanceHost], network: JobNetwork | None) -> None:
        self._hosts = hosts
        self.hosts = [h.spec.placement.current_host for h in hosts]
        self._network = network
        # The log files go on across attempts: read only what this attempt writes.
        self._readers = [LineReader(h.read_log, _size(h.log_path)) for h in hosts]

    def prepare(self) -> None:
        with ThreadPoolExecutor(max_workers=min(8, len(self._hosts))) as pool:
            list(pool.map(lambda host: host.prepare(), self._hosts))

    def start(self) -> list[dict[str, object]]:
        started: list[dict[str, object]] = []
        for host in self._hosts:
            pid = host.start()
            name = host.spec.placement.current_host
            started.append({"host": name, "pid": pid, "cwd": str(host.layout.code_dir)})
        return started

    def poll(self) -> list[int | None]:
        return [host.poll() for host in self._hosts]

    def stop(self, grace_s: float) -> None:
        with ThreadPoolExecutor(max_workers=len(self._hosts)) as pool:
            list(pool.map(lambda host: host.stop(grace_s), self._hosts))

    def kill(self) -> None:
        for host in self._hosts:
            host.kill()

    def pump_logs(self) -> dict[str, list[str]]:
        pairs = zip(self.hosts, self._readers, strict=True)
        return {name: reader.lines() for name, reader in pairs}

    def checkpoint_files(self) -> dict[str, FileState]:
        return self._hosts[0].checkpoint_files()

    def read_file(self, area: str, relative: str, host: int = 0) -> bytes:
        return self._hosts[host].read_file(area, relative)

    def output_files(self, host: int) -> dict[str, FileState]:
        return self._hosts[host].output_files()

    def pack_model(self) -> bytes:
        return self._hosts[0].pack_model()

    def failure_text(self, host: int) -> str:
        return self._hosts[host].failure_text()

    def close(self) -> None:
        for host in self._hosts:
            if host.poll() is None:
                host.kill()
            host.cleanup()
        if self._network is not None:
            self._network.close()


class LocalBackend:
    name = "local"

    def __init__(self, python_for: PythonFor, cpu_pool: CpuPool | None = None) -> None:
        self._python_for = python_for
        self._cpus = cpu_pool or CpuPool()

    def launch(
        self,
        work_dir: Path,
        build: SpecBuilder,
        logs: Sequence[Path],
        *,
        isolate_network: bool,
    ) -> LocalCluster:
        network = self._network() if isolate_network else None
        specs = build(LOOPBACK, free_port())
        if network is not None:
            prefix = network.prefix()
            specs = [dataclasses.replace(spec, command_prefix=prefix) for spec in specs]
        hosts = [
            InstanceHost(
                spec,
                root=work_dir / "instances" / spec.placement.current_host,
                log_path=log,
                cpus=self._cpus.take(spec.cpus),
                python_for=self._python_for,
            )
            for spec, log in zip(specs, logs, strict=True)
        ]
        return LocalCluster(hosts, network)

    def isolation_problem(self) -> str | None:
        try:
            check_available()
        except NetworkIsolationUnavailable as exc:
            return str(exc)
        return None

    @staticmethod
    def _network() -> JobNetwork:
        try:
            check_available()
            network = JobNetwork()
            network.__enter__()
        except NetworkIsolationUnavailable as exc:
            raise IsolationRefused(f"network isolation is not available here: {exc}") from exc
        return network
