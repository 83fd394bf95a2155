"""A 1 GiB upload and download stream through the server in constant memory.

The baseline is taken after a warm-up round trip. The first transfers start the upload stage
threads and the worker threads (glibc gives each new thread a malloc arena of its own), let
glibc raise its mmap threshold to the batch size so that batches come from those arenas, and
import lazy modules. A 64 MiB trip (16 batches, against at most four in flight) reaches that
steady state. Measured from there, a trip 16 times larger must stay within ``LIMIT``: memory
must not depend on the size of the body. (An 8 MiB warm-up, half the pipeline, still let the
growth reach the limit now and then.)
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from tests.conftest import make_tenant
from tests.support.servers import RunningServer, start_server

GIB = 1024**3
PIECE = 1024 * 1024
WARM_UP = 64 * PIECE
LIMIT = 64 * 1024**2


def _pattern_body(total: int) -> Iterator[bytes]:
    block = bytes(range(256)) * (PIECE // 256)
    for i in range(total // PIECE):
        yield i.to_bytes(8, "big") + block[8:]


class PeakRss:
    """Samples the server's resident memory in the background and keeps the peak."""

    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _round_trip(client: httpx.Client, url: str, size: int) -> str:
    """Streams ``size`` bytes up and back down; returns the SHA-256 of what came back."""
    r = client.put(url, content=_pattern_body(size), headers={"Content-Length": str(size)})
    assert r.status_code == 201, r.text
    got, received = hashlib.sha256(), 0
    with client.stream("GET", url) as response:
        assert response.status_code == 200
        for piece in response.iter_bytes(PIECE):
            got.update(piece)
            received += len(piece)
    assert received == size
    assert got.hexdigest() == r.json()["sha256"]
    return got.hexdigest()


@pytest.mark.slow
def test_one_gib_round_trip_keeps_server_memory_flat(tmp_path: Path) -> None:
    server: RunningServer = start_server(tmp_path / "home")
    try:
        tenant = make_tenant(server, roles=("scientist",))
        url = f"/api/v1/projects/{tenant.team}/{tenant.project}/artifacts/big/one-gib.bin"
        expected = hashlib.sha256()
        for piece in _pattern_body(GIB):
            expected.update(piece)
        with server.client(tenant.keys["scientist"]) as c:
            _round_trip(c, url.replace("one-gib.bin", "warm-up.bin"), WARM_UP)
            baseline = psutil.Process(server.proc.pid).memory_info().rss
            with PeakRss(server.proc.pid) as rss:
                assert _round_trip(c, url, GIB) == expected.hexdigest()
        growth = rss.peak - baseline
        print(f"server RSS growth over a 1 GiB round trip: {growth / 2**20:.1f} MiB")
        assert growth < LIMIT, f"server RSS grew by {growth / 2**20:.0f} MiB"
    finally:
        server.stop()


def test_declared_oversize_body_gets_413_and_nothing_is_recorded(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", extra_env={"SHIPYARD_MAX_UPLOAD_BYTES": "1000"})
    try:
        tenant = make_tenant(server, roles=("scientist",))
        base = f"/api/v1/projects/{tenant.team}/{tenant.project}"
        with server.client(tenant.keys["scientist"]) as c:
            r = c.put(f"{base}/artifacts/big.bin", content=b"x" * 5000)
            assert r.status_code == 413
            assert "1000" in r.json()["error"]["message"]
            streamed = c.put(f"{base}/artifacts/big2.bin", content=iter([b"x" * 600, b"y" * 600]))
            assert streamed.status_code == 413
            assert c.get(f"{base}/artifacts").json() == []
        assert not [p for p in (server.home / "store").rglob("*") if p.is_file()]
    finally:
        server.stop()
