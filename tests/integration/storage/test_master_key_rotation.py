"""Rotating the master key re-wraps data keys; artifacts stay readable, also after a restart."""

from __future__ import annotations

import base64
from pathlib import Path

from tests.conftest import make_tenant
from tests.support.servers import start_server


def test_rotation_rewraps_without_touching_blobs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = start_server(home)
    try:
        tenant = make_tenant(server, roles=("scientist",))
        url = f"/api/v1/projects/{tenant.team}/{tenant.project}/artifacts/a.bin"
        with server.client(tenant.keys["scientist"]) as c:
            assert c.put(url, content=b"before rotation").status_code == 201
        blobs_before = {p: p.read_bytes() for p in (home / "store").rglob("*") if p.is_file()}
        old_key = (home / "master.key").read_bytes()
        with server.admin() as admin:
            r = admin.post("/api/v1/admin/master-key/rotate")
            assert r.status_code == 200, r.text
            assert r.json()["rewrapped"] >= 1 and r.json()["resealed"] >= 2
        assert (home / "master.key").read_bytes() != old_key
        assert not (home / "master.key.next").exists()
        assert len(base64.b64decode((home / "master.key").read_bytes())) == 32
        blobs_after = {p: p.read_bytes() for p in (home / "store").rglob("*") if p.is_file()}
        assert blobs_after == blobs_before  # no data re-encrypted
        with server.client(tenant.keys["scientist"]) as c:
            assert c.get(url).content == b"before rotation"
            assert c.put(url, content=b"after rotation").status_code == 201
    finally:
        server.stop()
    restarted = start_server(home, port=server.port)
    try:
        with restarted.client(tenant.keys["scientist"]) as c:
            assert c.get(url, params={"version": 1}).content == b"before rotation"
            assert c.get(url).content == b"after rotation"
    finally:
        restarted.stop()
