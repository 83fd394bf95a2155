"""``shipyard up`` runs the gateway as a child: announced, restarted when it dies, stopped
with the platform (no orphan left)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import httpx
from tests.integration.gateway.conftest import wait_for_gateway
from tests.support.servers import start_server


def _children(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (a restart is spawned by the supervisor's thread)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _gateway_child(server_pid: int, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in _children(server_pid):
            if b"gateway" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        time.sleep(0.1)
    raise TimeoutError("no gateway child")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status").read_text()
    return "State:\tZ" not in status


def test_up_supervises_its_gateway(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", gateway=True)
    try:
        gateway_url = f"http://127.0.0.1:{server.port + 1}"
        wait_for_gateway(gateway_url)
        assert f"Gateway (SageMaker Runtime compatible): {gateway_url}" in server.log()
        with server.client() as api:
            assert api.get("/api/v1/info").json()["gateway_url"] == gateway_url

        first = _gateway_child(server.proc.pid)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{gateway_url}/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        second = _gateway_child(server.proc.pid)
        assert second != first
        assert httpx.get(f"{gateway_url}/ping", timeout=5).status_code == 200
        assert "the gateway exited (code -9); restarting it" in server.log()
    finally:
        assert server.stop() == 0
    assert not _alive(second)  # stopped with the platform, not orphaned
