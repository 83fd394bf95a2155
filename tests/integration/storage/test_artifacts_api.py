"""The artifact store over real HTTP: versions, encryption at rest, integrity, presigned URLs."""

from __future__ import annotations

import concurrent.futures
import os
import time
from pathlib import Path

import httpx
import pytest
from tests.conftest import Tenant
from tests.support.servers import RunningServer


def _base(tenant: Tenant) -> str:
    return f"/api/v1/projects/{tenant.team}/{tenant.project}"


def _blob_files(home: Path) -> list[Path]:
    return [p for p in (home / "store").rglob("*") if p.is_file()]


def test_two_puts_make_two_versions_both_readable(server: RunningServer, tenant: Tenant) -> None:
    base = _base(tenant)
    first, second = os.urandom(70_000), b"second version " * 1000
    with server.client(tenant.keys["scientist"]) as c:
        r1 = c.put(f"{base}/artifacts/models/m.bin", content=first)
        r2 = c.put(f"{base}/artifacts/models/m.bin", content=second)
        assert (r1.status_code, r2.status_code) == (201, 201), r2.text
        assert (r1.json()["version"], r2.json()["version"]) == (1, 2)
        assert c.get(f"{base}/artifacts/models/m.bin").content == second
        old = c.get(f"{base}/artifacts/models/m.bin", params={"version": 1})
        assert old.content == first
        assert old.headers["x-shipyard-version"] == "1"
        versions = c.get(f"{base}/artifact-versions/models/m.bin").json()
        assert [v["version"] for v in versions] == [1, 2]
        listed = c.get(f"{base}/artifacts", params={"prefix": "models/"}).json()
        assert [(a["path"], a["version"]) for a in listed] == [("models/m.bin", 2)]


def test_delete_writes_a_marker_and_keeps_old_versions(
    server: RunningServer, tenant: Tenant
) -> None:
    base = _base(tenant)
    with server.client(tenant.keys["engineer"]) as c:
        c.put(f"{base}/artifacts/tmp/d.txt", content=b"keep me")
        r = c.delete(f"{base}/artifacts/tmp/d.txt")
        assert r.status_code == 200 and r.json()["deleted"] is True
        assert c.get(f"{base}/artifacts/tmp/d.txt").status_code == 404
        assert c.get(f"{base}/artifacts/tmp/d.txt", params={"version": 1}).content == b"keep me"
        assert "tmp/d.txt" not in [a["path"] for a in c.get(f"{base}/artifacts").json()]
        assert c.delete(f"{base}/artifacts/tmp/d.txt").status_code == 404


def test_plaintext_never_reaches_the_store(server: RunningServer, tenant: Tenant) -> None:
    marker = b"PLAINTEXT-CANARY-" + os.urandom(8).hex().encode()
    with server.client(tenant.keys["lead"]) as c:
        r = c.put(f"{_base(tenant)}/artifacts/secret.txt", content=marker * 500)
        assert r.status_code == 201
    if server.db_url.startswith("postgresql"):
        pass  # the store is the same local directory on both backends
    files = _blob_files(server.home)
    assert files, "no blob was written under the store"
    for path in files:
        assert marker not in path.read_bytes(), f"plaintext found in {path}"


def _only_blob_of(server: RunningServer, before: set[Path]) -> Path:
    new = set(_blob_files(server.home)) - before
    assert len(new) == 1
    return new.pop()


def test_flipped_byte_gives_integrity_error_never_data(
    server: RunningServer, tenant: Tenant
) -> None:
    before = set(_blob_files(server.home))
    with server.client(tenant.keys["lead"]) as c:
        c.put(f"{_base(tenant)}/artifacts/flip/small.bin", content=b"x" * 10_000)
        blob = _only_blob_of(server, before)
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0x01
        blob.write_bytes(bytes(data))
        r = c.get(f"{_base(tenant)}/artifacts/flip/small.bin")
        assert r.status_code == 500
        assert r.json()["error"]["code"] == "integrity_error"
        assert b"x" * 100 not in r.content


def test_corruption_late_in_a_large_object_never_yields_the_full_body(
    server: RunningServer, tenant: Tenant
) -> None:
    payload = os.urandom(12 * 1024 * 1024)
    before = set(_blob_files(server.home))
    with server.client(tenant.keys["lead"]) as c:
        c.put(f"{_base(tenant)}/artifacts/flip/large.bin", content=payload)
        blob = _only_blob_of(server, before)
        data = bytearray(blob.read_bytes())
        data[-100] ^= 0x01  # inside the last chunk
        blob.write_bytes(bytes(data))
        received = b""
        with pytest.raises(httpx.HTTPError):
            with c.stream("GET", f"{_base(tenant)}/artifacts/flip/large.bin") as r:
                assert r.status_code == 200
                for piece in r.iter_bytes():
                    received += piece
        assert len(received) < len(payload)


def test_presigned_url_works_without_token_and_expires(
    server: RunningServer, tenant: Tenant
) -> None:
    base = _base(tenant)
    with (
        server.client(tenant.keys["viewer"]) as viewer,
        server.client(tenant.keys["scientist"]) as writer,
    ):
        writer.put(f"{base}/artifacts/share/report.csv", content=b"a,b\n1,2\n")
        r = viewer.post(f"{base}/artifact-presign/share/report.csv", json={"expires_in": 2})
        assert r.status_code == 200, r.text
        url = r.json()["url"]
    assert httpx.get(url).content == b"a,b\n1,2\n"
    assert httpx.get(url.replace("signature=", "signature=0")).status_code == 403
    assert httpx.get(url.replace("share/report.csv", "share/other.csv")).status_code == 403
    time.sleep(3)
    expired = httpx.get(url)
    assert expired.status_code == 403
    assert "expired" in expired.json()["error"]["message"]


def test_concurrent_puts_get_unique_increasing_versions(
    server: RunningServer, tenant: Tenant
) -> None:
    url = f"{server.url}{_base(tenant)}/artifacts/race/x.bin"
    headers = {"Authorization": f"Bearer {tenant.keys['scientist']}"}

    def put(i: int) -> int:
        r = httpx.put(url, content=f"body {i}".encode(), headers=headers, timeout=60)
        assert r.status_code == 201, r.text
        return int(r.json()["version"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        versions = sorted(pool.map(put, range(16)))
    assert versions == list(range(1, 17))


def test_head_reports_size_and_digest(server: RunningServer, tenant: Tenant) -> None:
    import hashlib

    body = b"hello head"
    with server.client(tenant.keys["scientist"]) as c:
        c.put(f"{_base(tenant)}/artifacts/h.txt", content=body)
        r = c.head(f"{_base(tenant)}/artifacts/h.txt")
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(body))
    assert r.headers["x-shipyard-sha256"] == hashlib.sha256(body).hexdigest()
    assert r.content == b""
