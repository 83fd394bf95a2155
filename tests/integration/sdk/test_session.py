"""The SDK against a real server: artifacts with progress, integrity, errors, token refresh."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from tests.conftest import Tenant, unique
from tests.support.servers import RunningServer, free_port, start_server

import shipyard
from shipyard.sdk._auth import token_expiry


def _session(server: RunningServer, key: str) -> shipyard.Session:
    return shipyard.Session(url=server.url, api_key=key)


def _new_blob(home: Path, before: set[Path]) -> Path:
    (blob,) = {p for p in (home / "store").rglob("*") if p.is_file()} - before
    return blob


def _blobs(home: Path) -> set[Path]:
    return {p for p in (home / "store").rglob("*") if p.is_file()}


def test_file_round_trip_reports_progress_and_is_byte_exact(
    server: RunningServer, tenant: Tenant, tmp_path: Path
) -> None:
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(9 * 1024 * 1024 + 123))
    ups: list[tuple[int, int]] = []
    downs: list[tuple[int, int]] = []
    with _session(server, tenant.keys["scientist"]) as s:
        store = s.artifacts(f"{tenant.team}/{tenant.project}")
        first = store.put("sdk/data.bin", src, progress=lambda d, t: ups.append((d, t)))
        second = store.put("sdk/data.bin", b"tiny")
        dest = store.get("sdk/data.bin", version=first.version, dest=tmp_path / "out" / "d.bin")
        latest = store.get("sdk/data.bin", progress=lambda d, t: downs.append((d, t)))
    size = src.stat().st_size
    assert (first.version, second.version) == (1, 2) and first.size == size
    assert isinstance(dest, Path) and dest.read_bytes() == src.read_bytes()
    assert latest == b"tiny"
    assert ups[-1] == (size, size) and [d for d, _ in ups] == sorted(d for d, _ in ups)
    assert len(ups) >= 3, "a 9 MiB upload reports progress more than once"
    assert downs[-1] == (4, 4)


def test_listing_versions_delete_and_presign(server: RunningServer, tenant: Tenant) -> None:
    with _session(server, tenant.keys["engineer"]) as s:
        store = s.artifacts(f"{tenant.team}/{tenant.project}")
        store.put("listing/a.txt", b"a1")
        store.put("listing/a.txt", b"a2")
        store.put("listing/b.txt", b"b1")
        assert [v.path for v in store.ls("listing/")] == ["listing/a.txt", "listing/b.txt"]
        marker = store.delete("listing/a.txt")
        assert marker.deleted and [v.path for v in store.ls("listing/")] == ["listing/b.txt"]
        assert [(v.version, v.deleted) for v in store.versions("listing/a.txt")] == [
            (1, False),
            (2, False),
            (3, True),
        ]
        with pytest.raises(shipyard.NotFound):
            store.get("listing/a.txt")
        assert store.get("listing/a.txt", version=2) == b"a2"
        signed = store.presign("listing/b.txt", expires_in=60)
        assert store.head("listing/b.txt")["size"] == "2"
    assert httpx.get(signed.url).content == b"b1"


def test_errors_arrive_as_typed_exceptions(server: RunningServer, tenant: Tenant) -> None:
    project = f"{tenant.team}/{tenant.project}"
    with _session(server, tenant.keys["viewer"]) as viewer:
        with pytest.raises(shipyard.PermissionDenied) as denied:
            viewer.artifacts(project).put("x.bin", b"no")
        assert denied.value.status == 403 and denied.value.request_id
        with pytest.raises(shipyard.NotFound):
            viewer.artifacts(f"no-such-team/{tenant.project}").ls()
    with _session(server, tenant.keys["lead"]) as lead:
        with pytest.raises(shipyard.InvalidPath) as bad:
            lead.artifacts(project).put("../../escape.txt", b"no")
        assert bad.value.field == "path"
    with _session(server, server.admin_key) as admin:
        team = unique("tagged")
        admin.create_team(team, required_tags=["Owner", "CostCenter"])
        with pytest.raises(shipyard.ValidationFailed) as invalid:
            admin.create_project(f"{team}/p", tags={"Owner": "ana"})
        assert invalid.value.details["missing"] == ["CostCenter"]
    with _session(server, "shpk_NOTAKEY_nope") as anon, pytest.raises(shipyard.Unauthenticated):
        anon.whoami()
    with (
        shipyard.Session(url=f"http://127.0.0.1:{free_port()}", api_key="x") as dead,
        pytest.raises(shipyard.TransportError, match="cannot reach"),
    ):
        dead.whoami()


def test_corrupt_blobs_never_yield_data(
    server: RunningServer, tenant: Tenant, tmp_path: Path
) -> None:
    with _session(server, tenant.keys["lead"]) as s:
        store = s.artifacts(f"{tenant.team}/{tenant.project}")
        for name, size in (("small", 10_000), ("large", 12 * 1024 * 1024)):
            before = _blobs(server.home)
            store.put(f"corrupt/{name}.bin", os.urandom(size))
            blob = _new_blob(server.home, before)
            data = bytearray(blob.read_bytes())
            data[-100] ^= 0x01
            blob.write_bytes(bytes(data))
            dest = tmp_path / f"{name}.bin"
            with pytest.raises(shipyard.IntegrityError) as caught:
                store.get(f"corrupt/{name}.bin", dest=dest)
            if name == "small":  # caught before the response started
                assert isinstance(caught.value, shipyard.CorruptArtifact)
                assert caught.value.code == "integrity_error"
            assert not dest.exists() and not list(tmp_path.glob(f".{name}.bin.*"))


@pytest.mark.slow
def test_password_session_refreshes_its_token_before_expiry(tmp_path: Path) -> None:
    # A 62 s access token is inside the SDK's 60 s refresh margin after two seconds.
    server = start_server(tmp_path / "home", extra_env={"SHIPYARD_ACCESS_TOKEN_TTL_S": "62"})
    try:
        password = server.credentials["password"]
        with shipyard.Session.login(server.url, "admin", password) as s:
            first_token, first_refresh = s.profile.access_token, s.profile.refresh_token
            assert first_token and token_expiry(first_token)
            time.sleep(2.5)
            assert s.whoami()["username"] == "admin"
            assert s.profile.access_token != first_token
            assert s.profile.refresh_token != first_refresh
        with pytest.raises(shipyard.Unauthenticated):
            shipyard.Session.login(server.url, "admin", "wrong-password")
    finally:
        server.stop()
