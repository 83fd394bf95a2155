"""`shipyard up`: first start creates the home, later starts reuse it, signals stop it cleanly."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from tests.support.servers import start_server


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_first_start_then_restart_reuses_everything(
    tmp_path: Path, fresh_db_url: str, stop_signal: int
) -> None:
    db_url = fresh_db_url
    home = tmp_path / "home"
    first = start_server(home, db_url=db_url)
    creds = json.loads((home / "admin-credentials.json").read_text())
    assert set(creds) >= {"url", "username", "password", "api_key"}
    assert creds["url"] == first.url
    with first.admin() as admin:
        assert admin.post("/api/v1/teams", json={"name": "kept"}).status_code == 201
    assert first.stop(stop_signal) == 0, first.log()
    master_key = (home / "master.key").read_bytes()

    second = start_server(home, db_url=db_url)
    try:
        assert json.loads((home / "admin-credentials.json").read_text()) == creds
        assert (home / "master.key").read_bytes() == master_key
        with second.client() as anon:
            token = anon.post(
                "/api/v1/auth/token",
                json={"username": "admin", "password": creds["password"]},
            )
            assert token.status_code == 200
        with second.admin() as admin:
            assert [t["name"] for t in admin.get("/api/v1/teams").json()] == ["kept"]
            info = admin.get("/api/v1/info").json()
            assert info["database"] == ("sqlite" if db_url.startswith("sqlite") else "postgresql")
    finally:
        assert second.stop() == 0


def test_startup_banner_names_url_and_credentials(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home")
    server.stop()
    log = server.log()
    assert server.url in log
    assert str(tmp_path / "home" / "admin-credentials.json") in log
    assert server.credentials["password"] not in log
