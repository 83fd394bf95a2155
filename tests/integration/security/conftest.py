"""Fixtures of the security suite: a second tenant and a "tuned" server.

The shared ``server`` and ``tenant`` (tests/conftest.py) carry most tests. One more server per
backend, ``tuned_server``, runs with the settings some tests need to differ: 1-second access
tokens, a login throttle of 3 attempts per 3 seconds, a signed audit digest every 5 entries
and debug logging (so the no-secret-in-log check sees as much as the server can write). On
PostgreSQL its sessions run in a non-UTC time zone, as many real installations do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.conftest import Tenant, make_tenant
from tests.support.servers import RunningServer, fresh_postgres_database, start_server

TUNED_ENV = {
    "SHIPYARD_ACCESS_TOKEN_TTL_S": "1",
    "SHIPYARD_LOGIN_ATTEMPTS_PER_WINDOW": "3",
    "SHIPYARD_LOGIN_WINDOW_S": "3",
    "SHIPYARD_AUDIT_DIGEST_EVERY": "5",
    "SHIPYARD_LOG_LEVEL": "debug",
}
# A session time zone far from UTC: timestamps must survive the round trip bit for bit.
PG_NON_UTC = "options=-c%20timezone%3DAsia/Kolkata"


@pytest.fixture(scope="session")
def tenant_b(server: RunningServer, tenant: Tenant) -> Tenant:
    """A second team on the shared server, for isolation tests."""
    return make_tenant(server, roles=("lead", "viewer"))


@pytest.fixture(scope="session")
def tuned_server(
    db_backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("tuned") / "home"
    with _database(db_backend, tmp_path_factory.mktemp("tuned-db")) as url:
        running = start_server(home, db_url=url, extra_env=TUNED_ENV)
        yield running
        running.stop()


@contextmanager
def _database(backend: str, directory: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'shipyard.db'}"
        return
    with fresh_postgres_database() as url:
        yield f"{url}?{PG_NON_UTC}"
