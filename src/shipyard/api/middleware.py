"""One ASGI middleware for what every request needs: a request id, metrics and the audit trail.

It is pure ASGI (no BaseHTTPMiddleware) so streamed bodies pass through untouched. The audit
entry is written when the response starts, before the client sees the status: a request is
never acknowledged without its audit entry.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from prometheus_client import Counter, Histogram
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard.api.errors import unhandled_error
from shipyard.bootstrap import Platform
from shipyard.kit.ids import new_id
from shipyard.security.audit import AuditRecord

log = logging.getLogger("shipyard.audit")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

REQUESTS = Counter(
    "shipyard_http_requests_total", "HTTP requests to the API", ["method", "route", "status"]
)
LATENCY = Histogram(
    "shipyard_http_request_duration_seconds",
    "API request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
AUDIT_FAILURES = Counter("shipyard_audit_write_failures_total", "Audit entries that failed")


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    return str(getattr(route, "path", "")) or "unmatched"


def _storable(value: str, limit: int) -> str:
    """PostgreSQL refuses NUL in text; a request path with %00 must not void its entry."""
    return value.replace("\x00", "\\x00")[:limit]


def _outcome(status: int) -> str:
    if status in (401, 403):
        return "denied"
    return "error" if status >= 400 else "ok"


def audit_record(scope: Scope, state: dict[str, Any], status: int, request_id: str) -> AuditRecord:
    principal = state.get("principal")
    actor = principal.actor if principal else state.get("actor_hint", "anonymous")
    client = scope.get("client")
    return AuditRecord(
        actor=_storable(str(actor), 128),
        action=_storable(f"{scope['method']} {_route_template(scope)}", 128),
        resource=_storable(str(scope.get("path", "")), 1024),
        outcome=_outcome(status),
        status_code=status,
        request_id=request_id,
        client=_storable(client[0] if client else "", 64),
        team=state.get("audit_team"),
    )


@contextmanager
def audited_transaction(platform: Platform, request: Request, status: int) -> Iterator[Session]:
    """A write transaction that also carries the request's audit entry.

    For hot write routes (metric logging): the change and its entry commit together, in one
    transaction instead of two, and the middleware then writes no second entry. If the work
    fails, both roll back and the middleware records the error response as usual.
    """
    state = request.scope.setdefault("state", {})
    with platform.db.transaction() as s:
        yield s
        record = audit_record(request.scope, state, status, str(state.get("request_id", "")))
        platform.audit.append(s, record)
    state["audited_status"] = status


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if _REQUEST_ID.match(incoming) else new_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        responded = False

        async def send_with_context(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.start":
                responded = True
                status = int(message["status"])
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
                audited = state.get("audited_status") == status
                if (scope["method"] in MUTATING or status in (401, 403)) and not audited:
                    await self._audit(scope, state, status, request_id)
                route = _route_template(scope)
                REQUESTS.labels(scope["method"], route, str(status)).inc()
                LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_with_context)
        except Exception as exc:
            if responded:
                raise
            # Left to Starlette's outermost ServerErrorMiddleware, the 500 would go out
            # around this middleware: no x-request-id header and, for a mutating call, no
            # audit entry. Answer it here, through the same handler.
            response = await unhandled_error(Request(scope), exc)
            await response(scope, receive, send_with_context)

    async def _audit(
        self, scope: Scope, state: dict[str, Any], status: int, request_id: str
    ) -> None:
        record = audit_record(scope, state, status, request_id)
        try:
            await anyio.to_thread.run_sync(self._append, record)
        except Exception:
            AUDIT_FAILURES.inc()
            log.exception("could not write the audit entry for request %s", request_id)

    def _append(self, record: AuditRecord) -> None:
        with self.platform.db.transaction() as s:
            self.platform.audit.append(s, record)
