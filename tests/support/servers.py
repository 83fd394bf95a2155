"""Real servers for tests: ``shipyard up`` as a subprocess on a free loopback port."""

from __future__ import annotations

import ctypes
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from shipyard.kit.tls import client_ssl_context

PG_ADMIN_DSN = os.environ.get("SHIPYARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM if the test process dies, so none is left running."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


_handed_out: set[int] = set()

# Ports are handed out in pairs (a server's gateway listens on its port + 1), from a range of
# this worker's own below the kernel's ephemeral range (32768-60999 by default): a port the
# kernel assigns (replicas, fake peers, every outgoing connection) can then never land on a
# gateway's port between the check here and the gateway's bind, and two xdist workers never
# pick the same one. Above 20000: Ray's workers take 10002-19999 by default.
_PAIRS_BASE, _PAIRS_SPAN, _WORKER_SLOTS = 20_000, 980, 13


@functools.cache
def _worker_range() -> range | None:
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    slot = int(worker) % _WORKER_SLOTS if worker.isdigit() else 0
    start = _PAIRS_BASE + slot * _PAIRS_SPAN
    if start + _PAIRS_SPAN > ephemeral_low:
        return None
    return range(start, start + _PAIRS_SPAN, 2)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port free now (and its successor, for a gateway) that this process never handed out
    before: a caller picking several at once (a Ray head takes seven) needs them distinct."""
    for port in _worker_range() or ():
        if port not in _handed_out and _bindable(port) and _bindable(port + 1):
            _handed_out.add(port)
            return port
    while True:  # no private range on this machine: whatever the kernel offers
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def postgres_reachable() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database for one server; dropped afterwards, so nothing leaks between runs."""
    name = f"shipyard_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class RunningServer:
    url: str
    home: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    port: int
    db_url: str
    log_path: Path
    credentials: dict[str, str] = field(default_factory=dict)

    @property
    def admin_key(self) -> str:
        return self.credentials["api_key"]

    def client(self, token: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kwargs.setdefault("verify", client_ssl_context())
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]

    def admin(self) -> httpx.Client:
        return self.client(self.admin_key)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def start_server(
    home: Path,
    *,
    db_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
    timeout: float = 40,
    gateway: bool = False,
) -> RunningServer:
    """``shipyard up`` in a child process; with the gateway only when the test invokes
    endpoints (each gateway is another ~90 MB process to start and stop)."""
    port = port or free_port()
    # A 1 s principal cache keeps the caching in play while tests that change the database
    # behind the server's back wait only briefly for the change to show.
    env = {
        **os.environ,
        "SHIPYARD_LOG_LEVEL": "warning",
        "SHIPYARD_AUTH_CACHE_TTL_S": "1",
        # Jobs: short leases, frequent checkpoint syncs and a short stop grace keep tests quick.
        "SHIPYARD_JOB_LEASE_S": "3",
        "SHIPYARD_CHECKPOINT_SYNC_S": "0.5",
        "SHIPYARD_JOB_STOP_GRACE_S": "5",
        # Cheap argon2id: the suite creates and logs in ~1000 users, ~0.25 s of CPU each with
        # the production cost. What a password accepts and refuses is the same at any cost.
        "SHIPYARD_PASSWORD_HASH_COST": "minimal",
        # Webhooks: retries 0.2 s apart at first and never more than 2 s, a 2 s timeout.
        "SHIPYARD_WEBHOOK_BACKOFF_S": "0.2",
        "SHIPYARD_WEBHOOK_BACKOFF_MAX_S": "2",
        "SHIPYARD_WEBHOOK_TIMEOUT_S": "2",
        "SHIPYARD_GATEWAY_ENABLED": "true" if gateway else "false",
        **(extra_env or {}),
    }
    if db_url:
        env["SHIPYARD_DB_URL"] = db_url
    home.mkdir(parents=True, exist_ok=True)
    log_path = home.parent / f"{home.name}-server-{port}.log"
    log = log_path.open("ab")
    cmd = [
        sys.executable,
        "-m",
        "shipyard.cli.main",
        "up",
        "--home",
        str(home),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
    )
    server = RunningServer(
        f"http://127.0.0.1:{port}", home, env, proc, port, db_url or "sqlite", log_path
    )
    try:
        _wait_ready(server, timeout)
        creds = home / "admin-credentials.json"
        server.credentials = json.loads(creds.read_text()) if creds.exists() else {}
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    return server


def _wait_ready(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server not ready after {timeout}s:\n{server.log()}")
