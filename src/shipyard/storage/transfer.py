"""Streaming encrypted transfers between an HTTP body and a blob, in constant memory.

The event loop only moves body pieces; hashing, AES-GCM and blob I/O run on worker threads,
a whole 4 MiB chunk at a time, so one large transfer never stalls other requests and the
per-piece thread hop does not dominate.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, ClassVar

import anyio

from shipyard.errors import IntegrityFailure, PayloadTooLarge, StoreUnavailable
from shipyard.storage.backends import STORE_ERRORS, BlobStore
from shipyard.storage.crypto import HEADER_SIZE, TAG, Decryptor, Encryptor


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


def _unavailable(operation: str, exc: BaseException) -> StoreUnavailable:
    """A store failure (disk full, S3 down) as a 503 that names it, never a bare 500."""
    return StoreUnavailable(f"the artifact store failed to {operation}: {exc}")


class _ChunkCutter:
    """Cuts a stream of body pieces into whole chunks, copying each byte exactly once.

    A full chunk is handed on only when more bytes arrive after it, because the last chunk
    must be sealed as final; ``last()`` gives the final (short, full or empty) chunk.
    Buffers come back through ``recycle`` so a long upload reuses a few of them instead of
    asking the allocator for fresh pages every 4 MiB.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._free: list[bytearray] = []
        self._buf = bytearray(size)
        self._fill = 0

    def add(self, piece: bytes) -> Iterator[bytearray]:
        view = memoryview(piece)
        while view:
            if self._fill == self._size:
                yield self._buf
                self._buf = self._free.pop() if self._free else bytearray(self._size)
                self._fill = 0
            take = min(self._size - self._fill, len(view))
            self._buf[self._fill : self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]

    def last(self) -> memoryview:
        return memoryview(self._buf)[: self._fill]

    def recycle(self, buf: bytearray) -> None:
        self._free.append(buf)


class BlobUpload:
    """Encrypts a body into a new blob; nothing is visible under the key unless it completes.

    The event loop only copies body pieces into whole chunks. Three single-thread stages run
    beside it: SHA-256 of the plaintext, AES-GCM sealing, and the blob write. All three
    release the GIL, so on two cores receiving, hashing, sealing and writing overlap. At most
    ``_IN_FLIGHT`` chunks wait in the pipeline, which bounds memory and pushes back on a fast
    client. The stage threads are borrowed from a small pool (``_Stages``).
    """

    _IN_FLIGHT = 3

    def __init__(self, blobs: BlobStore, blob_key: str, data_key: bytes, max_bytes: int) -> None:
        self._blobs = blobs
        self._key = blob_key
        self._encryptor = Encryptor(data_key, blob_key)
        self._chunks = _ChunkCutter(self._encryptor.chunk_size)
        self._sha = hashlib.sha256()
        self._max = max_bytes
        self._received = 0
        self._stack = contextlib.ExitStack()
        self._file: BinaryIO | None = None
        self._stages: _Stages | None = None
        self._writes: deque[tuple[Future[None], bytearray | None, bytearray]] = deque()
        self._sealed_free: list[bytearray] = []

    async def write_all(self, body: AsyncIterator[bytes]) -> WrittenBlob:
        self._stages = _Stages.acquire()
        try:
            await self._on_io(self._open)
            async for piece in body:
                self._received += len(piece)
                if self._received > self._max:
                    raise PayloadTooLarge(
                        f"the body exceeds the limit of {self._max} bytes", field="body"
                    )
                for chunk in self._chunks.add(piece):
                    await self._submit(chunk, memoryview(chunk), final=False)
            await self._submit(None, self._chunks.last(), final=True)
            await self._on_io(self._finish)
        except BaseException as exc:
            await self._drain_quietly()
            # On the io stage, so it runs after any write of this upload still under way.
            await self._on_io(self._abort, exc)
            if isinstance(exc, STORE_ERRORS):
                raise _unavailable("write", exc) from exc
            raise
        finally:
            self._stages.release()
            self._stages = None
        return WrittenBlob(self._key, self._encryptor.size, self._sha.hexdigest())

    async def _on_io(self, fn: Callable[..., None], *args: object) -> None:
        assert self._stages is not None
        await asyncio.wrap_future(self._stages.io.submit(fn, *args))

    async def _submit(self, owner: bytearray | None, plain: memoryview, *, final: bool) -> None:
        """Queue one chunk; ``owner`` (the cutter's buffer) and the sealed buffer are reused
        once the chunk is on disk."""
        stages = self._stages
        assert stages is not None
        out = self._sealed_free.pop() if self._sealed_free else bytearray(len(plain) + TAG)
        if len(out) < len(plain) + TAG:
            out = bytearray(len(plain) + TAG)
        hashed = stages.sha.submit(self._sha.update, plain)
        sealed = stages.seal.submit(self._encryptor.seal_chunk, plain, final, out)
        written = stages.io.submit(self._write_when_sealed, sealed, hashed)
        self._writes.append((written, owner, out))
        while len(self._writes) >= self._IN_FLIGHT:
            done, buf, out = self._writes.popleft()
            await asyncio.wrap_future(done)
            self._sealed_free.append(out)
            if buf is not None:
                self._chunks.recycle(buf)

    def _write_when_sealed(self, sealed: Future[bytes | memoryview], hashed: Future[None]) -> None:
        data = sealed.result()
        hashed.result()
        assert self._file is not None
        self._file.write(data)

    async def _drain_quietly(self) -> None:
        while self._writes:
            with contextlib.suppress(BaseException):
                await asyncio.wrap_future(self._writes.popleft()[0])

    def _open(self) -> None:
        self._file = self._stack.enter_context(self._blobs.open_write(self._key))
        self._file.write(self._encryptor.header())

    def _finish(self) -> None:
        # Runs on the io stage after every queued write: earlier writes are complete.
        while self._writes:
            self._writes.popleft()[0].result()
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

    The blob is read one whole sealed chunk at a time (no re-buffering), with one chunk of
    look-ahead to know which is final, and the next chunk is decrypted in a worker thread
    while the current one is being sent, so disk, AES-GCM and the socket overlap.
    """

    def __init__(self, blobs: BlobStore, blob_key: str, data_key: bytes, sha256: str) -> None:
        self._blobs = blobs
        self._key = blob_key
        self._decryptor = Decryptor(data_key, blob_key)
        self._expected_sha = sha256
        self._file: BinaryIO | None = None
        self._sealed_size = 0
        self._pending = b""
        self._held = b""
        self._done = False

    async def start(self) -> None:
        try:
            await anyio.to_thread.run_sync(self._open_and_prime)
        except STORE_ERRORS as exc:
            raise _unavailable("read", exc) from exc

    def _open_and_prime(self) -> None:
        self._file = self._blobs.open_read(self._key)
        try:
            self._sealed_size = self._decryptor.open_header(self._file.read(HEADER_SIZE))
            self._pending = self._file.read(self._sealed_size)
            self._held, self._done = self._step()
        except BaseException:
            self.close()
            raise

    def _step(self) -> tuple[bytes, bool]:
        """The next authenticated plaintext, and whether the whole blob is now verified."""
        assert self._file is not None
        following = self._file.read(self._sealed_size)
        final = not following
        plain = self._decryptor.open_chunk(self._pending, final)
        self._pending = following
        if final and self._decryptor.sha256_hex != self._expected_sha:
            raise IntegrityFailure(f"stored object {self._key} does not match its SHA-256")
        return plain, final

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            held, done = self._held, self._done
            while not done:
                following = asyncio.ensure_future(anyio.to_thread.run_sync(self._step))
                try:
                    if held:
                        yield held
                finally:
                    nxt, done = await following
                held = nxt
            if held:  # the last piece leaves only after the SHA-256 check passed
                yield held
        finally:
            await anyio.to_thread.run_sync(self.close)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
