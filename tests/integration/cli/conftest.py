"""Fixtures of the CLI suite: private CLI environments, for nobody and for the admin."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.cli import cli_env
from tests.support.servers import RunningServer


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A CLI environment with no server, credentials or profile yet."""
    return cli_env(tmp_path / "cli")


@pytest.fixture
def admin_env(server: RunningServer, env: dict[str, str]) -> dict[str, str]:
    """The platform admin, through ``SHIPYARD_URL`` and ``SHIPYARD_API_KEY``."""
    return {**env, "SHIPYARD_URL": server.url, "SHIPYARD_API_KEY": server.admin_key}
