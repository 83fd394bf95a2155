"""Artifacts of one project: versioned, encrypted at rest, streamed in constant memory."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from shipyard.sdk._exceptions import IntegrityError
from shipyard.sdk._transport import mapped_transport_errors, raise_for_error

if TYPE_CHECKING:
    from shipyard.sdk._client import Session

CHUNK = 4 * 1024 * 1024
Progress = Callable[[int, int], None]
"""Called as ``progress(bytes_done, bytes_total)`` while a transfer runs."""


@dataclass(frozen=True)
class ArtifactVersion:
    """One immutable version of an artifact (or a delete marker)."""

    path: str
    version: int
    size: int
    sha256: str
    content_type: str
    created_at: datetime
    created_by: str
    deleted: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ArtifactVersion:
        fields = {k: data[k] for k in cls.__dataclass_fields__}
        fields["created_at"] = datetime.fromisoformat(str(data["created_at"]))
        return cls(**fields)


@dataclass(frozen=True)
class PresignedUrl:
    url: str
    version: int
    expires_at: datetime


def split_project(ref: str) -> tuple[str, str]:
    """``"team/project"`` → ``("team", "project")``; anything else is a ValueError."""
    team, sep, project = ref.partition("/")
    if not sep or not team or not project or "/" in project:
        raise ValueError(f"a project is named TEAM/PROJECT, got {ref!r}")
    return team, project


def encode_path(path: str) -> str:
    """Percent-encode an artifact path for a URL, keeping it exactly as the user wrote it.

    Dot segments are encoded too: HTTP clients resolve ``a/../b`` before sending, which would
    silently turn a bad path into a different, valid-looking one. Encoded, it reaches the
    server verbatim and is refused there with a clear error.
    """
    segments = quote(path, safe="/").split("/")
    return "/".join(s.replace(".", "%2E") if s.strip(".") == "" else s for s in segments)


def _file_chunks(handle: IO[bytes], total: int, progress: Progress | None) -> Iterator[bytes]:
    done = 0
    while chunk := handle.read(CHUNK):
        done += len(chunk)
        yield chunk
        if progress is not None:
            progress(done, total)


class Artifacts:
    """The artifact store of one project; get it with ``session.artifacts("team/project")``.

    Example::

        store = shipyard.Session().artifacts("ml/churn")
        v = store.put("data/marketing.csv", "marketing.csv")
        store.get("data/marketing.csv", version=v.version, dest="copy.csv")
    """

    def __init__(self, session: Session, project: str) -> None:
        self._session = session
        self.team, self.project = split_project(project)
        self._base = f"/api/v1/projects/{quote(self.team)}/{quote(self.project)}"

    def _url(self, kind: str, path: str) -> str:
        return f"{self._base}/{kind}/{encode_path(path)}"

    def put(
        self,
        path: str,
        source: str | os.PathLike[str] | bytes,
        *,
        content_type: str | None = None,
        progress: Progress | None = None,
    ) -> ArtifactVersion:
        """Upload ``source`` (a file path or bytes) as a new version of ``path``.

        Files stream from disk in constant memory; returns the new version, whose ``sha256``
        the server computed over what it received.
        """
        headers = {"Content-Type": content_type or "application/octet-stream"}
        url = self._url("artifacts", path)
        if isinstance(source, bytes):
            data = self._session.request("PUT", url, content=source, headers=headers)
            if progress is not None:
                progress(len(source), len(source))
            return ArtifactVersion.from_json(data)
        file = Path(source)
        total = file.stat().st_size
        headers["Content-Length"] = str(total)
        with file.open("rb") as handle:
            body = _file_chunks(handle, total, progress)
            data = self._session.request("PUT", url, content=body, headers=headers)
        return ArtifactVersion.from_json(data)

    def get(
        self,
        path: str,
        *,
        version: int | None = None,
        dest: str | os.PathLike[str] | None = None,
        progress: Progress | None = None,
    ) -> bytes | Path:
        """Download a version (the latest by default): to ``dest`` (returns the Path) or bytes.

        The SHA-256 is checked on the client too; a file appears at ``dest`` only when the
        whole body arrived and matched, so a broken transfer never leaves a partial file.
        """
        params = {"version": version} if version is not None else None
        url = self._url("artifacts", path)
        client = self._session.http
        with (
            mapped_transport_errors(self._session.url),
            client.stream("GET", url, params=params) as response,
        ):
            raise_for_error(response)
            expected = response.headers.get("x-shipyard-sha256", "")
            total = int(response.headers.get("content-length", 0))
            chunks = _broken_off_is_integrity(response.iter_raw())
            if dest is None:
                return self._receive_bytes(chunks, expected, total, progress)
            return self._receive_file(chunks, Path(dest), expected, total, progress)

    @staticmethod
    def _receive_bytes(
        chunks: Iterator[bytes], expected: str, total: int, progress: Progress | None
    ) -> bytes:
        parts: list[bytes] = []
        sha, done = hashlib.sha256(), 0
        for chunk in chunks:
            parts.append(chunk)
            sha.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        _verify(sha.hexdigest(), expected)
        return b"".join(parts)

    @staticmethod
    def _receive_file(
        chunks: Iterator[bytes],
        dest: Path,
        expected: str,
        total: int,
        progress: Progress | None,
    ) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as out:
                digest = _hash_and_write_behind(chunks, out, total, progress)
            _verify(digest, expected)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return dest

    def head(self, path: str, *, version: int | None = None) -> dict[str, str]:
        """Size, version and SHA-256 of a version, without downloading it."""
        params = {"version": version} if version is not None else None
        url = self._url("artifacts", path)
        with mapped_transport_errors(self._session.url):
            response = self._session.http.head(url, params=params)
        raise_for_error(response)
        return {
            "size": response.headers.get("content-length", ""),
            "version": response.headers.get("x-shipyard-version", ""),
            "sha256": response.headers.get("x-shipyard-sha256", ""),
        }

    def ls(self, prefix: str = "", *, limit: int = 1000) -> list[ArtifactVersion]:
        """The latest live version of every artifact under ``prefix``."""
        data = self._session.request(
            "GET", f"{self._base}/artifacts", params={"prefix": prefix, "limit": limit}
        )
        return [ArtifactVersion.from_json(d) for d in data]

    def versions(self, path: str) -> list[ArtifactVersion]:
        """Every version of ``path``, delete markers included, oldest first."""
        data = self._session.request("GET", self._url("artifact-versions", path))
        return [ArtifactVersion.from_json(d) for d in data]

    def delete(self, path: str) -> ArtifactVersion:
        """Write a delete marker; earlier versions stay readable by number."""
        return ArtifactVersion.from_json(
            self._session.request("DELETE", self._url("artifacts", path))
        )

    def presign(
        self, path: str, *, expires_in: int = 3600, version: int | None = None
    ) -> PresignedUrl:
        """An expiring URL that downloads one version without a token."""
        body: dict[str, Any] = {"expires_in": expires_in}
        if version is not None:
            body["version"] = version
        data = self._session.request("POST", self._url("artifact-presign", path), json=body)
        return PresignedUrl(
            url=data["url"],
            version=data["version"],
            expires_at=datetime.fromisoformat(str(data["expires_at"])),
        )


def _hash_and_write_behind(
    chunks: Iterator[bytes], out: IO[bytes], total: int, progress: Progress | None
) -> str:
    """Hash and write received bytes on two more threads while the next bytes arrive.

    SHA-256 and disk writes release the GIL, so on a multi-core machine they overlap the
    network read (and each other) instead of adding to it. Pieces go over in batches of about
    ``CHUNK`` to keep the hand-over cheap; at most a few batches wait, which bounds memory.
    """
    sha = hashlib.sha256()

    def hash_batch(batch: list[bytes]) -> None:
        for piece in batch:
            sha.update(piece)

    def write_batch(batch: list[bytes]) -> None:
        for piece in batch:
            out.write(piece)

    with (
        ThreadPoolExecutor(1, thread_name_prefix="shipyard-sha") as hasher,
        ThreadPoolExecutor(1, thread_name_prefix="shipyard-write") as writer,
    ):
        waiting: deque[Future[None]] = deque()
        batch: list[bytes] = []
        size = done = 0
        for piece in chunks:
            batch.append(piece)
            size += len(piece)
            done += len(piece)
            if size >= CHUNK:
                waiting.extend(
                    (hasher.submit(hash_batch, batch), writer.submit(write_batch, batch))
                )
                batch, size = [], 0
                while len(waiting) > 4:
                    waiting.popleft().result()
                if progress is not None:
                    progress(done, total)
        waiting.extend((hasher.submit(hash_batch, batch), writer.submit(write_batch, batch)))
        for future in waiting:
            future.result()
    if progress is not None:
        progress(done, total)
    return sha.hexdigest()


def _broken_off_is_integrity(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """A body cut short is reported as such: the server stops sending rather than send bytes
    that fail their SHA-256, and a dropped connection looks the same from here."""
    try:
        yield from chunks
    except httpx.RemoteProtocolError as exc:
        raise IntegrityError(
            "the download broke off before the end: the stored object failed its integrity "
            "check, or the connection dropped; nothing was written"
        ) from exc


def _verify(actual: str, expected: str) -> None:
    if expected and actual != expected:
        raise IntegrityError(
            f"downloaded bytes do not match the stored SHA-256 ({actual} != {expected})"
        )
