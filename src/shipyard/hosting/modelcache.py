"""The controller's private cache of models: downloaded once per manifest digest, verified,
then extracted safely, and shared by every replica that serves the same bytes.

A registry version's ``model.tar.gz`` is downloaded into a private temporary directory,
re-hashed against the manifest the version was approved with (``registry.verify_copy``: the
very bytes that will be extracted, so nothing can change between check and use), and only
then unpacked — refusing absolute names, ``..``, links that leave the directory, and device
or FIFO members — and moved into place in one rename. An artifact-based (dev) model is
checked by the store's own SHA-256 on read and cached under that digest.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shipyard.db.engine import Database
from shipyard.kit.files import ensure_private_dir
from shipyard.registry.models import ModelVersion
from shipyard.registry.service import RegistryService
from shipyard.storage.models import ArtifactVersion
from shipyard.storage.service import ArtifactService

MODEL_SUBDIR = "model"
VERIFIED_MARK = ".verified"


class UnsafeArchive(Exception):
    """The model archive holds a member that would land outside its directory."""


@dataclass(frozen=True)
class CachedModel:
    """Where a version's files are, and the key they are cached under."""

    key: str
    path: Path


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    path = PurePosixPath(name)
    if not name or "\x00" in name or "\\" in name:
        raise UnsafeArchive(f"member {name!r}: not a plain relative name")
    if path.is_absolute() or ".." in path.parts:
        raise UnsafeArchive(f"member {name!r}: absolute paths and '..' are refused")
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise UnsafeArchive(f"member {name!r}: device and FIFO members are refused")
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        # a symlink is relative to its own directory, a hard link to the archive's root
        resolved = (path.parent / link) if member.issym() else link
        if link.is_absolute() or _escapes(resolved):
            raise UnsafeArchive(
                f"member {name!r}: its link to {member.linkname!r} leaves the model directory"
            )
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchive(f"member {name!r}: unsupported member type")


def _escapes(path: PurePosixPath) -> bool:
    depth = 0
    for part in path.parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def safe_extract(archive: Path, target: Path) -> None:
    """Unpack ``archive`` into ``target``, refusing anything that could land outside it."""
    ensure_private_dir(target)
    with tarfile.open(archive, mode="r:*") as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member)
        # the "data" filter repeats the checks and drops set-uid bits: defence in depth
        tar.extractall(target, members=members, filter="data")


def unpack(artifact: Path, name: str, target: Path) -> None:
    """A tar archive is extracted; a single file (``model.joblib``) is placed as it is."""
    if tarfile.is_tarfile(artifact):
        safe_extract(artifact, target)
        return
    ensure_private_dir(target)
    plain = PurePosixPath(name).name
    if not plain or plain in (".", ".."):
        raise UnsafeArchive(f"artifact name {name!r} is not a file name")
    shutil.copyfile(artifact, target / plain)


class ModelCache:
    def __init__(
        self, root: Path, db: Database, artifacts: ArtifactService, registry: RegistryService
    ) -> None:
        self.root = root
        self.db = db
        self.artifacts = artifacts
        self.registry = registry
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def version(self, row: ModelVersion) -> CachedModel:
        """A registry version, verified against its approved manifest before first use."""
        key = f"sha256-{row.manifest_digest}"
        with self.db.read() as s:
            artifact = self.artifacts.find(
                s, row.project_id, row.artifact_path, row.artifact_version
            )
        return self._prepare(key, artifact, lambda copy: self.registry.verify_copy(row, copy))

    def artifact(self, artifact: ArtifactVersion) -> CachedModel:
        """A dev model straight from an artifact (the store checks its SHA-256 on read)."""
        return self._prepare(f"artifact-{artifact.sha256}", artifact, None)

    def _prepare(
        self, key: str, artifact: ArtifactVersion, verify: Callable[[Path], None] | None
    ) -> CachedModel:
        final = self.root / key
        with self._lock(key):
            if (final / VERIFIED_MARK).exists():
                return CachedModel(key, final / MODEL_SUBDIR)
            ensure_private_dir(self.root)
            with tempfile.TemporaryDirectory(prefix=".tmp-", dir=self.root) as tmp:
                staging = Path(tmp)
                copy = staging / "artifact"
                asyncio.run(self._download(artifact, copy))
                if verify is not None:
                    verify(copy)
                unpack(copy, artifact.path, staging / "out" / MODEL_SUBDIR)
                (staging / "out" / VERIFIED_MARK).write_text(key)
                if final.exists():  # a half-made leftover of a crash: the mark is missing
                    shutil.rmtree(final, ignore_errors=True)
                (staging / "out").rename(final)
            return CachedModel(key, final / MODEL_SUBDIR)

    async def _download(self, artifact: ArtifactVersion, target: Path) -> None:
        with self.db.read() as s:
            download = await self.artifacts.open_download(s, artifact)
        with target.open("wb") as out:
            async for piece in download:
                out.write(piece)

    def evict(self, key: str) -> None:
        with self._lock(key), contextlib.suppress(OSError):
            shutil.rmtree(self.root / key)
