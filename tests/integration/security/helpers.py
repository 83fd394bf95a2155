"""Helpers of the security suite: direct DB access to a running server, error-shape checks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import Engine, delete, insert, select, update
from tests.support.servers import RunningServer

from shipyard.db.engine import make_engine
from shipyard.security.models import ApiKey, AuditDigest, AuditEvent


class ServerDB:
    """Direct access to a running server's database, for what no API may do (tampering)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url)

    def rows(self, table: Any, **where: object) -> list[dict[str, Any]]:
        t = table.__table__
        query = select(t).where(*(t.c[k] == v for k, v in where.items()))
        with self.engine.begin() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def update(self, table: Any, where: dict[str, object], **values: object) -> int:
        t = table.__table__
        with self.engine.begin() as conn:
            result = conn.execute(
                update(t).where(*(t.c[k] == v for k, v in where.items())).values(**values)
            )
            return int(result.rowcount)

    def delete(self, table: Any, *clauses: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(table.__table__).where(*clauses))

    def insert(self, table: Any, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(table.__table__), rows)

    def audit_events(self) -> list[dict[str, Any]]:
        with self.engine.begin() as conn:
            t = AuditEvent.__table__
            return [dict(r._mapping) for r in conn.execute(select(t).order_by(t.c.seq))]

    def audit_digests(self) -> list[dict[str, Any]]:
        with self.engine.begin() as conn:
            t = AuditDigest.__table__
            return [dict(r._mapping) for r in conn.execute(select(t).order_by(t.c.seq))]

    def expire_key(self, key_id: str, at: Any) -> None:
        assert self.update(ApiKey, {"key_id": key_id}, expires_at=at) == 1

    def close(self) -> None:
        self.engine.dispose()


@contextmanager
def server_db(server: RunningServer) -> Iterator[ServerDB]:
    db = ServerDB(server.db_url)
    try:
        yield db
    finally:
        db.close()


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error body, after checking it has the documented shape and the request's id."""
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert {"code", "message", "request_id"} <= set(error), error
    assert error["request_id"] == response.headers["x-request-id"]
    return error


def login(server: RunningServer, username: str, password: str) -> httpx.Response:
    with server.client() as anon:
        return anon.post("/api/v1/auth/token", json={"username": username, "password": password})
