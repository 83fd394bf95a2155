"""Fixtures shared by the integration suites: webhook receivers on 127.0.0.9, allow-listed on
the shared server (the events, SDK and CLI suites all deliver to them).

Only that one address is allow-listed (the list is platform-wide and the server is shared),
so every spelling of 127.0.0.1 and ``localhost`` stays refused for the SSRF tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.integration.events.helpers import RECEIVERS, allow
from tests.support.receiver import Receiver
from tests.support.servers import RunningServer


@pytest.fixture(scope="session")
def hook_server(server: RunningServer) -> RunningServer:
    """The shared server, with the receivers' address allow-listed."""
    with server.admin() as admin:
        allow(admin, RECEIVERS)
    return server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running
