"""The Ray backend: every instance is a Ray actor, placed by Ray on whichever node has room.

``SHIPYARD_COMPUTE=ray://HOST:PORT`` names the head's Ray Client server (``ray start --head
--ray-client-server-port=PORT``, 10001 by default). Ray Client, rather than the GCS address
(``HOST:6379``), because a driver that attaches through the GCS must itself run on a Ray node
(it talks to a raylet on its own machine); through Ray Client the Shipyard server can stay
off the cluster, which is the deployment the design asks for. The price is Ray Client's rule
that the server and the nodes run the same Python minor version and the same Ray version.

What each node needs: ``pip install shipyard[ray]`` in the Python the Ray workers run (the
actor class is sent by reference, so workers import it from ``shipyard``), and a route to the
server's ``SHIPYARD_API_URL``: instances download their code, inputs and checkpoints from
presigned URLs on it, and the platform variables point scripts at it.

How an attempt runs:

- One actor per instance, each holding one CPU bundle of a SPREAD placement group, so a
  multi-node cluster spreads the instances and a single node takes them all.
- Each actor wraps an :class:`~shipyard.jobs.host.InstanceHost` rooted in the node's Ray temp
  directory, with its own :class:`~shipyard.jobs.environments.EnvironmentCache` next to it
  (envs are built once per node and shared by every instance on it).
- Rank 0's actor reports its node's IP and a free port there: that is ``MASTER_ADDR`` and
  ``MASTER_PORT`` for every rank.
- Logs live on the node; ``pump_logs`` copies the new bytes into the server-side log files the
  controller reads, and returns the new complete lines.
- An actor that dies (its node is lost, Ray kills it) shows as an instance that exited with
  -9, so the controller fails the attempt and may retry it, rather than waiting forever.
- An instance's process group does not outlive its actor: a small reaper process holds a pipe
  from the actor and kills the group when the pipe closes, however the actor ended.

CPU accounting. An instance asks Ray for ``min(type cpus, largest node's CPUs, cluster CPUs /
instances)`` CPUs, fractional if need be (Ray accounts in 1/10000 CPU), so a job of two
one-CPU instances fits a two-CPU machine, and a job of two 2-CPU instances still starts there,
sharing cores like the local backend does, instead of waiting for a bigger cluster forever.
``SM_NUM_CPUS`` still says what the instance type promises. Ray pins nothing for actors, so
each actor pins its process to CPU ids from the node's ``os.sched_getaffinity(0)``: the first
N, shifted by the instance's position among the job's instances on that node, so two
instances on one node do not share a core while cores remain.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import (
    ActorUnavailableError,
    GetTimeoutError,
    RayActorError,
    RayTaskError,
)
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from shipyard.errors import ShipyardError
from shipyard.jobs.backends.base import IsolationRefused, SpecBuilder
from shipyard.jobs.environments import EnvironmentCache
from shipyard.jobs.host import (
    LOG_CHUNK_BYTES,
    FileState,
    InstanceError,
    InstanceHost,
    InstanceSpec,
)

NAMESPACE = "shipyard"
#: Exit code reported for an instance whose actor is gone: "killed by signal 9".
LOST_CODE = -9
#: Connections tried before a launch gives up on the cluster.
CONNECT_ATTEMPTS = 3
#: How long a placement group may wait for room before the attempt gives up.
PLACEMENT_TIMEOUT_S = 300.0
#: Quick calls (poll, logs, start, listing files).
CALL_TIMEOUT_S = 30.0
#: Downloads and environment builds (the env build alone may take 900 s).
PREPARE_TIMEOUT_S = 3600.0
#: Moving a checkpoint, an output file or the packed model to the server.
TRANSFER_TIMEOUT_S = 600.0
#: An actor that has not answered for this long is taken as lost, though Ray has not said so.
UNRESPONSIVE_S = 60.0
#: How often logs are copied while instances prepare (the controller does not pump then).
PREPARE_PUMP_S = 1.0
#: Log chunks read per host and pump at most (each up to LOG_CHUNK_BYTES).
PUMP_ROUNDS = 8
#: Concurrent calls per actor, so a poll or a log read never queues behind a stop's grace.
ACTOR_CONCURRENCY = 4

_ADDRESS = re.compile(r"^ray://(?P<host>[^\s:/]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")

#: Run by the reaper: wait for the actor's word; EOF (the actor died) kills the group.
_REAPER = (
    "import os, signal, sys\n"
    "if sys.stdin.buffer.read(1) != b'x':\n"
    "    try: os.killpg(int(sys.argv[1]), signal.SIGKILL)\n"
    "    except OSError: pass\n"
)


class InstanceLost(RuntimeError):
    """The instance's actor is gone (its node lost, or it stopped answering)."""


def check_address(address: str) -> str:
    """``ray://host:port`` as given, or ValueError naming what is expected."""
    match = _ADDRESS.match(address)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"SHIPYARD_COMPUTE={address!r}: expected ray://HOST:PORT (Ray Client)")
    return address


def actor_cpus(requested: int, count: int, node_cpus: Sequence[float]) -> float:
    """Ray CPUs for each of ``count`` instances of a type with ``requested`` CPUs: no more
    than the largest node has (an actor cannot span nodes) nor than the cluster's share per
    instance (so the job can be placed at all); rounded down to Ray's 1/10000 CPU."""
    if not node_cpus or max(node_cpus) <= 0:
        raise RuntimeError("the Ray cluster has no CPUs")
    share = min(float(requested), max(node_cpus), sum(node_cpus) / max(1, count))
    return max(math.floor(share * 10_000) / 10_000, 0.0001)


def cpu_ids(count: int, slot: int, available: Sequence[int]) -> tuple[int, ...]:
    """``count`` ids of ``available``, starting at ``slot * count`` (wrapping round)."""
    pool = sorted(available)
    count = max(1, min(count, len(pool)))
    start = slot * count
    return tuple(sorted({pool[(start + i) % len(pool)] for i in range(count)}))


def node_temp_dir() -> Path:
    """The Ray temp directory of the node this worker runs on (``ray start --temp-dir``)."""
    node = getattr(ray._private.worker.global_worker, "node", None)
    with contextlib.suppress(AttributeError, TypeError):
        if node is not None:
            return Path(node.get_temp_dir_path())
    return Path(tempfile.gettempdir()) / "ray"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


class _Reaper:
    """Kills a process group when the actor dies without ending it (SIGKILL, node OOM)."""

    def __init__(self, pgid: int) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _REAPER, str(pgid)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not in the group it guards, nor in the actor's
        )

    def release(self) -> None:
        """The group ended under the actor's eyes: the reaper leaves without killing."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            with contextlib.suppress(OSError):
                self._proc.stdin.write(b"x")
                self._proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(5)


class InstanceActor:
    """What runs inside the Ray actor: one :class:`InstanceHost` on the actor's node.

    A plain class, made remote by :class:`RayBackend`, so it can be read and tested without
    Ray. Every argument and result is plain data that pickles.
    """

    def __init__(self, label: str) -> None:
        temp = node_temp_dir() / "shipyard"
        (temp / "instances").mkdir(parents=True, exist_ok=True)
        self._base = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=temp / "instances"))
        self._envs = EnvironmentCache(temp / "envs")
        self._host: InstanceHost | None = None
        self._reaper: _Reaper | None = None
        self._lock = threading.Lock()

    def locate(self) -> dict[str, Any]:
        """Where this actor runs, and a port free there (for rank 0's ``MASTER_PORT``)."""
        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            "port": _free_port(),
        }

    def setup(self, spec: InstanceSpec, cpu_slot: int) -> None:
        self._host = InstanceHost(
            spec,
            root=self._base / "job",
            log_path=self._base / "instance.log",
            cpus=cpu_ids(spec.cpus, cpu_slot, sorted(os.sched_getaffinity(0))),
            python_for=self._envs.python_for,
        )

    @property
    def host(self) -> InstanceHost:
        if self._host is None:
            raise RuntimeError("the instance was not set up")
        return self._host

    def prepare(self) -> str | None:
        """None when ready; else why not (the message the controller shows), since the
        exceptions of a failed download or env build need not pickle."""
        try:
            self.host.prepare()
        except (InstanceError, ShipyardError, OSError) as exc:
            return str(exc) or type(exc).__name__
        return None

    def start(self) -> dict[str, Any]:
        with self._lock:
            pid = self.host.start()
            self._reaper = _Reaper(pid)
        return {"pid": pid, "cwd": str(self.host.layout.code_dir)}

    def _ended(self, code: int | None) -> int | None:
        if code is not None:
            with self._lock:
                if self._reaper is not None:
                    self._reaper.release()
                    self._reaper = None
        return code

    def poll(self) -> int | None:
        return self._ended(self.host.poll())

    def stop(self, grace_s: float) -> int | None:
        return self._ended(self.host.stop(grace_s))

    def kill(self) -> int | None:
        return self._ended(self.host.kill())

    def read_log(self, offset: int) -> bytes:
        return self.host.read_log(offset)

    def failure_text(self) -> str:
        return self.host.failure_text()

    def checkpoint_files(self) -> dict[str, FileState]:
        return self.host.checkpoint_files()

    def output_files(self) -> dict[str, FileState]:
        return self.host.output_files()

    def read_file(self, area: str, relative: str) -> bytes:
        return self.host.read_file(area, relative)

    def pack_model(self) -> bytes:
        return self.host.pack_model()

    def cleanup(self) -> None:
        """End the instance if it still runs and remove its tree (the node keeps its envs)."""
        if self._host is not None and self.poll() is None:
            self.kill()
        shutil.rmtree(self._base, ignore_errors=True)


class _Unanswered(Exception):
    """A call got no answer in time (timeout, actor briefly unavailable, client hiccup)."""


class RayCluster:
    """The actors of one attempt, in rank order; implements the controller's ``Cluster``."""

    def __init__(
        self, actors: list[Any], group: Any, hosts: list[str], logs: Sequence[Path]
    ) -> None:
        self._actors = actors
        self._group = group
        self.hosts = hosts
        self._logs = list(logs)
        self._offsets = [0] * len(actors)
        self._partial = [b""] * len(actors)
        self._pending: dict[str, list[str]] = {host: [] for host in hosts}
        self._lost: dict[int, str] = {}
        self._last_answer = [time.monotonic()] * len(actors)

    # --- calling the actors --------------------------------------------------------------

    def _live(self) -> list[int]:
        return [i for i in range(len(self._actors)) if i not in self._lost]

    def _mark_lost(self, index: int, why: str) -> None:
        if index in self._lost:
            return
        self._lost[index] = why
        with contextlib.suppress(OSError):
            self._append(index, f"[shipyard] instance {self.hosts[index]} lost: {why}\n".encode())

    def _result(self, index: int, ref: Any, timeout: float) -> Any:
        """The call's value. A dead actor raises InstanceLost; no answer raises _Unanswered;
        an exception of the method itself is re-raised as it was (e.g. FileNotFoundError)."""
        try:
            value = ray.get(ref, timeout=max(timeout, 0.01))
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, Exception) else RuntimeError(str(exc))) from None
        except ActorUnavailableError as exc:
            raise _Unanswered(str(exc)) from None
        except RayActorError as exc:
            self._mark_lost(index, f"its Ray actor died ({_first_line(exc)})")
            raise InstanceLost(self._lost[index]) from None
        except Exception as exc:  # a timeout, or the client connection failing under us
            raise _Unanswered(_first_line(exc)) from None
        self._last_answer[index] = time.monotonic()
        return value

    def _unanswered(self, index: int, why: str) -> None:
        """Silence for longer than UNRESPONSIVE_S counts as a lost instance."""
        if time.monotonic() - self._last_answer[index] > UNRESPONSIVE_S:
            self._mark_lost(index, f"no answer for {UNRESPONSIVE_S:.0f}s ({why})")

    def _each(self, method: str, *args: Any, timeout: float = CALL_TIMEOUT_S) -> dict[int, Any]:
        """Call ``method`` on every live actor at once; the answers of those that answered."""
        refs = {i: getattr(self._actors[i], method).remote(*args) for i in self._live()}
        deadline = time.monotonic() + timeout
        answers: dict[int, Any] = {}
        for index, ref in refs.items():
            try:
                answers[index] = self._result(index, ref, deadline - time.monotonic())
            except InstanceLost:
                continue
            except _Unanswered as exc:
                self._unanswered(index, str(exc))
        return answers

    def _one(self, index: int, method: str, *args: Any, timeout: float) -> Any:
        if index in self._lost:
            raise InstanceLost(f"{self.hosts[index]} was lost: {self._lost[index]}")
        ref = getattr(self._actors[index], method).remote(*args)
        try:
            return self._result(index, ref, timeout)
        except _Unanswered as exc:
            raise InstanceLost(f"{self.hosts[index]} did not answer {method}: {exc}") from None

    # --- the Cluster protocol --------------------------------------------------------------

    def prepare(self) -> None:
        refs = [actor.prepare.remote() for actor in self._actors]
        deadline = time.monotonic() + PREPARE_TIMEOUT_S
        waiting = list(refs)
        while waiting and time.monotonic() < deadline:
            try:
                _, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=PREPARE_PUMP_S)
            except Exception as exc:  # the client connection, not an instance, failed
                raise InstanceLost(f"lost the Ray cluster while preparing: {exc}") from None
            self._stash(self._pump())  # the user sees downloads and env builds as they go
        for index, ref in enumerate(refs):
            try:
                problem = self._result(index, ref, CALL_TIMEOUT_S if not waiting else 0)
            except _Unanswered as exc:
                raise InstanceLost(f"{self.hosts[index]} did not finish preparing: {exc}") from None
            except InstanceLost:
                raise InstanceLost(f"{self.hosts[index]}: {self._lost[index]}") from None
            if problem is not None:
                raise InstanceError(f"{self.hosts[index]}: {problem}")

    def start(self) -> list[dict[str, object]]:
        refs = [actor.start.remote() for actor in self._actors]
        started: list[dict[str, object]] = []
        for index, ref in enumerate(refs):
            record: dict[str, object] = {"host": self.hosts[index], "pid": None}
            try:
                record.update(self._result(index, ref, CALL_TIMEOUT_S))
            except _Unanswered as exc:
                self._mark_lost(index, f"it did not answer start ({exc})")
            except InstanceLost:
                pass  # poll reports it as exited with -9
            started.append(record)
        return started

    def poll(self) -> list[int | None]:
        answers = self._each("poll")
        return [LOST_CODE if i in self._lost else answers.get(i) for i in range(len(self._actors))]

    def stop(self, grace_s: float) -> None:
        self._each("stop", grace_s, timeout=grace_s + CALL_TIMEOUT_S)
        self._stash(self._pump())

    def kill(self) -> None:
        self._each("kill")
        self._stash(self._pump())

    def pump_logs(self) -> dict[str, list[str]]:
        fresh = self._pump()
        out = {host: self._pending[host] + fresh.get(host, []) for host in self.hosts}
        self._pending = {host: [] for host in self.hosts}
        return out

    def checkpoint_files(self) -> dict[str, FileState]:
        return dict(self._one(0, "checkpoint_files", timeout=CALL_TIMEOUT_S))

    def read_file(self, area: str, relative: str, host: int = 0) -> bytes:
        return bytes(self._one(host, "read_file", area, relative, timeout=TRANSFER_TIMEOUT_S))

    def output_files(self, host: int) -> dict[str, FileState]:
        return dict(self._one(host, "output_files", timeout=CALL_TIMEOUT_S))

    def pack_model(self) -> bytes:
        return bytes(self._one(0, "pack_model", timeout=TRANSFER_TIMEOUT_S))

    def failure_text(self, host: int) -> str:
        if host in self._lost:
            return f"{self.hosts[host]} was lost: {self._lost[host]}"
        try:
            return str(self._one(host, "failure_text", timeout=CALL_TIMEOUT_S))
        except (InstanceLost, OSError):
            return ""

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._pump()  # the last lines, for the live log file
        with contextlib.suppress(Exception):
            self._each("cleanup")
        for actor in self._actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        with contextlib.suppress(Exception):
            remove_placement_group(self._group)

    # --- logs ------------------------------------------------------------------------------

    def _append(self, index: int, data: bytes) -> None:
        path = self._logs[index]
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as f:
            f.write(data)

    def _pump(self) -> dict[str, list[str]]:
        """Copy each live instance's new log bytes to its server-side file; the new complete
        lines per host (a partial last line waits for its end). A host with more than one
        chunk waiting is read again, a few times, so a failure's last lines reach the file
        the controller quotes from even after a burst of output."""
        lines: dict[str, list[str]] = {host: [] for host in self.hosts}
        behind = self._live()
        for _ in range(PUMP_ROUNDS):
            if not behind:
                break
            refs = {i: self._actors[i].read_log.remote(self._offsets[i]) for i in behind}
            deadline = time.monotonic() + CALL_TIMEOUT_S
            behind = []
            for index, ref in refs.items():
                try:
                    chunk = bytes(self._result(index, ref, deadline - time.monotonic()))
                except InstanceLost:
                    continue
                except _Unanswered as exc:
                    self._unanswered(index, str(exc))
                    continue
                lines[self.hosts[index]].extend(self._take(index, chunk))
                if len(chunk) >= LOG_CHUNK_BYTES:
                    behind.append(index)
        return lines

    def _take(self, index: int, chunk: bytes) -> list[str]:
        if not chunk:
            return []
        self._append(index, chunk)
        self._offsets[index] += len(chunk)
        *complete, self._partial[index] = (self._partial[index] + chunk).split(b"\n")
        return [line.decode("utf-8", errors="replace") for line in complete]

    def _stash(self, lines: dict[str, list[str]]) -> None:
        """Lines copied outside pump_logs, handed to the controller by its next call."""
        for host, new in lines.items():
            self._pending[host].extend(new)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


class RayBackend:
    """Instances as Ray actors on the cluster behind a Ray Client address."""

    name = "ray"

    def __init__(self, address: str) -> None:
        self.address = check_address(address)
        self._lock = threading.Lock()
        self._actor_class: Any = None

    # --- the connection ----------------------------------------------------------------------

    def _connect(self) -> Any:
        """The remote actor class, connecting first (lazily, once per connection; again if
        the Ray Client connection dropped). Safe to call from every controller thread."""
        with self._lock:
            if self._actor_class is not None and _client_connected():
                return self._actor_class
            for attempt in range(1, CONNECT_ATTEMPTS + 1):
                if ray.is_initialized():
                    with contextlib.suppress(Exception):
                        ray.shutdown()
                try:
                    ray.init(self.address, namespace=NAMESPACE, log_to_driver=False)
                    break
                except ConnectionError as exc:
                    # The head's client server sometimes loses the per-client server it
                    # forks (seen on a loaded machine); a new connection gets a new one.
                    if attempt == CONNECT_ATTEMPTS:
                        raise RuntimeError(
                            f"cannot connect to the Ray cluster at {self.address} "
                            f"({CONNECT_ATTEMPTS} attempts): {_first_line(exc)}"
                        ) from exc
                    time.sleep(attempt)
            self._actor_class = ray.remote(InstanceActor)
            return self._actor_class

    # --- the Backend protocol ----------------------------------------------------------------

    def isolation_problem(self) -> str | None:
        return (
            "the Ray backend cannot isolate a job's network: its instances may run on "
            "different Ray nodes, and a network namespace cannot span machines"
        )

    def launch(
        self,
        work_dir: Path,
        build: SpecBuilder,
        logs: Sequence[Path],
        *,
        isolate_network: bool,
    ) -> RayCluster:
        """Place one actor per instance, find rank 0's address, hand each actor its spec.
        ``work_dir`` is the server's and is not used: instances live on the nodes."""
        if isolate_network:
            raise IsolationRefused(self.isolation_problem())
        actor_class = self._connect()
        count = len(logs)
        hosts = [f"algo-{i + 1}" for i in range(count)]
        # The CPU request must precede placement, which precedes knowing rank 0's address:
        # a first build with a placeholder address gives it (build is cheap and pure).
        first = build("127.0.0.1", 1)[0]
        cpus = actor_cpus(first.cpus, count, _node_cpus())
        group = placement_group([{"CPU": cpus}] * count, strategy="SPREAD")
        actors: list[Any] = []
        try:
            _wait_placed(group)
            actors = [
                actor_class.options(
                    num_cpus=cpus,
                    max_restarts=0,
                    max_task_retries=0,
                    max_concurrency=ACTOR_CONCURRENCY,
                    scheduling_strategy=PlacementGroupSchedulingStrategy(
                        placement_group=group, placement_group_bundle_index=index
                    ),
                ).remote(f"{first.job_name}-{first.attempt}-{host}")
                for index, host in enumerate(hosts)
            ]
            places = ray.get([a.locate.remote() for a in actors], timeout=PLACEMENT_TIMEOUT_S)
            specs = build(places[0]["ip"], places[0]["port"])
            slots = _slots([place["node_id"] for place in places])
            setups = [
                a.setup.remote(s, slot) for a, s, slot in zip(actors, specs, slots, strict=True)
            ]
            ray.get(setups, timeout=CALL_TIMEOUT_S)
        except BaseException:
            _release(actors, group)
            raise
        return RayCluster(actors, group, hosts, logs)


def _client_connected() -> bool:
    return bool(ray.util.client.ray.is_connected())  # type: ignore[no-untyped-call]


def _node_cpus() -> list[float]:
    return [
        float(node.get("Resources", {}).get("CPU", 0.0))
        for node in ray.nodes()  # type: ignore[no-untyped-call]
        if node.get("Alive")
    ]


def _wait_placed(group: Any) -> None:
    try:
        ray.get(group.ready(), timeout=PLACEMENT_TIMEOUT_S)
    except GetTimeoutError:
        raise RuntimeError(
            f"the Ray cluster found no room for the job's instances in {PLACEMENT_TIMEOUT_S:.0f}s"
        ) from None


def _slots(node_ids: Sequence[str]) -> list[int]:
    """Each instance's position among the job's instances on its node (for CPU pinning)."""
    seen: dict[str, int] = {}
    slots = []
    for node in node_ids:
        slots.append(seen.get(node, 0))
        seen[node] = slots[-1] + 1
    return slots


def _release(actors: Sequence[Any], group: Any) -> None:
    for actor in actors:
        with contextlib.suppress(Exception):
            ray.kill(actor, no_restart=True)
    with contextlib.suppress(Exception):
        remove_placement_group(group)


__all__ = ["InstanceActor", "RayBackend", "RayCluster", "actor_cpus", "check_address"]
