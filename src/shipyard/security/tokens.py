"""Access tokens (JWT, HS256, 1 hour) and the format of API keys.

Only HS256 is accepted on decode, so ``alg: none`` and algorithm-confusion tokens fail.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from shipyard.errors import Unauthenticated
from shipyard.kit.ids import new_id, utcnow

API_KEY_PREFIX = "shpk_"


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    expires_at: datetime


class AccessTokens:
    """Signs with a key derived from the current master key: a rotation ends every session."""

    def __init__(self, secret: Callable[[], bytes], ttl_s: int) -> None:
        self._secret_of = secret
        self.ttl_s = ttl_s

    @property
    def _secret(self) -> bytes:
        return self._secret_of()

    def issue(self, user_id: str) -> str:
        now = utcnow()
        claims = {
            "sub": user_id,
            "typ": "access",
            "iat": now,
            "exp": now + timedelta(seconds=self.ttl_s),
            "jti": new_id(),
            "iss": "shipyard",
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def decode(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer="shipyard",
                options={"require": ["exp", "sub", "typ", "iat"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("the access token has expired; refresh or log in again") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated("the access token is not valid") from exc
        if claims.get("typ") != "access":
            raise Unauthenticated("the access token is not valid")
        expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
        return AccessClaims(user_id=str(claims["sub"]), expires_at=expires_at)


def new_api_key_id() -> str:
    """20 upper-case characters, like an AWS access key id (it doubles as one for SigV4)."""
    return "SHK" + base64.b32encode(os.urandom(11)).decode()[:17]


def new_api_key_secret() -> str:
    return secrets.token_urlsafe(30)


def format_api_key(key_id: str, secret: str) -> str:
    return f"{API_KEY_PREFIX}{key_id}_{secret}"


def parse_api_key(token: str) -> tuple[str, str]:
    if not token.startswith(API_KEY_PREFIX):
        raise Unauthenticated("the bearer token is neither an access token nor an API key")
    key_id, sep, secret = token[len(API_KEY_PREFIX) :].partition("_")
    if not sep or not key_id or not secret:
        raise Unauthenticated("the API key is malformed")
    return key_id, secret


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith(API_KEY_PREFIX)
