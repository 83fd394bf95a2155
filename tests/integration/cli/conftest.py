"""Fixtures of the CLI suite: private CLI environments, for nobody and for the admin.

The CLI talks to the server over HTTP, so what a command prints does not depend on the
server's database, which the API suites cover on both backends: the CLI tests run against the
SQLite server (the default of ``make up``). A test whose command reaches the database itself
(``shipyard audit verify`` offline) is marked ``both_backends`` and runs on PostgreSQL too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.cli import cli_env
from tests.support.servers import RunningServer

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (dropped if _on_postgres_here(item) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _on_postgres_here(item: pytest.Item) -> bool:
    """A test of this directory parametrised for PostgreSQL and not marked ``both_backends``."""
    callspec = getattr(item, "callspec", None)
    return (
        item.path.is_relative_to(HERE)
        and callspec is not None
        and callspec.params.get("db_backend") == "postgresql"
        and item.get_closest_marker("both_backends") is None
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A CLI environment with no server, credentials or profile yet."""
    return cli_env(tmp_path / "cli")


@pytest.fixture
def admin_env(server: RunningServer, env: dict[str, str]) -> dict[str, str]:
    """The platform admin, through ``SHIPYARD_URL`` and ``SHIPYARD_API_KEY``."""
    return {**env, "SHIPYARD_URL": server.url, "SHIPYARD_API_KEY": server.admin_key}
