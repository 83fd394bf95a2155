"""Access tokens and the API key format, without a server."""

from __future__ import annotations

import base64
import json
import time
import warnings
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from shipyard.errors import Unauthenticated
from shipyard.security.tokens import (
    AccessTokens,
    format_api_key,
    looks_like_jwt,
    new_api_key_id,
    new_api_key_secret,
    parse_api_key,
)

SECRET = b"k" * 32


@pytest.fixture
def tokens() -> AccessTokens:
    return AccessTokens(lambda: SECRET, ttl_s=60)


def _b64(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**changes: object) -> dict[str, object]:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": "u1",
        "typ": "access",
        "iat": now,
        "exp": now + timedelta(minutes=1),
        "iss": "shipyard",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _other_alg(algorithm: str) -> str:
    """Signed with the right secret but another algorithm (PyJWT warns the key is short)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwt.encode(_claims(), SECRET, algorithm=algorithm)


def test_issue_then_decode(tokens: AccessTokens) -> None:
    token = tokens.issue("u1")
    assert looks_like_jwt(token)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert tokens.decode(token).user_id == "u1"


def test_a_new_signing_secret_ends_every_session() -> None:
    current = [SECRET]
    tokens = AccessTokens(lambda: current[0], ttl_s=60)
    token = tokens.issue("u1")
    current[0] = b"n" * 32  # a master-key rotation
    with pytest.raises(Unauthenticated):
        tokens.decode(token)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(
            f"{_b64({'alg': 'none'})}.{_b64(_claims(iat=0, exp=int(time.time()) + 60))}.",
            id="alg none",
        ),
        pytest.param(jwt.encode(_claims(), b"x" * 32, algorithm="HS256"), id="wrong key"),
        pytest.param(_other_alg("HS384"), id="HS384"),
        pytest.param(jwt.encode(_claims(typ="refresh"), SECRET, algorithm="HS256"), id="typ"),
        pytest.param(jwt.encode(_claims(typ=None), SECRET, algorithm="HS256"), id="no typ"),
        pytest.param(jwt.encode(_claims(exp=None), SECRET, algorithm="HS256"), id="no exp"),
        pytest.param(jwt.encode(_claims(iat=None), SECRET, algorithm="HS256"), id="no iat"),
        pytest.param(jwt.encode(_claims(sub=None), SECRET, algorithm="HS256"), id="no sub"),
        pytest.param(jwt.encode(_claims(iss="x"), SECRET, algorithm="HS256"), id="issuer"),
        pytest.param(jwt.encode(_claims(iss=None), SECRET, algorithm="HS256"), id="no issuer"),
        pytest.param(
            jwt.encode(
                _claims(exp=datetime.now(UTC) - timedelta(seconds=1)), SECRET, algorithm="HS256"
            ),
            id="expired",
        ),
        pytest.param("a.b.c", id="malformed"),
        pytest.param(f"{_b64({'alg': 'HS256'})}.{_b64([1, 2])}.sig", id="list payload"),
        pytest.param(f"{_b64(['HS256'])}.{_b64(_claims(iat=0, exp=0))}.sig", id="list header"),
    ],
)
def test_bad_tokens_are_refused(tokens: AccessTokens, token: str) -> None:
    with pytest.raises(Unauthenticated):
        tokens.decode(token)


def test_an_expired_token_says_so(tokens: AccessTokens) -> None:
    token = jwt.encode(
        _claims(exp=datetime.now(UTC) - timedelta(seconds=1)), SECRET, algorithm="HS256"
    )
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.decode(token)


def test_api_key_round_trip() -> None:
    key_id, secret = new_api_key_id(), new_api_key_secret()
    assert len(key_id) == 20 and key_id.isupper() and key_id.isalnum()
    assert len(secret) >= 40
    token = format_api_key(key_id, secret)
    assert not looks_like_jwt(token)
    assert parse_api_key(token) == (key_id, secret)
    assert new_api_key_secret() != secret


@pytest.mark.parametrize("token", ["", "hello", "shpk_", "shpk_ABC", "shpk__secret", "shpk_ABC_"])
def test_malformed_api_keys_are_refused(token: str) -> None:
    with pytest.raises(Unauthenticated):
        parse_api_key(token)
