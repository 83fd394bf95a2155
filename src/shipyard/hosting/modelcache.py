"""The controller's private cache of models: downloaded once per manifest digest, verified,
then extracted safely, and shared by every replica that serves the same bytes.

A registry version's ``model.tar.gz`` is downloaded into a private temporary directory,
re-hashed against the manifest the version was approved with (``registry.verify_copy``: the
very bytes that will be extracted, so nothing can change between check and use), and only
then unpacked — refusing absolute names, ``..``, links that leave the directory, and device
or FIFO members (``kit.archives``, shared with the batch-transform runner) — and moved into
place in one rename. An artifact-based (dev) model is checked by the store's own SHA-256 on
read and cached under that digest.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shipyard.db.engine import Database
from shipyard.kit.archives import UnsafeArchive as UnsafeArchive
from shipyard.kit.archives import safe_extract as safe_extract
from shipyard.kit.archives import unpack
from shipyard.kit.files import ensure_private_dir
from shipyard.registry.models import ModelVersion
from shipyard.registry.service import RegistryService
from shipyard.storage.models import ArtifactVersion
from shipyard.storage.service import ArtifactService

MODEL_SUBDIR = "model"
VERIFIED_MARK = ".verified"


@dataclass(frozen=True)
class CachedModel:
    """Where a version's files are, and the key they are cached under."""

    key: str
    path: Path


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
