"""The key service: the master key, keys derived from it, and the audit signing key.

The master key lives in ``$SHIPYARD_HOME/master.key`` (0600) or ``SHIPYARD_MASTER_KEY``; it
never encrypts data directly. It wraps per-project data keys (storage) and derives, through
HKDF with a purpose label, the secrets that sign access tokens and presigned URLs and that
encrypt API-key secrets. Other processes (gateway, workers) may hold an older copy after a
rotation, so every wrapped value records the fingerprint of the key that wrapped it.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shipyard.errors import IntegrityFailure
from shipyard.kit.files import write_private


def fingerprint(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def _derive(master: bytes, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
        master
    )


class MasterKey:
    """Holds the current master key and, during a rotation, the next one.

    Rotation is crash-safe: the new key is first written to ``master.key.next``, then every
    wrapped value is re-wrapped in one DB transaction, then the file replaces ``master.key``.
    Every wrapped value names its key's fingerprint, so whichever step a crash interrupts,
    ``key_for`` finds the key it needs in one of the two files.
    """

    def __init__(self, path: Path, inline_b64: str | None = None) -> None:
        self._path = path
        self._next_path = path.with_name(path.name + ".next")
        self._inline = inline_b64
        self._key = self._load_or_create()

    def _load_or_create(self) -> bytes:
        if self._inline:
            return base64.b64decode(self._inline)
        if not self._path.exists():
            write_private(self._path, base64.b64encode(os.urandom(32)))
        return base64.b64decode(self._path.read_bytes().strip())

    def _candidates(self) -> dict[str, bytes]:
        keys = {fingerprint(self._key): self._key}
        for path in (self._path, self._next_path):
            if not self._inline and path.exists():
                key = base64.b64decode(path.read_bytes().strip())
                keys[fingerprint(key)] = key
        return keys

    @property
    def key(self) -> bytes:
        return self._key

    @property
    def key_id(self) -> str:
        return fingerprint(self._key)

    def key_for(self, key_id: str) -> bytes:
        """The master key with this fingerprint, re-reading the files if another process rotated."""
        if key_id == self.key_id:
            return self._key
        key = self._candidates().get(key_id)
        if key is None:
            raise IntegrityFailure(f"master key {key_id} is not available")
        if self._path.exists() and fingerprint(self._load_or_create()) == key_id:
            self._key = key
        return key

    def derive(self, purpose: str) -> bytes:
        return _derive(self._key, purpose)

    def begin_rotation(self) -> bytes:
        """Create and persist the next key (before anything is re-wrapped under it)."""
        if self._inline:
            raise IntegrityFailure("the master key comes from SHIPYARD_MASTER_KEY; rotate it there")
        new_key = os.urandom(32)
        write_private(self._next_path, base64.b64encode(new_key))
        return new_key

    def finish_rotation(self, new_key: bytes) -> None:
        """Make the next key current, once everything is re-wrapped and committed."""
        os.replace(self._next_path, self._path)
        self._key = new_key

    def abort_rotation(self) -> None:
        self._next_path.unlink(missing_ok=True)

    def seal(self, plaintext: bytes, *, context: bytes) -> bytes:
        """Seal a small secret (an API key's) under the current key: fingerprint + nonce + box."""
        return seal_with(self._key, plaintext, context=context)

    def unseal(self, sealed: bytes, *, context: bytes) -> bytes:
        key_id = sealed[:16].decode("ascii", errors="replace")
        return unseal_with(self.key_for(key_id), sealed, context=context)


def seal_with(master: bytes, plaintext: bytes, *, context: bytes) -> bytes:
    nonce = os.urandom(12)
    box = AESGCM(_derive(master, "secret-sealing")).encrypt(nonce, plaintext, context)
    return fingerprint(master).encode() + nonce + box


def unseal_with(master: bytes, sealed: bytes, *, context: bytes) -> bytes:
    try:
        aead = AESGCM(_derive(master, "secret-sealing"))
        return aead.decrypt(sealed[16:28], sealed[28:], context)
    except Exception as exc:
        raise IntegrityFailure("a sealed secret does not open with the master key") from exc


class SigningKey:
    """The Ed25519 key that signs audit digests."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raw = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_private(path, raw)
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise IntegrityFailure(f"{path} is not an Ed25519 private key")
        self._private = loaded

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._private.public_key()

    @property
    def fingerprint(self) -> str:
        raw = self.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return fingerprint(raw)

    def sign(self, message: bytes) -> str:
        return self._private.sign(message).hex()

    def verify(self, message: bytes, signature_hex: str) -> bool:
        try:
            self.public_key.verify(bytes.fromhex(signature_hex), message)
        except Exception:
            return False
        return True
