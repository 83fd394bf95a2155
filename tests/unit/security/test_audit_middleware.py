"""The request middleware writes an audit entry even for an unhandled error, with its id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import anyio
import httpx
import pytest
from fastapi import FastAPI

from shipyard.api.errors import install_error_handlers
from shipyard.api.middleware import RequestContextMiddleware
from shipyard.db.engine import Database
from shipyard.db.migrate import upgrade
from shipyard.security.audit import AuditService
from shipyard.security.keyring import SigningKey


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[SimpleNamespace]:
    db = Database("sqlite://")
    upgrade(db.engine)
    yield SimpleNamespace(db=db, audit=AuditService(SigningKey(tmp_path / "k"), 100))
    db.dispose()


class Client:
    """Calls the app in process (httpx's ASGI transport), one request per event loop."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def post(self, url: str) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                return await c.post(url)

        return anyio.run(call)


@pytest.fixture
def client(platform: SimpleNamespace) -> Client:
    app = FastAPI()

    @app.post("/boom/{name}")
    def boom(name: str) -> None:
        raise RuntimeError("a bug")

    @app.post("/fine/{name}")
    def fine(name: str) -> dict[str, str]:
        return {"name": name}

    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, platform=platform)  # type: ignore[arg-type]
    return Client(app)


def _entries(platform: SimpleNamespace) -> list[dict[str, object]]:
    with platform.db.read() as s:
        return [
            {"status": e.status_code, "outcome": e.outcome, "id": e.request_id, "res": e.resource}
            for e in platform.audit.tail(s, 100)
        ]


def test_an_unhandled_error_is_answered_with_its_id_and_audited(
    client: Client, platform: SimpleNamespace
) -> None:
    r = client.post("/boom/x")
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["code"] == "internal"
    assert "a bug" not in r.text  # internals stay in the server log
    assert error["request_id"] == r.headers["x-request-id"]
    assert _entries(platform) == [
        {"status": 500, "outcome": "error", "id": error["request_id"], "res": "/boom/x"}
    ]


def test_a_nul_in_the_path_is_stored_escaped(client: Client, platform: SimpleNamespace) -> None:
    r = client.post("/fine/a%00b")
    assert r.status_code == 200
    assert _entries(platform)[-1]["res"] == "/fine/a\\x00b"
