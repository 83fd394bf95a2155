"""Per-project data keys: created on first use, wrapped by the master key, cached unwrapped."""

from __future__ import annotations

import threading

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.errors import IntegrityFailure
from shipyard.security.keyring import MasterKey, fingerprint
from shipyard.storage.crypto import generate_data_key, unwrap_key, wrap_key
from shipyard.storage.models import ProjectDataKey
from shipyard.storage.repository import storage_repository as repo


def _context(project_id: str, key_version: int) -> bytes:
    # Binds a wrapped key to its project and version: it cannot be moved to another project.
    return f"{project_id}:{key_version}".encode()


class DataKeys:
    def __init__(self, master: MasterKey) -> None:
        self._master = master
        self._cache: dict[tuple[str, int, str], bytes] = {}
        self._lock = threading.Lock()

    def current(self, s: Session, project_id: str) -> tuple[int, bytes]:
        """The project's newest data key, creating version 1 on first use."""
        row = repo.latest_data_key(s, project_id)
        if row is None:
            row = self._create(s, project_id)
        return row.key_version, self._unwrap(row)

    def get(self, s: Session, project_id: str, key_version: int) -> bytes:
        row = repo.data_key(s, project_id, key_version)
        if row is None:
            raise IntegrityFailure(f"data key {key_version} of project {project_id} is missing")
        return self._unwrap(row)

    def _create(self, s: Session, project_id: str) -> ProjectDataKey:
        row = ProjectDataKey(
            project_id=project_id,
            key_version=1,
            master_key_id=self._master.key_id,
            wrapped_key=wrap_key(
                self._master.key, generate_data_key(), context=_context(project_id, 1)
            ),
        )
        try:
            with s.begin_nested():
                repo.add(s, row)
        except IntegrityError:  # another request created it first: use theirs
            existing = repo.latest_data_key(s, project_id)
            if existing is None:
                raise
            return existing
        return row

    def _unwrap(self, row: ProjectDataKey) -> bytes:
        cache_key = (row.project_id, row.key_version, row.master_key_id)
        with self._lock:
            cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        master = self._master.key_for(row.master_key_id)
        key = unwrap_key(master, row.wrapped_key, context=_context(row.project_id, row.key_version))
        with self._lock:
            self._cache[cache_key] = key
        return key

    def rewrap_all(self, s: Session, old_master: bytes, new_master: bytes) -> int:
        """Re-wrap every data key under a new master key; blobs are left as they are."""
        rows = repo.all_data_keys(s)
        for row in rows:
            context = _context(row.project_id, row.key_version)
            old = (
                old_master
                if row.master_key_id == fingerprint(old_master)
                else (self._master.key_for(row.master_key_id))
            )
            plain = unwrap_key(old, row.wrapped_key, context=context)
            row.wrapped_key = wrap_key(new_master, plain, context=context)
            row.master_key_id = fingerprint(new_master)
        s.flush()
        return len(rows)
