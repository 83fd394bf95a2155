"""Password hashing with argon2id (the library's tuned defaults).

``use_cost("minimal")`` swaps in the cheapest argon2id parameters for the rest of the process:
test servers create and log in hundreds of users, at ~0.25 s of CPU per hash with the
defaults. It is a setting of ``shipyard up`` (``SHIPYARD_PASSWORD_HASH_COST``), never meant for
production: it makes stolen hashes cheap to crack. Hashes made under either cost verify under
the other (argon2 hashes carry their parameters).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

HashCost = Literal["standard", "minimal"]

# The dummy below is written out rather than made at import: one hash with the defaults costs
# ~0.25 s of every start. Verifying costs the same for any hash with the hasher's parameters;
# should the library's defaults change, a matching one is made instead.
_STANDARD_DUMMY = (
    "$argon2id$v=19$m=65536,t=3,p=4$fPQJIr88vOIISncGhDdMzw$"
    "B0NBqandUEokguD5/mCABS+MF4+yww8xSGQtfnyQ430"
)


def _dummy_for(hasher: PasswordHasher) -> str:
    if hasher.check_needs_rehash(_STANDARD_DUMMY):
        return hasher.hash("not-a-real-password")
    return _STANDARD_DUMMY


_hasher = PasswordHasher()
# Verifying against a fixed hash when the user is unknown keeps timing equal for both cases.
_DUMMY_HASH = _dummy_for(_hasher)


def use_cost(cost: HashCost) -> None:
    """Hash new passwords at ``cost`` from now on in this process (called once, at start)."""
    global _hasher, _DUMMY_HASH
    if cost == "minimal":
        _hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    else:
        _hasher = PasswordHasher()
    _DUMMY_HASH = _dummy_for(_hasher)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def hash_token(token: str) -> str:
    """High-entropy tokens (API keys, refresh tokens) need no slow hash, only a one-way one."""
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
