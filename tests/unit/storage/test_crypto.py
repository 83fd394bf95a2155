"""The chunked AES-GCM blob format: round trips at every size boundary, and tampering caught."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.errors import IntegrityFailure
from shipyard.storage.crypto import HEADER_SIZE, TAG, Decryptor, Encryptor, generate_data_key

CHUNK = 64
KEY = generate_data_key()


def seal(plain: bytes, *, blob: str = "blob-a", reuse_buffer: bool = False) -> bytes:
    enc = Encryptor(KEY, blob, chunk_size=CHUNK)
    pieces = [plain[i : i + CHUNK] for i in range(0, len(plain), CHUNK)] or [b""]
    out = bytearray(CHUNK + TAG) if reuse_buffer else None
    sealed = [enc.header()]
    for i, piece in enumerate(pieces):
        sealed.append(bytes(enc.seal_chunk(piece, i == len(pieces) - 1, out)))
    return b"".join(sealed)


def open_blob(sealed: bytes, *, blob: str = "blob-a") -> tuple[bytes, str]:
    """Read it the way the server does: whole sealed chunks, one of look-ahead."""
    dec = Decryptor(KEY, blob)
    size = dec.open_header(sealed[:HEADER_SIZE])
    rest = sealed[HEADER_SIZE:]
    chunks = [rest[i : i + size] for i in range(0, len(rest), size)]
    if not chunks:
        raise IntegrityFailure("no chunk at all")
    plain = [dec.open_chunk(c, i == len(chunks) - 1) for i, c in enumerate(chunks)]
    return b"".join(plain), dec.sha256_hex


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 5 * CHUNK + 7])
@pytest.mark.parametrize("reuse_buffer", [False, True])
def test_round_trip_at_size_boundaries(size: int, reuse_buffer: bool) -> None:
    import hashlib

    plain = os.urandom(size)
    sealed = seal(plain, reuse_buffer=reuse_buffer)
    if size >= 16:  # shorter random strings turn up in any ciphertext by chance
        assert plain not in sealed
    assert open_blob(sealed) == (plain, hashlib.sha256(plain).hexdigest())


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=4 * CHUNK), st.data())
def test_any_flipped_bit_is_detected(plain: bytes, data: st.DataObject) -> None:
    sealed = bytearray(seal(plain))
    index = data.draw(st.integers(0, len(sealed) - 1))
    sealed[index] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(IntegrityFailure):
        open_blob(bytes(sealed))


def test_truncation_reordering_and_swapping_are_detected() -> None:
    plain = os.urandom(3 * CHUNK + 10)
    sealed = seal(plain)
    full = CHUNK + TAG
    header, body = sealed[:HEADER_SIZE], sealed[HEADER_SIZE:]
    chunks = [body[i : i + full] for i in range(0, len(body), full)]
    attacks = {
        "tail dropped": header + b"".join(chunks[:-1]),
        "chunks swapped": header + chunks[1] + chunks[0] + b"".join(chunks[2:]),
        "chunk repeated": header + chunks[0] + b"".join(chunks),
        "cut mid-chunk": sealed[:-5],
        "header only": header,
    }
    for name, tampered in attacks.items():
        with pytest.raises(IntegrityFailure):
            open_blob(tampered)
        assert name
    with pytest.raises(IntegrityFailure):
        open_blob(sealed, blob="blob-b")  # a blob moved under another key


def test_a_non_final_chunk_must_be_whole() -> None:
    enc = Encryptor(KEY, "b", chunk_size=CHUNK)
    with pytest.raises(ValueError, match="exactly"):
        enc.seal_chunk(b"short", final=False)
    enc.seal_chunk(b"", final=True)
    with pytest.raises(ValueError, match="final"):
        enc.seal_chunk(b"", final=True)
