"""Bearer authentication for the SDK, with transparent refresh of password-login tokens.

An API key is sent as is. A token pair from ``shipyard login --username`` is refreshed shortly
before the access token expires (its ``exp`` claim is read, not verified: the server
verifies), so a long notebook session never sees a 401 for an expired token. The new pair is
handed to ``on_refresh`` so the CLI can save it to the profile (refresh tokens are single use).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Generator

import httpx

from shipyard.sdk._config import Profile

REFRESH_MARGIN_S = 60


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, or None when ``token`` is not a readable JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        exp = json.loads(base64.urlsafe_b64decode(padded)).get("exp")
    except (ValueError, AttributeError):
        return None
    return float(exp) if isinstance(exp, int | float) else None


class BearerAuth(httpx.Auth):
    """Adds ``Authorization: Bearer``; refreshes an expiring access token first."""

    def __init__(
        self, profile: Profile, on_refresh: Callable[[Profile], None] | None = None
    ) -> None:
        self.profile = profile
        self._on_refresh = on_refresh
        self._lock = threading.Lock()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._needs_refresh():
            with self._lock:
                if self._needs_refresh():
                    response = yield self._refresh_request(request)
                    response.read()
                    self._accept_refresh(response)
        token = self.profile.bearer
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def _needs_refresh(self) -> bool:
        p = self.profile
        if p.api_key or not (p.access_token and p.refresh_token):
            return False
        exp = token_expiry(p.access_token)
        return exp is not None and exp - time.time() < REFRESH_MARGIN_S

    def _refresh_request(self, request: httpx.Request) -> httpx.Request:
        url = request.url.copy_with(path="/api/v1/auth/refresh", query=None)
        return httpx.Request("POST", url, json={"refresh_token": self.profile.refresh_token})

    def _accept_refresh(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            return  # the original request goes out with the old token and gets a clear 401
        body = response.json()
        self.profile.access_token = body["access_token"]
        self.profile.refresh_token = body["refresh_token"]
        if self._on_refresh is not None:
            self._on_refresh(self.profile)
