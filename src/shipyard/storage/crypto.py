"""Chunked AES-256-GCM envelope encryption for blobs, sealed and opened one chunk at a time.

Format: a header (magic ``SYA1``, format version, chunk size, an 8-byte random nonce prefix),
then chunks of ``ciphertext || tag``. Chunk ``i`` uses nonce ``prefix || i`` (big-endian u32)
and authenticates ``blob_id || chunk size || i || final-flag`` as associated data, so a flipped
byte anywhere (header included), a reordered or dropped chunk, a truncated tail, or a blob
swapped for another all fail the tag. The decryptor computes the plaintext SHA-256 on the way.
"""

from __future__ import annotations

import hashlib
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shipyard.errors import IntegrityFailure

MAGIC = b"SYA1"
FORMAT_VERSION = 1
DEFAULT_CHUNK = 4 * 1024 * 1024
TAG = 16
_HEADER = struct.Struct(">4sBI8s")  # magic, version, chunk size, nonce prefix
HEADER_SIZE = _HEADER.size
_MAX_CHUNK = 64 * 1024 * 1024


def generate_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap_key(master_key: bytes, data_key: bytes, *, context: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(master_key).encrypt(nonce, data_key, context)


def unwrap_key(master_key: bytes, wrapped: bytes, *, context: bytes) -> bytes:
    try:
        return AESGCM(master_key).decrypt(wrapped[:12], wrapped[12:], context)
    except (InvalidTag, ValueError) as exc:
        raise IntegrityFailure("a data key does not unwrap with the master key") from exc


def _aad(blob_id: bytes, chunk_size: int, index: int, final: bool) -> bytes:
    return blob_id + struct.pack(">IIB", chunk_size, index, 1 if final else 0)


class Encryptor:
    """Seals a blob chunk by chunk: ``header()`` once, then ``seal_chunk`` per whole chunk.

    Every chunk but the last must be exactly ``chunk_size`` long; the last (possibly short,
    possibly empty for an empty object) is sealed with ``final=True``. Callers cut the body
    into chunks themselves, so plaintext is never re-buffered here.
    """

    def __init__(self, data_key: bytes, blob_id: str, chunk_size: int = DEFAULT_CHUNK) -> None:
        self._aead = AESGCM(data_key)
        self._blob_id = blob_id.encode()
        self.chunk_size = chunk_size
        self._prefix = os.urandom(8)
        self._index = 0
        self._done = False
        self.size = 0

    def header(self) -> bytes:
        return _HEADER.pack(MAGIC, FORMAT_VERSION, self.chunk_size, self._prefix)

    def seal_chunk(
        self, plain: bytes | bytearray | memoryview, final: bool, out: bytearray | None = None
    ) -> bytes | memoryview:
        """Seal one chunk; into ``out`` (at least ``chunk_size + 16`` bytes) when given, so a
        long stream reuses a few buffers instead of allocating 4 MiB per chunk."""
        if self._done:
            raise ValueError("the final chunk was already sealed")
        if len(plain) > self.chunk_size or (len(plain) < self.chunk_size and not final):
            raise ValueError(f"a non-final chunk must be exactly {self.chunk_size} bytes")
        nonce = self._prefix + struct.pack(">I", self._index)
        aad = _aad(self._blob_id, self.chunk_size, self._index, final)
        sealed: bytes | memoryview
        if out is None:
            sealed = self._aead.encrypt(nonce, plain, aad)
        else:
            view = memoryview(out)[: len(plain) + TAG]
            self._aead.encrypt_into(nonce, plain, aad, view)
            sealed = view
        self._index += 1
        self._done = final
        self.size += len(plain)
        return sealed


class Decryptor:
    """Opens a blob chunk by chunk: ``open_header`` once, then ``open_chunk`` per sealed chunk.

    Only plaintext whose tag verified is returned; SHA-256 and size of the plaintext are
    computed on the way so the caller can check the whole object at the end.
    """

    def __init__(self, data_key: bytes, blob_id: str) -> None:
        self._aead = AESGCM(data_key)
        self._blob_id = blob_id.encode()
        self._chunk = 0
        self._prefix = b""
        self._index = 0
        self._done = False
        self._sha = hashlib.sha256()

    @property
    def sha256_hex(self) -> str:
        return self._sha.hexdigest()

    def open_header(self, header: bytes) -> int:
        """Read the header; returns the size of one sealed chunk, for reading whole chunks."""
        if len(header) != HEADER_SIZE:
            raise IntegrityFailure("the stored object is truncated (no header)")
        magic, version, chunk, prefix = _HEADER.unpack(header)
        if magic != MAGIC or version != FORMAT_VERSION or not 0 < chunk <= _MAX_CHUNK:
            raise IntegrityFailure("the stored object has no valid encryption header")
        self._chunk, self._prefix = int(chunk), bytes(prefix)
        return self._chunk + TAG

    def open_chunk(self, sealed: bytes, final: bool) -> bytes:
        """Authenticate and decrypt one whole sealed chunk (the last one with ``final``)."""
        full = self._chunk + TAG
        if not self._chunk or self._done:
            raise IntegrityFailure("the stored object is malformed (chunk out of place)")
        if not TAG <= len(sealed) <= full or (len(sealed) < full and not final):
            raise IntegrityFailure("the stored object is truncated or malformed")
        nonce = self._prefix + struct.pack(">I", self._index)
        try:
            aad = _aad(self._blob_id, self._chunk, self._index, final)
            plain = self._aead.decrypt(nonce, sealed, aad)
        except InvalidTag as exc:
            raise IntegrityFailure(
                f"the stored object failed authentication at chunk {self._index}"
            ) from exc
        self._index += 1
        self._done = final
        self._sha.update(plain)
        return plain
