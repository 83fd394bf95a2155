"""One instance of a job, on the machine that runs it: materialise, run, report, collect.

The same class serves every backend. Locally the controller drives it in-process; on Ray it
lives inside an actor on whichever node Ray picked. So it assumes no shared filesystem with
the platform: code, inputs and checkpoints arrive as presigned URLs it downloads itself, and
what it produces (logs, checkpoints, the model, output files) leaves through its methods as
bytes the controller stores. Everything that crosses that boundary is a plain dataclass, so it
pickles for Ray.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tarfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from shipyard.jobs import runtime
from shipyard.jobs.backends.process import InstanceProcess, Limits
from shipyard.kit.files import open_private_append, write_private
from shipyard.kit.tls import client_ssl_context

DOWNLOAD_TIMEOUT_S = 300.0
LOG_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Fetch:
    """A file to download into the instance: ``dest`` is relative to its area."""

    dest: str
    url: str


@dataclass(frozen=True)
class InstanceSpec:
    """Everything one instance needs, decided by the controller."""

    job_name: str
    placement: runtime.Placement
    entry_point: str
    hyperparameters: dict[str, Any]
    arguments: list[str]
    environment: dict[str, str]  # user variables, then the platform's SHIPYARD_* ones
    source: Fetch | None
    channels: dict[str, list[Fetch]]
    checkpoints: list[Fetch]
    requirements: str | None
    memory_bytes: int | None
    cpus: int = 1
    attempt: int = 1
    command_prefix: list[str] = field(default_factory=list)  # e.g. joining a network namespace


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int


_client: httpx.Client | None = None
_client_lock = threading.Lock()


def _download_client() -> httpx.Client:
    """One HTTP client per process, shared by every instance it prepares: building a client
    (its TLS context) costs more than fetching a small source over loopback."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(
                timeout=DOWNLOAD_TIMEOUT_S, follow_redirects=False, verify=client_ssl_context()
            )
        return _client


class InstanceError(Exception):
    """The instance could not be prepared (a download, the source, the environment)."""


def unpack_source(data: bytes, dest: Path) -> None:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            tar.extractall(dest, filter="data")  # no absolute paths, "..", devices, outward links
    except (tarfile.TarError, OSError) as exc:
        raise InstanceError(f"the source could not be unpacked: {exc}") from exc


def _inside(base: Path, relative: str) -> Path:
    """``base / relative`` if it stays inside ``base`` (names come from the store)."""
    rel = PurePosixPath(relative)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise InstanceError(f"refusing path {relative!r}")
    return base.joinpath(*rel.parts)


def pack_directory(directory: Path) -> bytes:
    """``directory``'s contents as a tar.gz, names relative to it (SageMaker's model.tar.gz)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and not path.is_symlink():
                tar.add(path, arcname=str(path.relative_to(directory)))
    return buffer.getvalue()


def files_under(directory: Path) -> dict[str, FileState]:
    found: dict[str, FileState] = {}
    if not directory.exists():
        return found
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            relative = path.relative_to(directory).as_posix()
            found[relative] = FileState(stat.st_size, stat.st_mtime_ns)
    return found


class InstanceHost:
    """One instance: a job tree under ``root``, one process group, one log file."""

    def __init__(
        self,
        spec: InstanceSpec,
        *,
        root: Path,
        log_path: Path,
        cpus: tuple[int, ...],
        python_for: Callable[[bytes | None, Callable[[str], None]], Path],
    ) -> None:
        self.spec = spec
        self.layout = runtime.JobLayout(root.resolve())
        self.log_path = log_path
        self.cpus = cpus
        self._python_for = python_for
        self._python: Path | None = None
        self._process: InstanceProcess | None = None

    # --- preparing ---------------------------------------------------------------------

    def note(self, message: str) -> None:
        """A platform line in the instance's log, so a user sees each phase where it is."""
        with open_private_append(self.log_path) as log:
            log.write(f"[shipyard] {message}\n".encode())

    def prepare(self) -> None:
        """Lay out the tree and fill it: source, channels, checkpoints, environment, config."""
        spec = self.spec
        if self.layout.root.exists():
            shutil.rmtree(self.layout.root)
        self.layout.root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.layout.create(list(spec.channels))
        client = _download_client()
        if spec.source is not None:
            unpack_source(self._get(client, spec.source), self.layout.code_dir)
        for channel, fetches in spec.channels.items():
            self._download_all(client, fetches, self.layout.channel_dir(channel))
        if spec.checkpoints:
            self.note(f"restoring {len(spec.checkpoints)} checkpoint file(s)")
            self._download_all(client, spec.checkpoints, self.layout.checkpoint_dir)
        requirements = None
        if spec.requirements:
            requirements = _inside(self.layout.code_dir, spec.requirements).read_bytes()
        self._python = self._python_for(requirements, self.note)
        runtime.write_config(
            self.layout,
            spec.placement,
            hyperparameters=spec.hyperparameters,
            channels=list(spec.channels),
        )

    def _download_all(self, client: httpx.Client, fetches: Sequence[Fetch], base: Path) -> None:
        for fetch in fetches:
            target = _inside(base, fetch.dest)
            for parent in reversed(target.relative_to(base).parents[:-1]):
                (base / parent).mkdir(mode=0o700, exist_ok=True)
            write_private(target, self._get(client, fetch))

    def _get(self, client: httpx.Client, fetch: Fetch) -> bytes:
        try:
            response = client.get(fetch.url)
        except httpx.HTTPError as exc:
            raise InstanceError(f"downloading {fetch.dest}: {exc}") from exc
        if response.status_code != 200:
            raise InstanceError(
                f"downloading {fetch.dest}: HTTP {response.status_code} {response.text[:200]}"
            )
        return response.content

    # --- running -----------------------------------------------------------------------

    def command(self) -> list[str]:
        spec, python = self.spec, self._python or Path(sys.executable)
        args = runtime.hyperparameter_args(spec.hyperparameters) + list(spec.arguments)
        if spec.entry_point.endswith(".py"):
            target = [str(python), str(_inside(self.layout.code_dir, spec.entry_point))]
        else:
            target = [str(python), "-m", spec.entry_point]
        return [*spec.command_prefix, *target, *args]

    def environment(self) -> dict[str, str]:
        spec = self.spec
        env = {
            name: os.environ[name]
            for name in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
            if name in os.environ
        }
        env.update(spec.environment)
        env.update(
            runtime.runtime_env(
                self.layout,
                spec.placement,
                entry_point=spec.entry_point,
                hyperparameters=spec.hyperparameters,
                channels=list(spec.channels),
                job_name=spec.job_name,
                user_args=spec.arguments,
            )
        )
        code = str(self.layout.code_dir)
        env["PYTHONPATH"] = code + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
        env["SHIPYARD_ATTEMPT"] = str(spec.attempt)
        return env

    def start(self) -> int:
        """Start the script; its pid (the group's id)."""
        self.note(f"attempt {self.spec.attempt}: starting {self.spec.entry_point}")
        self._process = InstanceProcess(
            self.command(),
            env=self.environment(),
            cwd=self.layout.code_dir,
            log_path=self.log_path,
            limits=Limits(self.cpus, self.spec.memory_bytes),
        )
        return self._process.pid

    def poll(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def stop(self, grace_s: float) -> int | None:
        return None if self._process is None else self._process.stop(grace_s)

    def kill(self) -> int | None:
        return None if self._process is None else self._process.kill()

    def read_log(self, offset: int, limit: int = LOG_CHUNK_BYTES) -> bytes:
        if not self.log_path.exists():
            return b""
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read(limit)

    def failure_text(self) -> str:
        """What the script wrote to ``output/failure`` (SageMaker's convention), if anything."""
        path = self.layout.failure_file
        if not path.is_file():
            return ""
        return path.read_bytes()[:4096].decode("utf-8", errors="replace").strip()

    # --- collecting --------------------------------------------------------------------

    def checkpoint_files(self) -> dict[str, FileState]:
        return files_under(self.layout.checkpoint_dir)

    def output_files(self) -> dict[str, FileState]:
        return files_under(self.layout.output_data_dir)

    def read_file(self, area: str, relative: str) -> bytes:
        base = {"checkpoints": self.layout.checkpoint_dir, "output": self.layout.output_data_dir}
        return _inside(base[area], relative).read_bytes()

    def pack_model(self) -> bytes:
        return pack_directory(self.layout.model_dir)

    def cleanup(self) -> None:
        shutil.rmtree(self.layout.root, ignore_errors=True)
