"""Streaming encrypted transfers between an HTTP body and a blob, in constant memory.

The event loop only gathers body pieces; encryption, hashing and blob I/O run in a worker
thread on batches of a few MiB, so one large transfer never stalls other requests and the
per-piece thread hop does not dominate.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, ClassVar

import anyio

from shipyard.errors import IntegrityFailure, PayloadTooLarge
from shipyard.storage.backends import BlobStore
from shipyard.storage.crypto import Decryptor, Encryptor

BATCH = 4 * 1024 * 1024
READ_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class WrittenBlob:
    blob_key: str
    size: int
    sha256: str


class _Stages:
    """The three single-thread executors of an upload (SHA-256, sealing, blob I/O), reused.

    An upload holds one set for its whole life, so each stage still runs that upload's
    batches one at a time and in order; afterwards the set waits for the next upload instead
    of being torn down. Starting three threads per upload cost thread starts and, with glibc,
    fresh threads pick up malloc arenas of their own, so resident memory crept with traffic.
    A few idle sets are kept; concurrent uploads beyond that make (and later drop) their own.
    """

    KEEP_IDLE: ClassVar[int] = 4
    _idle: ClassVar[list[_Stages]] = []
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self.sha, self.seal, self.io = (
            ThreadPoolExecutor(1, thread_name_prefix=f"upload-{name}")
            for name in ("sha", "seal", "io")
        )

    @classmethod
    def acquire(cls) -> _Stages:
        with cls._lock:
            if cls._idle:
                return cls._idle.pop()
        return cls()

    def release(self) -> None:
        with self._lock:
            if len(self._idle) < self.KEEP_IDLE:
                self._idle.append(self)
                return
        for executor in (self.sha, self.seal, self.io):
            executor.shutdown(wait=False)


class BlobUpload:
    """Encrypts a body into a new blob; nothing is visible under the key unless it completes.

    Three single-thread stages run beside the event loop: SHA-256 of the plaintext,
    AES-GCM sealing, and the blob write. All three release the GIL, so on two cores receiving,
    hashing, sealing and writing overlap. At most ``_IN_FLIGHT`` batches wait in the
    pipeline, which bounds memory and pushes back on a fast client. The stage threads are
    borrowed from a small pool (``_Stages``) for the upload's duration.
    """

    _IN_FLIGHT = 3

    def __init__(self, blobs: BlobStore, blob_key: str, data_key: bytes, max_bytes: int) -> None:
        self._blobs = blobs
        self._key = blob_key
        self._encryptor = Encryptor(data_key, blob_key, hashing=False)
        self._sha = hashlib.sha256()
        self._max = max_bytes
        self._received = 0
        self._stack = contextlib.ExitStack()
        self._file: BinaryIO | None = None
        self._stages: _Stages | None = None
        self._writes: deque[Future[None]] = deque()

    async def write_all(self, body: AsyncIterator[bytes]) -> WrittenBlob:
        self._stages = _Stages.acquire()
        try:
            await self._on_io(self._open)
            pending: list[bytes] = []
            pending_size = 0
            async for piece in body:
                self._received += len(piece)
                if self._received > self._max:
                    raise PayloadTooLarge(
                        f"the body exceeds the limit of {self._max} bytes", field="body"
                    )
                pending.append(piece)
                pending_size += len(piece)
                if pending_size >= BATCH:
                    await self._submit(b"".join(pending))
                    pending, pending_size = [], 0
            await self._submit(b"".join(pending))
            await self._on_io(self._finish)
        except BaseException as exc:
            await self._drain_quietly()
            # On the io stage, so it runs after any write of this upload still under way.
            await self._on_io(self._abort, exc)
            raise
        finally:
            self._stages.release()
            self._stages = None
        size = self._encryptor.size
        return WrittenBlob(self._key, size, self._sha.hexdigest())

    async def _on_io(self, fn: Callable[..., None], *args: object) -> None:
        assert self._stages is not None
        await asyncio.wrap_future(self._stages.io.submit(fn, *args))

    async def _submit(self, batch: bytes) -> None:
        stages = self._stages
        assert stages is not None
        hashed = stages.sha.submit(self._sha.update, batch)
        sealed = stages.seal.submit(self._encryptor.feed, batch)
        self._writes.append(stages.io.submit(self._write_when_sealed, sealed, hashed))
        while len(self._writes) >= self._IN_FLIGHT:
            await asyncio.wrap_future(self._writes.popleft())

    def _write_when_sealed(self, sealed: Future[bytes], hashed: Future[None]) -> None:
        data = sealed.result()
        hashed.result()
        if data:
            assert self._file is not None
            self._file.write(data)

    async def _drain_quietly(self) -> None:
        while self._writes:
            with contextlib.suppress(BaseException):
                await asyncio.wrap_future(self._writes.popleft())

    def _open(self) -> None:
        self._file = self._stack.enter_context(self._blobs.open_write(self._key))

    def _finish(self) -> None:
        # Runs on the io stage after every queued write: earlier writes are complete.
        while self._writes:
            self._writes.popleft().result()
        assert self._file is not None
        self._file.write(self._encryptor.finish())
        self._stack.close()

    def _abort(self, exc: BaseException) -> None:
        # Exiting the writer's context with the error discards the partial blob.
        self._stack.__exit__(type(exc), exc, exc.__traceback__)


class BlobDownload:
    """Decrypts a blob as an async stream of verified plaintext.

    The first chunk is read and authenticated before the response starts, so a corrupt small
    object gives a clean integrity error. Later, each chunk is authenticated before it is sent,
    and the last piece is held back until the whole body's SHA-256 matches the stored one: a
    client never receives a complete body that is not exactly what was stored.
    """

    def __init__(self, blobs: BlobStore, blob_key: str, data_key: bytes, sha256: str) -> None:
        self._blobs = blobs
        self._key = blob_key
        self._decryptor = Decryptor(data_key, blob_key)
        self._expected_sha = sha256
        self._file: BinaryIO | None = None
        self._held = b""
        self._done = False

    async def start(self) -> None:
        await anyio.to_thread.run_sync(self._open_and_prime)

    def _open_and_prime(self) -> None:
        self._file = self._blobs.open_read(self._key)
        try:
            self._held, self._done = self._step()
        except BaseException:
            self.close()
            raise

    def _step(self) -> tuple[bytes, bool]:
        """The next authenticated plaintext, and whether the whole blob is now verified."""
        assert self._file is not None
        while True:
            data = self._file.read(READ_SIZE)
            if not data:
                tail = self._decryptor.finish()
                if self._decryptor.sha256_hex != self._expected_sha:
                    raise IntegrityFailure(f"stored object {self._key} does not match its SHA-256")
                return tail, True
            out = self._decryptor.feed(data)
            if out:
                return out, False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            held, done = self._held, self._done
            while not done:
                nxt, done = await anyio.to_thread.run_sync(self._step)
                if held:
                    yield held
                held = nxt
            if held:  # the last piece leaves only after the SHA-256 check passed
                yield held
        finally:
            await anyio.to_thread.run_sync(self.close)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
