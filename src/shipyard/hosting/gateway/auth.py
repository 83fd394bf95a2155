"""Who is calling, whether they may invoke, and whether they are over their rate.

Two ways to present an API key, both answered from memory on the hot path:

- ``Authorization: Bearer <key>``: the header's bytes map to the caller for
  ``gateway_auth_cache_ttl_s``; a miss asks ``IdentityService.authenticate`` on a thread.
- AWS SigV4 (boto3 with the key's id and secret as its AWS key pair): the key id maps to
  its secret and caller for the same TTL (a miss asks
  ``IdentityService.sigv4_credentials`` on a thread); every request is then verified with
  ``kit.sigv4.verify`` (~10 µs), because a signature covers that request only.

Refusals are cached for the TTL as well, so a client hammering with a bad key costs one
lookup per TTL, and a revoked key stops working within the TTL. Concurrent misses for one
key share one lookup. Each caller has a token bucket, kept across cache refreshes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shipyard.db.engine import Database
from shipyard.errors import Unauthenticated
from shipyard.hosting.gateway import errors
from shipyard.hosting.gateway.errors import GatewayError
from shipyard.kit.sigv4 import SigV4Credential, SigV4Error, parse_authorization, verify
from shipyard.security.permissions import Permission
from shipyard.security.principal import Principal
from shipyard.security.service import IdentityService

_MAX_ENTRIES = 50_000
_SIGNING_SERVICE = "sagemaker"  # botocore signs sagemaker-runtime calls for "sagemaker"


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; a request takes one (rate 0: unlimited)."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self) -> int:
        """0 when the request may go now, else the whole seconds to wait (Retry-After)."""
        if self.rate <= 0:
            return 0
        now = time.monotonic()
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0
        self.tokens = tokens
        return max(1, math.ceil((1.0 - tokens) / self.rate))


class Caller:
    """An authenticated key, with what it may invoke remembered per endpoint."""

    __slots__ = ("_allowed", "bucket", "principal")

    def __init__(self, principal: Principal, bucket: TokenBucket) -> None:
        self.principal = principal
        self.bucket = bucket
        self._allowed: dict[str, bool] = {}

    def may_invoke(self, endpoint_id: str, team_id: str, project_id: str) -> bool:
        allowed = self._allowed.get(endpoint_id)
        if allowed is None:
            allowed = self.principal.can(
                Permission.ENDPOINT_INVOKE, team_id=team_id, project_id=project_id
            )
            self._allowed[endpoint_id] = allowed
        return allowed


class Authenticator:
    def __init__(
        self,
        *,
        db: Database,
        identity: IdentityService,
        ttl_s: float,
        rate: float,
        burst: float,
        key_limits: Mapping[str, tuple[float, float]],
    ) -> None:
        self._db = db
        self._identity = identity
        self._ttl = ttl_s
        self._rate, self._burst = rate, burst
        self._key_limits = dict(key_limits)
        self._bearer: dict[bytes, tuple[float, Caller | GatewayError]] = {}
        self._sigv4: dict[str, tuple[float, tuple[Caller, str] | GatewayError]] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._pending: dict[Any, asyncio.Future[Any]] = {}
        self._executor = ThreadPoolExecutor(4, thread_name_prefix="gateway-auth")

    # --- the two schemes ----------------------------------------------------------------

    async def bearer(self, token: bytes) -> Caller:
        entry = self._bearer.get(token)
        if entry is None or entry[0] <= time.monotonic():
            entry = await self._lookup(self._bearer, token, lambda: self._by_token(token))
        found = entry[1]
        if isinstance(found, GatewayError):
            raise found
        return found

    async def sigv4(self, header: bytes, scope: Mapping[str, Any], body: bytes) -> Caller:
        try:
            credential = parse_authorization(header.decode("latin-1"))
        except SigV4Error as exc:
            raise _signature_error(exc) from None
        if credential.service != _SIGNING_SERVICE:
            raise GatewayError(
                403,
                "InvalidSignatureException",
                f"Credential should be scoped to correct service: '{_SIGNING_SERVICE}'.",
            )
        key_id = credential.access_key_id
        entry = self._sigv4.get(key_id)
        if entry is None or entry[0] <= time.monotonic():
            entry = await self._lookup(self._sigv4, key_id, lambda: self._by_key_id(key_id))
        found = entry[1]
        if isinstance(found, GatewayError):
            raise found
        caller, secret = found
        _verify(scope, body, secret, credential)
        return caller

    # --- lookups, off the event loop --------------------------------------------------

    async def _lookup(
        self, cache: dict[Any, tuple[float, Any]], key: Any, resolve: Callable[[], Any]
    ) -> tuple[float, Any]:
        """Resolve ``key`` on a thread (one lookup for concurrent misses) and cache it."""
        pending = self._pending.get((id(cache), key))
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = loop.run_in_executor(self._executor, resolve)
            self._pending[(id(cache), key)] = pending
            pending.add_done_callback(lambda _: self._pending.pop((id(cache), key), None))
        try:
            found = await asyncio.shield(pending)
        except GatewayError:
            raise
        except Exception as exc:  # the DB is down: refuse new keys, cache nothing
            raise errors.unavailable(
                f"Cannot check the API key now: {type(exc).__name__}."
            ) from exc
        if len(cache) >= _MAX_ENTRIES:
            cache.clear()
        entry = (time.monotonic() + self._ttl, found)
        cache[key] = entry
        return entry

    def _by_token(self, token: bytes) -> Caller | GatewayError:
        try:
            with self._db.read() as s:
                principal = self._identity.authenticate(s, token.decode("latin-1"))
        except Unauthenticated as exc:
            return errors.unrecognized(exc.message.removesuffix("."))
        return self._caller(principal)

    def _by_key_id(self, key_id: str) -> tuple[Caller, str] | GatewayError:
        try:
            with self._db.read() as s:
                principal, secret = self._identity.sigv4_credentials(s, key_id)
        except Unauthenticated as exc:
            return errors.unrecognized(exc.message.removesuffix("."))
        return self._caller(principal), secret

    def _caller(self, principal: Principal) -> Caller:
        """Runs on a lookup thread; the bucket dict is only ever added to."""
        who = principal.key.key_id if principal.key else f"user:{principal.user_id}"
        bucket = self._buckets.get(who)
        if bucket is None:
            rate, burst = self._key_limits.get(who, (self._rate, self._burst))
            bucket = self._buckets.setdefault(who, TokenBucket(rate, burst))
        return Caller(principal, bucket)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _verify(
    scope: Mapping[str, Any], body: bytes, secret: str, credential: SigV4Credential
) -> None:
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        text_name = name.decode("latin-1")
        text = value.decode("latin-1")
        headers[text_name] = f"{headers[text_name]},{text}" if text_name in headers else text
    try:
        verify(
            method=scope["method"],
            raw_path=scope["raw_path"],
            query_string=scope["query_string"],
            headers=headers,
            body=body,
            secret=secret,
            credential=credential,
        )
    except SigV4Error as exc:
        raise _signature_error(exc) from None


def _signature_error(exc: SigV4Error) -> GatewayError:
    status = 403 if exc.code == "InvalidSignatureException" else 400
    return GatewayError(status, exc.code, exc.message)


def missing_token() -> GatewayError:
    return GatewayError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
