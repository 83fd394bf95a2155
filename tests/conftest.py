"""Shared fixtures: real servers on SQLite and, when reachable, on PostgreSQL.

Tests that take ``server`` run once per database backend. PostgreSQL gets a fresh database per
server, dropped afterwards; when PostgreSQL is not reachable its variants are skipped with a
reason, and the header of the run says so.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import settings
from tests.support.servers import (
    RunningServer,
    fresh_postgres_database,
    postgres_reachable,
    start_server,
)

# CI replays the same examples every run (a red CI is then reproducible); local runs explore.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

PG_AVAILABLE = postgres_reachable()
BACKENDS = ["sqlite", "postgresql"]
_names = itertools.count(1)


def pytest_report_header(config: pytest.Config) -> str:
    if PG_AVAILABLE:
        return "database backends: SQLite and PostgreSQL (127.0.0.1:5432, a fresh DB per server)"
    return "database backends: SQLite only -- PostgreSQL at 127.0.0.1:5432 is NOT reachable"


@pytest.fixture(scope="session", params=BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql" and not PG_AVAILABLE:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432; ran on SQLite only")
    return str(request.param)


@pytest.fixture(scope="session")
def db_url(db_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty database URL for the backend (SQLite file or new PostgreSQL database)."""
    if db_backend == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'shipyard.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def fresh_db_url(db_backend: str, tmp_path: Path) -> Iterator[str]:
    """Like ``db_url`` but new for each test (for tests that own the whole database)."""
    if db_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def server(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One ``shipyard up`` per backend for the whole session (tests create their own teams)."""
    home = tmp_path_factory.mktemp("home")
    running = start_server(home, db_url=db_url)
    yield running
    running.stop()


@dataclass
class Tenant:
    """A team with one project and one API key per role, made through the public API."""

    team: str
    project: str
    keys: dict[str, str]
    users: dict[str, str]


@contextmanager
def role_clients(server: RunningServer, tenant: Tenant) -> Iterator[dict[str, httpx.Client]]:
    """An HTTP client per role of the tenant (keyed by role), closed on the way out."""
    made = {role: server.client(key) for role, key in tenant.keys.items()}
    try:
        yield made
    finally:
        for client in made.values():
            client.close()


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


def make_tenant(
    server: RunningServer,
    roles: tuple[str, ...] = (
        "admin",
        "lead",
        "engineer",
        "scientist",
        "viewer",
        "invoker",
    ),
    required_tags: list[str] | None = None,
) -> Tenant:
    team, project = unique("team"), "proj"
    with server.admin() as admin:
        r = admin.post("/api/v1/teams", json={"name": team, "required_tags": required_tags or []})
        assert r.status_code == 201, r.text
        tags = dict.fromkeys(required_tags or [], "x")
        r = admin.post(f"/api/v1/teams/{team}/projects", json={"name": project, "tags": tags})
        assert r.status_code == 201, r.text
        keys, users = {}, {}
        for role in roles:
            username = unique(f"{role}-")
            password = f"pw-{username}-secret"
            assert (
                admin.post(
                    "/api/v1/users", json={"username": username, "password": password}
                ).status_code
                == 201
            )
            r = admin.post(
                f"/api/v1/teams/{team}/members", json={"username": username, "role": role}
            )
            assert r.status_code == 201, r.text
            users[role] = username
            if role == "invoker":  # application keys are made by someone who may make keys
                r = admin.post("/api/v1/keys", json={"team": team, "role": role})
                keys[role] = r.json()["api_key"]
            else:
                keys[role] = _key_for(server, username, password, team, role)
    return Tenant(team, project, keys, users)


def _key_for(server: RunningServer, username: str, password: str, team: str, role: str) -> str:
    with server.client() as anon:
        token = anon.post(
            "/api/v1/auth/token", json={"username": username, "password": password}
        ).json()["access_token"]
    with server.client(token) as user:
        r = user.post("/api/v1/keys", json={"team": team, "role": role, "name": f"{role} key"})
        assert r.status_code == 201, r.text
        return str(r.json()["api_key"])


@pytest.fixture(scope="session")
def tenant(server: RunningServer) -> Tenant:
    return make_tenant(server)


@pytest.fixture
def tmp_home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Whole files to a worker (their module-scoped servers start once), except the documents'
    runs: each is a minute of one server, so they are spread over the workers."""
    from xdist.scheduler import LoadScopeScheduling

    class ByFileDocsApart(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return nodeid if path.endswith("e2e/test_docs.py") else path

    return ByFileDocsApart(config, log)
