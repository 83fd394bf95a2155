"""Chunked AES-256-GCM envelope encryption for blobs, as incremental feed/finish streams.

Format: a header (magic ``SYA1``, format version, chunk size, an 8-byte random nonce prefix),
then chunks of ``ciphertext || tag``. Chunk ``i`` uses nonce ``prefix || i`` (big-endian u32)
and authenticates ``blob_id || i || final-flag`` as associated data, so a flipped byte, a
reordered or dropped chunk, a truncated tail, or a blob swapped for another all fail the tag.
Plaintext SHA-256 and size are computed on the way, in the same pass.
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


def master_key_id(master_key: bytes) -> str:
    return hashlib.sha256(master_key).hexdigest()[:16]


def ciphertext_size(plaintext_size: int, chunk_size: int = DEFAULT_CHUNK) -> int:
    chunks = max(1, -(-plaintext_size // chunk_size))
    return HEADER_SIZE + plaintext_size + chunks * TAG


def _aad(blob_id: bytes, index: int, final: bool) -> bytes:
    return blob_id + struct.pack(">IB", index, 1 if final else 0)


class Encryptor:
    """Feed plaintext of any piece size; get ciphertext ready to write; ``finish()`` seals."""

    def __init__(
        self,
        data_key: bytes,
        blob_id: str,
        chunk_size: int = DEFAULT_CHUNK,
        *,
        hashing: bool = True,
    ) -> None:
        """``hashing=False`` leaves SHA-256 to the caller (to run it on another core)."""
        self._hashing = hashing
        self._aead = AESGCM(data_key)
        self._blob_id = blob_id.encode()
        self._chunk = chunk_size
        self._prefix = os.urandom(8)
        self._index = 0
        self._buffer = bytearray()
        self._header_sent = False
        self._sha = hashlib.sha256()
        self.size = 0

    @property
    def sha256_hex(self) -> str:
        return self._sha.hexdigest()

    def _header(self) -> bytes:
        if self._header_sent:
            return b""
        self._header_sent = True
        return _HEADER.pack(MAGIC, FORMAT_VERSION, self._chunk, self._prefix)

    def _seal(self, plain: bytes | memoryview, final: bool) -> bytes:
        nonce = self._prefix + struct.pack(">I", self._index)
        sealed = self._aead.encrypt(nonce, plain, _aad(self._blob_id, self._index, final))
        self._index += 1
        return sealed

    def feed(self, data: bytes) -> bytes:
        if self._hashing:
            self._sha.update(data)
        self.size += len(data)
        out = [self._header()]
        if self._buffer:  # top the buffered partial chunk up first
            take = min(len(data), self._chunk - len(self._buffer))
            self._buffer += data[:take]
            data = data[take:]
            if not data:
                return out[0]
            out.append(self._seal(bytes(self._buffer), False))
            self._buffer = bytearray()
        # Seal whole chunks straight from the input; keep at least one byte back, since the
        # last chunk must be sealed as final in finish().
        view = memoryview(data)
        whole = (len(data) - 1) // self._chunk
        for i in range(whole):
            out.append(self._seal(view[i * self._chunk : (i + 1) * self._chunk], False))
        self._buffer += view[whole * self._chunk :]
        view.release()
        return b"".join(out)

    def finish(self) -> bytes:
        last = self._seal(bytes(self._buffer), True)
        self._buffer = bytearray()
        return self._header() + last


class Decryptor:
    """Feed ciphertext of any piece size; get only plaintext whose chunk tag verified."""

    def __init__(self, data_key: bytes, blob_id: str) -> None:
        self._aead = AESGCM(data_key)
        self._blob_id = blob_id.encode()
        self._buffer = bytearray()
        self._chunk = 0
        self._prefix = b""
        self._index = 0
        self._done = False
        self._sha = hashlib.sha256()
        self.size = 0

    @property
    def sha256_hex(self) -> str:
        return self._sha.hexdigest()

    def _read_header(self) -> bool:
        if self._chunk:
            return True
        if len(self._buffer) < HEADER_SIZE:
            return False
        magic, version, chunk, prefix = _HEADER.unpack(bytes(self._buffer[:HEADER_SIZE]))
        if magic != MAGIC or version != FORMAT_VERSION or not 0 < chunk <= _MAX_CHUNK:
            raise IntegrityFailure("the stored object has no valid encryption header")
        self._chunk, self._prefix = chunk, prefix
        del self._buffer[:HEADER_SIZE]
        return True

    def _open(self, sealed: bytes, final: bool) -> bytes:
        if self._done:
            raise IntegrityFailure("the stored object has data after its final chunk")
        nonce = self._prefix + struct.pack(">I", self._index)
        try:
            plain = self._aead.decrypt(nonce, sealed, _aad(self._blob_id, self._index, final))
        except InvalidTag as exc:
            raise IntegrityFailure(
                f"the stored object failed authentication at chunk {self._index}"
            ) from exc
        self._index += 1
        self._done = final
        self._sha.update(plain)
        self.size += len(plain)
        return plain

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        if not self._read_header():
            return b""
        sealed_size = self._chunk + TAG
        # A full-size sealed chunk is non-final only if more bytes follow it.
        whole = (len(self._buffer) - 1) // sealed_size
        if whole <= 0:
            return b""
        view = memoryview(self._buffer)
        out = [
            self._open(bytes(view[i * sealed_size : (i + 1) * sealed_size]), False)
            for i in range(whole)
        ]
        view.release()
        del self._buffer[: whole * sealed_size]
        return b"".join(out)

    def finish(self) -> bytes:
        if not self._read_header():
            raise IntegrityFailure("the stored object is truncated (no header)")
        if self._done and not self._buffer:
            return b""
        if len(self._buffer) < TAG or len(self._buffer) > self._chunk + TAG:
            raise IntegrityFailure("the stored object is truncated or malformed")
        plain = self._open(bytes(self._buffer), True)
        self._buffer = bytearray()
        return plain
