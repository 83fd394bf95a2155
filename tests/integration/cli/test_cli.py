"""The ``shipyard`` CLI end to end: a real subprocess against a real server, on both backends.

Every test checks what a user sees: the JSON or the line printed, the exit code (0 done, 1 the
server said no, 2 a usage or configuration error, 3 the server could not be reached) and the
bytes of the files written. Helpers live in tests/support/cli.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import httpx
import psycopg
import pytest
from tests.conftest import Tenant, unique
from tests.support.cli import (
    cli_env,
    error_line,
    ok_json,
    run_cli,
    run_cli_bytes,
    run_cli_in_pty,
)
from tests.support.servers import RunningServer, free_port, start_server

# "error: <message> — <status> <code> (request <id>)", as printed by shipyard.cli.main.
STATUS = re.compile(r" — (\d{3}) [a-z_]+")


def key_env(server: RunningServer, api_key: str, directory: Path) -> dict[str, str]:
    """A CLI environment that authenticates with ``api_key`` through the env variables."""
    return cli_env(directory, SHIPYARD_URL=server.url, SHIPYARD_API_KEY=api_key)


def status_of(line: str) -> int:
    match = STATUS.search(line)
    assert match, f"no HTTP status in {line!r}"
    return int(match.group(1))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def profiles(env: dict[str, str]) -> dict[str, dict[str, str]]:
    saved: dict[str, dict[str, str]] = json.loads(Path(env["SHIPYARD_CONFIG"]).read_text())
    return saved


# --- 1. login, whoami, logout ----------------------------------------------------------


def test_login_with_an_api_key_saves_a_private_profile(
    server: RunningServer, env: dict[str, str]
) -> None:
    r = run_cli(env, "login", "--url", server.url, "--api-key", server.admin_key)
    assert r.returncode == 0, r.stderr
    assert "Logged in" in r.stderr and "admin" in r.stderr
    assert server.admin_key not in r.stdout + r.stderr
    profile_file = Path(env["SHIPYARD_CONFIG"])
    assert stat.S_IMODE(profile_file.stat().st_mode) == 0o600
    assert profiles(env) == {"default": {"url": server.url, "api_key": server.admin_key}}

    me = ok_json(run_cli(env, "whoami", "--json"))
    assert (me["username"], me["is_admin"]) == ("admin", True)
    assert me["key_id"] and me["key_id"] in server.admin_key


def test_login_with_a_password_from_the_environment(
    server: RunningServer, env: dict[str, str]
) -> None:
    password = server.credentials["password"]
    # An exported SHIPYARD_API_KEY (for other tools) must not get in the way of --username.
    login_env = {**env, "SHIPYARD_PASSWORD": password, "SHIPYARD_API_KEY": "shpk_stale"}
    r = run_cli(login_env, "login", "--url", server.url, "--username", "admin")
    assert r.returncode == 0, r.stderr
    assert "Logged in" in r.stderr
    assert stat.S_IMODE(Path(env["SHIPYARD_CONFIG"]).stat().st_mode) == 0o600
    saved = profiles(env)["default"]
    assert saved["username"] == "admin" and saved["access_token"] and saved["refresh_token"]
    assert "api_key" not in saved
    assert password not in Path(env["SHIPYARD_CONFIG"]).read_text()

    me = ok_json(run_cli(env, "whoami", "--json"))  # no SHIPYARD_PASSWORD: the saved tokens
    assert (me["username"], me["key_id"]) == ("admin", None)


def test_a_wrong_password_is_one_error_line(
    server: RunningServer, tenant: Tenant, env: dict[str, str]
) -> None:
    # One failed login only: the shared server throttles a client after 10 in 5 minutes.
    user = tenant.users["viewer"]
    r = run_cli(
        {**env, "SHIPYARD_PASSWORD": "not-the-password"},
        "login",
        "--url",
        server.url,
        "--username",
        user,
    )
    line = error_line(r, 1)
    assert status_of(line) == 401
    assert "not-the-password" not in r.stderr
    assert not Path(env["SHIPYARD_CONFIG"]).exists()


def test_after_logout_commands_ask_to_log_in(server: RunningServer, env: dict[str, str]) -> None:
    keyed = {**env, "SHIPYARD_API_KEY": server.admin_key}  # the key may come from the env
    assert run_cli(keyed, "login", "--url", server.url).returncode == 0
    assert profiles(env)["default"]["api_key"] == server.admin_key
    r = run_cli(env, "logout")
    assert r.returncode == 0 and "Forgot" in r.stderr
    assert server.admin_key not in Path(env["SHIPYARD_CONFIG"]).read_text()

    line = error_line(run_cli(env, "whoami"), 2)
    assert "shipyard login" in line

    again = run_cli(env, "logout")
    assert again.returncode == 0 and "No saved credentials" in again.stderr


def test_the_local_admin_credentials_are_a_last_resort(
    server: RunningServer, env: dict[str, str]
) -> None:
    r = run_cli({**env, "SHIPYARD_HOME": str(server.home)}, "whoami", "--json")
    assert ok_json(r)["username"] == "admin"
    assert f"using the local admin credentials of {server.url}" in r.stderr


# --- 2. teams and projects ---------------------------------------------------------------


def test_a_team_tag_policy_applies_to_new_projects(admin_env: dict[str, str]) -> None:
    team = unique("cli-team-")
    created = ok_json(
        run_cli(admin_env, "teams", "create", team, "--required-tag", "Owner", "--json")
    )
    assert (created["name"], created["required_tags"]) == (team, ["Owner"])
    assert team in [t["name"] for t in ok_json(run_cli(admin_env, "teams", "ls", "--json"))]

    line = error_line(run_cli(admin_env, "projects", "create", f"{team}/p"), 1)
    assert "Owner" in line and 400 <= status_of(line) < 500

    project = ok_json(
        run_cli(admin_env, "projects", "create", f"{team}/p", "--tag", "Owner=ana", "--json")
    )
    assert (project["team"], project["name"], project["tags"]) == (team, "p", {"Owner": "ana"})
    listed = ok_json(run_cli(admin_env, "projects", "ls", team, "--json"))
    assert [(p["name"], p["tags"]) for p in listed] == [("p", {"Owner": "ana"})]
    shown = ok_json(run_cli(admin_env, "projects", "show", f"{team}/p", "--json"))
    assert (shown["name"], shown["tags"]) == ("p", {"Owner": "ana"})
    assert ok_json(run_cli(admin_env, "teams", "show", team, "--json"))["required_tags"] == [
        "Owner"
    ]
    line = error_line(run_cli(admin_env, "projects", "show", f"{team}/nope"), 1)
    assert status_of(line) == 404

    table = run_cli(admin_env, "projects", "ls", team)
    assert table.returncode == 0
    rows = [[c.strip() for c in re.split("[│┃]", line)] for line in table.stdout.splitlines()]
    assert rows[0][:4] == ["team", "name", "description", "tags"], table.stdout
    assert [r[:4] for r in rows if r[0] == team] == [[team, "p", "", "Owner=ana"]]


# --- 3. users, members, and what a viewer may not do ------------------------------------


def test_a_viewer_reads_but_cannot_create_or_upload(
    server: RunningServer, admin_env: dict[str, str], tmp_path: Path
) -> None:
    team, user, password = unique("cli-view-"), unique("cli-user-"), "viewer-password-1"
    ok_json(run_cli(admin_env, "teams", "create", team, "--json"))
    ok_json(run_cli(admin_env, "projects", "create", f"{team}/p", "--json"))
    made = ok_json(run_cli(admin_env, "users", "create", user, "--password", password, "--json"))
    assert (made["username"], made["is_admin"]) == (user, False)
    assert user in [u["username"] for u in ok_json(run_cli(admin_env, "users", "ls", "--json"))]
    added = ok_json(run_cli(admin_env, "members", "add", team, user, "--role", "viewer", "--json"))
    assert (added["username"], added["role"]) == (user, "viewer")
    members = ok_json(run_cli(admin_env, "members", "ls", team, "--json"))
    assert {m["username"]: m["role"] for m in members}[user] == "viewer"

    # The user logs in with their password and makes a key for themselves.
    own = cli_env(tmp_path / "user")
    r = run_cli(
        {**own, "SHIPYARD_PASSWORD": password}, "login", "--url", server.url, "--username", user
    )
    assert r.returncode == 0, r.stderr
    key = ok_json(run_cli(own, "keys", "create", "--team", team, "--role", "viewer", "--json"))
    assert (key["username"], key["role"]) == (user, "viewer")

    viewer = key_env(server, key["api_key"], tmp_path / "viewer-key")
    assert ok_json(run_cli(viewer, "whoami", "--json"))["teams"] == {team: "viewer"}
    assert [p["name"] for p in ok_json(run_cli(viewer, "projects", "ls", team, "--json"))] == ["p"]
    line = error_line(run_cli(viewer, "projects", "create", f"{team}/q"), 1)
    assert status_of(line) == 403
    src = tmp_path / "x.bin"
    src.write_bytes(b"a viewer's data")
    line = error_line(run_cli(viewer, "artifacts", "put", f"{team}/p", str(src), "x.bin"), 1)
    assert status_of(line) == 403
    assert ok_json(run_cli(viewer, "artifacts", "ls", f"{team}/p", "--json")) == []


# --- 4. API keys --------------------------------------------------------------------------


def test_a_project_key_works_until_it_is_revoked(
    server: RunningServer, tenant: Tenant, admin_env: dict[str, str], tmp_path: Path
) -> None:
    project = f"{tenant.team}/{tenant.project}"
    created = ok_json(
        run_cli(
            admin_env,
            "keys",
            "create",
            "--project",
            project,
            "--role",
            "scientist",
            "--name",
            "cli test",
            "--json",
        )
    )
    assert created["api_key"] and created["access_key_id"] and created["secret_access_key"]
    assert (created["role"], created["name"], created["revoked_at"]) == (
        "scientist",
        "cli test",
        None,
    )

    scientist = key_env(server, created["api_key"], tmp_path / "key")
    assert ok_json(run_cli(scientist, "whoami", "--json"))["key_id"] == created["key_id"]
    src = tmp_path / "k.bin"
    src.write_bytes(b"written with a project key")
    path = f"{unique('cli-key-')}/k.bin"
    put = ok_json(run_cli(scientist, "artifacts", "put", project, str(src), path, "--json"))
    assert (put["path"], put["version"], put["created_by"]) == (path, 1, "admin")

    revoked = ok_json(run_cli(admin_env, "keys", "revoke", created["key_id"], "--json"))
    assert revoked["key_id"] == created["key_id"] and revoked["revoked_at"]

    assert status_of(error_line(run_cli(scientist, "whoami"), 1)) == 401
    assert status_of(error_line(run_cli(scientist, "artifacts", "ls", project), 1)) == 401
    keys = ok_json(run_cli(admin_env, "keys", "ls", "--json"))
    (row,) = [k for k in keys if k["key_id"] == created["key_id"]]
    assert row["revoked_at"] is not None
    assert not {"api_key", "secret_access_key"} & set(row)


def test_a_key_table_does_not_print_the_aws_secret(
    tenant: Tenant, admin_env: dict[str, str]
) -> None:
    r = run_cli(admin_env, "keys", "create", "--team", tenant.team, "--role", "viewer")
    assert r.returncode == 0, r.stderr
    assert "api_key" in r.stdout and "access_key_id" in r.stdout
    assert "secret_access_key" not in r.stdout
    assert "Store the api_key now" in r.stderr


# --- 5. artifacts ------------------------------------------------------------------------


def test_artifact_versions_download_byte_exact(
    server: RunningServer, tenant: Tenant, tmp_path: Path
) -> None:
    sci = key_env(server, tenant.keys["scientist"], tmp_path / "sci")
    project, folder = f"{tenant.team}/{tenant.project}", unique("cli-art-")
    path = f"{folder}/x.bin"
    first, second = os.urandom(300_000), b"\x00\xffsecond\r\n" + os.urandom(5_000)
    (tmp_path / "one.bin").write_bytes(first)
    (tmp_path / "two.bin").write_bytes(second)

    v1 = ok_json(
        run_cli(sci, "artifacts", "put", project, str(tmp_path / "one.bin"), path, "--json")
    )
    v2 = ok_json(
        run_cli(sci, "artifacts", "put", project, str(tmp_path / "two.bin"), path, "--json")
    )
    assert (v1["version"], v1["size"], v1["sha256"]) == (1, len(first), sha256(first))
    assert (v2["version"], v2["size"], v2["sha256"]) == (2, len(second), sha256(second))
    versions = ok_json(run_cli(sci, "artifacts", "versions", project, path, "--json"))
    assert [(v["version"], v["deleted"]) for v in versions] == [(1, False), (2, False)]

    out1, out2 = tmp_path / "out" / "1.bin", tmp_path / "out" / "2.bin"
    r = run_cli(sci, "artifacts", "get", project, path, "--version", "1", "-o", str(out1))
    assert r.returncode == 0 and f"Wrote {out1}" in r.stderr and r.stdout == ""
    assert out1.read_bytes() == first
    assert run_cli(sci, "artifacts", "get", project, path, "-o", str(out2)).returncode == 0
    assert out2.read_bytes() == second

    cwd = tmp_path / "cwd"  # without -o: the artifact's file name in the current directory
    cwd.mkdir()
    assert run_cli(sci, "artifacts", "get", project, path, cwd=cwd).returncode == 0
    assert sorted(cwd.iterdir()) == [cwd / "x.bin"] and (cwd / "x.bin").read_bytes() == second

    raw = run_cli_bytes(sci, "artifacts", "get", project, path, "-o", "-")
    assert (raw.returncode, raw.stdout) == (0, second), raw.stderr
    raw = run_cli_bytes(sci, "artifacts", "get", project, path, "--version", "1", "-o", "-")
    assert (raw.returncode, raw.stdout) == (0, first), raw.stderr

    listed = ok_json(run_cli(sci, "artifacts", "ls", project, "--prefix", folder, "--json"))
    assert [(v["path"], v["version"], v["size"]) for v in listed] == [(path, 2, len(second))]

    marker = ok_json(run_cli(sci, "artifacts", "rm", project, path, "--json"))
    assert (marker["version"], marker["deleted"]) == (3, True)
    out3 = tmp_path / "out" / "3.bin"
    line = error_line(run_cli(sci, "artifacts", "get", project, path, "-o", str(out3)), 1)
    assert status_of(line) == 404
    assert not out3.exists() and sorted(out3.parent.iterdir()) == [out1, out2]
    out4 = tmp_path / "out" / "4.bin"
    r = run_cli(sci, "artifacts", "get", project, path, "--version", "1", "-o", str(out4))
    assert r.returncode == 0 and out4.read_bytes() == first
    assert ok_json(run_cli(sci, "artifacts", "ls", project, "--prefix", folder, "--json")) == []
    versions = ok_json(run_cli(sci, "artifacts", "versions", project, path, "--json"))
    assert [(v["version"], v["deleted"]) for v in versions] == [(1, False), (2, False), (3, True)]


def test_a_presigned_url_downloads_without_a_token(
    server: RunningServer, tenant: Tenant, tmp_path: Path
) -> None:
    sci = key_env(server, tenant.keys["scientist"], tmp_path / "sci")
    project, path = f"{tenant.team}/{tenant.project}", f"{unique('cli-pre-')}/model.bin"
    data = os.urandom(70_000)
    (tmp_path / "model.bin").write_bytes(data)
    assert (
        run_cli(sci, "artifacts", "put", project, str(tmp_path / "model.bin"), path).returncode == 0
    )

    signed = ok_json(
        run_cli(sci, "artifacts", "presign", project, path, "--expires-in", "120", "--json")
    )
    assert signed["version"] == 1 and signed["url"].startswith(server.url + "/")
    fetched = httpx.get(signed["url"], timeout=30)  # no Authorization header
    assert (fetched.status_code, fetched.content) == (200, data)

    url = signed["url"]
    forged = url[:-1] + ("0" if url[-1] != "0" else "1")  # the signature is the last parameter
    assert "signature=" in url.rsplit("&", 1)[-1]
    refused = httpx.get(forged, timeout=30)
    assert 400 <= refused.status_code < 500 and refused.content != data

    plain = run_cli(sci, "artifacts", "presign", project, path)
    assert plain.returncode == 0
    (line,) = plain.stdout.splitlines()
    assert line.startswith(server.url + "/") and "signature=" in line


# --- 6. path traversal through the CLI ---------------------------------------------------

TRAVERSALS = [
    "../../canary.txt",
    "/etc/passwd",
    "a/../../x",
    "..%2f..%2fcanary.txt",
    "%2e%2e/%2e%2e/canary.txt",
    "a\\..\\b",
    "x;y",
    "x#y",
    "x?y",
]  # NUL cannot be passed in argv; the raw HTTP suite covers it.
CANARY = "canary: must never be read or written"


def _outside_store(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` but the server's store, DBs and logs, with its size and
    modification time (a write changes them; ``root`` holds earlier tests' large files)."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
        and "store" not in p.relative_to(root).parts
        and not p.name.endswith((".db", ".db-wal", ".db-shm", ".db-journal", ".log"))
    }


@pytest.mark.parametrize("payload", TRAVERSALS)
def test_traversal_paths_are_refused(
    server: RunningServer, tenant: Tenant, tmp_path: Path, payload: str
) -> None:
    canary = server.home.parent / "canary.txt"
    canary.write_text(CANARY)
    sci = key_env(server, tenant.keys["scientist"], tmp_path / "sci")
    project = f"{tenant.team}/{tenant.project}"
    src, cwd = tmp_path / "evil.bin", tmp_path / "cwd"
    src.write_bytes(b"evil")
    cwd.mkdir()
    before = _outside_store(server.home.parent)

    # Refused by path validation, not merely "not found": a 404 would also hide a lookup.
    put = error_line(run_cli(sci, "artifacts", "put", project, str(src), payload), 1)
    assert 400 <= status_of(put) < 500 and "invalid_path" in put, put
    get = error_line(run_cli(sci, "artifacts", "get", project, payload, cwd=cwd), 1)
    assert 400 <= status_of(get) < 500 and "invalid_path" in get, get

    assert canary.read_text() == CANARY
    assert list(cwd.iterdir()) == []
    assert _outside_store(server.home.parent) == before


# --- 7. audit ----------------------------------------------------------------------------


def _tamper(db_url: str, seq: int) -> None:
    """Edit one audit entry behind the server's back, as an intruder with DB access would."""
    if db_url.startswith("sqlite:///"):
        with closing(sqlite3.connect(db_url.removeprefix("sqlite:///"))) as conn, conn:
            cur = conn.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = ?", (seq,))
    else:
        dsn = db_url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(dsn, autocommit=True) as pg:
            cur = pg.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = %s", (seq,))
    assert cur.rowcount == 1


@pytest.mark.both_backends
def test_audit_verify_names_a_tampered_entry(
    tmp_home: Path, fresh_db_url: str, env: dict[str, str]
) -> None:
    own = start_server(tmp_home, db_url=fresh_db_url)
    try:
        admin = {**env, "SHIPYARD_URL": own.url, "SHIPYARD_API_KEY": own.admin_key}
        offline = {**env, "SHIPYARD_DB_URL": fresh_db_url}
        with own.admin() as client:
            for _ in range(6):
                r = client.post("/api/v1/teams", json={"name": unique("cli-audit-")})
                assert r.status_code == 201, r.text

        r = run_cli(admin, "audit", "verify")
        assert r.returncode == 0, r.stderr
        assert "audit trail intact" in r.stdout
        tail = ok_json(run_cli(admin, "audit", "tail", "-n", "5", "--json"))
        seqs = [e["seq"] for e in tail]
        assert len(seqs) == 5 and seqs == sorted(set(seqs)), seqs
        assert {e["action"] for e in tail} == {"POST /api/v1/teams"}
        intact = ok_json(run_cli(offline, "audit", "verify", "--home", str(tmp_home), "--json"))
        assert (intact["ok"], intact["first_bad_seq"]) == (True, None)

        bad = seqs[2]
        _tamper(fresh_db_url, bad)

        r = run_cli(admin, "audit", "verify")
        assert r.returncode == 1 and r.stdout == "", r.stdout
        assert "Traceback" not in r.stderr
        assert f"audit trail broken at entry {bad}:" in r.stderr
        r = run_cli(offline, "audit", "verify", "--home", str(tmp_home), "--json")
        assert r.returncode == 1, r.stderr
        broken = json.loads(r.stdout)
        assert (broken["ok"], broken["first_bad_seq"]) == (False, bad), broken
    finally:
        own.stop()


# --- 8. errors without a server ----------------------------------------------------------


def test_an_unreachable_server_is_exit_3(env: dict[str, str], tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    down = {**env, "SHIPYARD_URL": url, "SHIPYARD_API_KEY": "x"}
    for args in (
        ("whoami",),
        ("artifacts", "get", "t/p", "x.bin", "-o", str(tmp_path / "x.bin")),
        ("login", "--url", url, "--username", "someone"),
    ):
        line = error_line(run_cli({**down, "SHIPYARD_PASSWORD": "pw-12345678"}, *args), 3)
        assert line.startswith(f"error: cannot reach Shipyard at {url}"), line
    assert not (tmp_path / "x.bin").exists()


def test_usage_errors_exit_2_without_a_traceback(env: dict[str, str]) -> None:
    down = {**env, "SHIPYARD_URL": f"http://127.0.0.1:{free_port()}", "SHIPYARD_API_KEY": "x"}
    r = run_cli(down, "keys", "create", "--role", "viewer")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--team" in r.stderr and "--project" in r.stderr
    r = run_cli(down, "projects", "create", "t/p", "--tag", "Owner")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "KEY=VALUE" in r.stderr
    line = error_line(run_cli(down, "artifacts", "ls", "no-slash"), 2)
    assert "TEAM/PROJECT" in line


# --- 9. progress bars on a terminal only -------------------------------------------------


def test_transfers_show_progress_on_a_terminal_only(
    server: RunningServer, tenant: Tenant, tmp_path: Path
) -> None:
    sci = key_env(server, tenant.keys["scientist"], tmp_path / "sci")
    project, path = f"{tenant.team}/{tenant.project}", f"{unique('cli-big-')}/big.bin"
    big, back = tmp_path / "big.bin", tmp_path / "back.bin"
    data = os.urandom(20 * 1024 * 1024)
    big.write_bytes(data)
    terminal = {**sci, "TERM": "xterm-256color"}
    try:
        code, screen = run_cli_in_pty(terminal, "artifacts", "put", project, str(big), path)
        assert code == 0, screen
        assert f"put {path}" in screen, screen
        assert re.search(r"\d+\.\d/2[01]\.\d MB|\d+\.\d/20\.0 MiB", screen), screen

        code, screen = run_cli_in_pty(terminal, "artifacts", "get", project, path, "-o", str(back))
        assert code == 0, screen
        assert f"get {path}" in screen and re.search(r"M(i)?B", screen), screen
        assert back.read_bytes() == data

        piped = run_cli(sci, "artifacts", "put", project, str(big), path)
        assert piped.returncode == 0 and piped.stderr == "", piped.stderr
        assert "MB" not in piped.stdout and "━" not in piped.stdout
        assert f"path: {path}\n" in piped.stdout and "version: 2\n" in piped.stdout
        got = run_cli(sci, "artifacts", "get", project, path, "-o", str(back))
        assert got.returncode == 0 and got.stderr == f"Wrote {back}\n"
    finally:  # 40 MiB left behind would slow every snapshot of the session's temp dir
        big.unlink(missing_ok=True)
        back.unlink(missing_ok=True)
