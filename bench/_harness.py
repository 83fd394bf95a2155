"""Shared pieces of the benchmarks: servers on loopback, timing, and a ratio table."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

console = Console()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited early (code {proc.returncode})")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


@contextmanager
def running(
    cmd: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        try:
            wait_http(ready_url, proc)
            yield
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass
class ShipyardServer:
    url: str
    api_key: str
    home: Path


@contextmanager
def shipyard_server(workdir: Path) -> Iterator[ShipyardServer]:
    home, port = workdir / "shipyard-home", free_port()
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
    url = f"http://127.0.0.1:{port}"
    with running(cmd, f"{url}/readyz", workdir / "shipyard.log", {"SHIPYARD_LOG_LEVEL": "warning"}):
        creds = json.loads((home / "admin-credentials.json").read_text())
        yield ShipyardServer(url, creds["api_key"], home)


@contextmanager
def mlflow_server(workdir: Path) -> Iterator[str]:
    """The stock `mlflow server`: SQLite, one worker, artifacts proxied; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination",
        str(workdir / "mlflow-artifacts"),
        "--serve-artifacts",
    ]
    with running(cmd, f"{url}/health", workdir / "mlflow.log"):
        yield url


def timed(fn: object, *args: object) -> float:
    started = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - started


def ratio_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    table = Table(title=title)
    for column in ("measure", "value", "note"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
