"""The audit trail over HTTP: what is written, that it is read-only, and that tampering shows.

Tampering tests run on the tuned server (a signed digest every 5 entries) and edit its database
directly, as an intruder with DB access would; each restores what it changed, and the
``tamper`` fixture checks the log verifies again afterwards.
"""

from __future__ import annotations

import signal
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant, unique
from tests.integration.security.helpers import ServerDB, error_of, login, server_db
from tests.support.servers import RunningServer, start_server

from shipyard.db.engine import Database
from shipyard.security.audit import AuditRecord, AuditService, entry_hash
from shipyard.security.keyring import SigningKey
from shipyard.security.models import AuditDigest, AuditEvent

V1 = "/api/v1"


def _entries(server: RunningServer, n: int = 500) -> list[dict[str, Any]]:
    with server.admin() as admin:
        r = admin.get(V1 + "/audit", params={"n": n})
    assert r.status_code == 200
    rows: list[dict[str, Any]] = r.json()
    return rows


def _entry_for(server: RunningServer, response: httpx.Response) -> dict[str, Any]:
    request_id = response.headers["x-request-id"]
    found = [e for e in _entries(server) if e["request_id"] == request_id]
    assert len(found) == 1, f"expected one audit entry for request {request_id}, got {found}"
    return found[0]


def _key_id(api_key: str) -> str:
    return api_key.split("_")[1]


def _verify(server: RunningServer) -> dict[str, Any]:
    with server.admin() as admin:
        r = admin.get(V1 + "/audit/verify")
    assert r.status_code == 200
    result: dict[str, Any] = r.json()
    return result


# --- what is written -------------------------------------------------------------------


def test_a_mutating_request_is_audited(server: RunningServer, tenant: Tenant) -> None:
    with server.client(tenant.keys["lead"]) as lead:
        r = lead.post(f"{V1}/teams/{tenant.team}/projects", json={"name": unique("aud-")})
    assert r.status_code == 201
    entry = _entry_for(server, r)
    assert entry["actor"] == f"{tenant.users['lead']} (key {_key_id(tenant.keys['lead'])})"
    assert entry["action"] == "POST /api/v1/teams/{team}/projects"
    assert entry["resource"] == f"/api/v1/teams/{tenant.team}/projects"
    assert (entry["outcome"], entry["status_code"]) == ("ok", 201)
    assert entry["client"] == "127.0.0.1"
    assert len(entry["hash"]) == 64


def test_denied_requests_are_audited(server: RunningServer, tenant: Tenant) -> None:
    with server.client() as anon:
        anonymous = anon.get(f"{V1}/teams/{tenant.team}")
    with server.client(tenant.keys["viewer"]) as viewer:
        forbidden = viewer.post(f"{V1}/teams/{tenant.team}/projects", json={"name": "nope"})
    assert (anonymous.status_code, forbidden.status_code) == (401, 403)
    entry = _entry_for(server, anonymous)
    assert (entry["actor"], entry["outcome"], entry["status_code"]) == ("anonymous", "denied", 401)
    assert entry["action"] == "GET /api/v1/teams/{team}"
    entry = _entry_for(server, forbidden)
    assert entry["actor"].startswith(tenant.users["viewer"] + " (key ")
    assert (entry["outcome"], entry["status_code"]) == ("denied", 403)
    assert entry["client"] == "127.0.0.1"


def test_a_failed_login_is_audited_under_the_name_tried(server: RunningServer) -> None:
    name = unique("nobody-")
    r = login(server, name, "wrong password")
    assert r.status_code == 401
    entry = _entry_for(server, r)
    assert (entry["actor"], entry["outcome"]) == (name, "denied")
    assert "wrong password" not in str(_entries(server))


def test_a_failed_mutation_is_audited_as_an_error(server: RunningServer, tenant: Tenant) -> None:
    with server.client(tenant.keys["lead"]) as lead:
        r = lead.post(f"{V1}/teams/{tenant.team}/projects", json={"name": "../bad name"})
    assert r.status_code == 422
    assert _entry_for(server, r)["outcome"] == "error"


def test_reads_that_succeed_are_not_audited(server: RunningServer, tenant: Tenant) -> None:
    with server.client(tenant.keys["viewer"]) as viewer:
        r = viewer.get(f"{V1}/teams/{tenant.team}")
    assert r.status_code == 200
    request_id = r.headers["x-request-id"]
    assert all(e["request_id"] != request_id for e in _entries(server))


def test_the_request_id_a_client_sends_is_kept(server: RunningServer, tenant: Tenant) -> None:
    trace = unique("trace-")
    with server.client(tenant.keys["lead"]) as lead:
        r = lead.patch(
            f"{V1}/teams/{tenant.team}",
            json={"description": "traced"},
            headers={"x-request-id": trace},
        )
    assert r.headers["x-request-id"] == trace
    assert _entry_for(server, r)["request_id"] == trace


def test_a_nul_byte_in_the_path_does_not_escape_the_audit(server: RunningServer) -> None:
    """PostgreSQL refuses NUL in text: the entry must still be written."""
    with server.client() as anon:
        r = anon.delete(f"{V1}/keys/abc%00def")
    assert r.status_code == 401
    entry = _entry_for(server, r)
    assert entry["outcome"] == "denied"
    assert entry["resource"].startswith("/api/v1/keys/abc")


def test_a_nul_byte_in_a_name_is_a_clean_404_or_401(server: RunningServer) -> None:
    with server.admin() as admin:
        assert admin.get(f"{V1}/teams/a%00b").status_code == 404
        assert admin.delete(f"{V1}/keys/SHK%00").status_code == 404
    r = login(server, "adm\x00in", "whatever")
    assert r.status_code in (401, 422)
    error_of(r)


def test_a_lead_reads_only_their_teams_entries(
    server: RunningServer, tenant: Tenant, tenant_b: Tenant
) -> None:
    with server.client(tenant_b.keys["lead"]) as lead_b:
        assert lead_b.patch(f"{V1}/teams/{tenant_b.team}", json={"description": "b"}).is_success
    with server.client(tenant.keys["lead"]) as lead:
        r = lead.get(V1 + "/audit", params={"n": 10_000})
    assert r.status_code == 200
    resources = [e["resource"] for e in r.json()]
    assert resources and all(tenant.team in res for res in resources)
    with server.client(tenant.keys["engineer"]) as engineer:
        r = engineer.get(V1 + "/audit")
    assert r.status_code == 403
    assert "audit:read" in error_of(r)["message"]


def test_the_audit_api_is_read_only(server: RunningServer) -> None:
    with server.client() as anon:
        paths = anon.get(V1 + "/openapi.json").json()["paths"]
    audit_ops = {(m, p) for p, ops in paths.items() if p.startswith(V1 + "/audit") for m in ops}
    assert audit_ops and {m for m, _ in audit_ops} == {"get"}, audit_ops
    with server.admin() as admin:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            assert admin.request(method, V1 + "/audit").status_code == 405
            assert admin.request(method, V1 + "/audit/verify").status_code == 405


def test_verify_passes_on_an_untouched_log(server: RunningServer) -> None:
    result = _verify(server)
    assert result["ok"] is True, result
    assert result["checked"] > 0
    assert result["first_bad_seq"] is None


def test_the_home_is_private(server: RunningServer) -> None:
    assert stat.S_IMODE(server.home.stat().st_mode) == 0o700
    for name in ("master.key", "audit-signing.key", "admin-credentials.json"):
        assert stat.S_IMODE((server.home / name).stat().st_mode) == 0o600, name
    # A symlink's own mode means nothing (a job environment's bin/python points at the
    # platform's interpreter, outside the home); what it points to inside the home is checked.
    loose = [
        str(p.relative_to(server.home))
        for p in server.home.rglob("*")
        if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) & 0o077
    ]
    assert not loose, f"readable by others: {loose}"


# --- tampering -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def filled(tuned_server: RunningServer) -> RunningServer:
    """At least 17 entries and 3 signed digests on the tuned server."""
    with tuned_server.admin() as admin:
        while len(_entries(tuned_server)) < 17:
            assert admin.post(V1 + "/teams", json={"name": unique("fill-")}).status_code == 201
    return tuned_server


@pytest.fixture
def tamper(filled: RunningServer) -> Iterator[ServerDB]:
    assert _verify(filled)["ok"] is True
    with server_db(filled) as db:
        assert len(db.audit_digests()) >= 3
        yield db
    after = _verify(filled)
    assert after["ok"] is True, f"the test did not restore what it changed: {after}"


def _content(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "seq"}


def test_an_edited_entry_is_named(filled: RunningServer, tamper: ServerDB) -> None:
    original = tamper.rows(AuditEvent, seq=3)[0]
    tamper.update(AuditEvent, {"seq": 3}, actor="mallory")
    try:
        result = _verify(filled)
        assert (result["ok"], result["first_bad_seq"]) == (False, 3), result
        assert "altered" in result["reason"]
    finally:
        tamper.update(AuditEvent, {"seq": 3}, actor=original["actor"])


def test_a_deleted_entry_is_named(filled: RunningServer, tamper: ServerDB) -> None:
    original = tamper.rows(AuditEvent, seq=4)
    tamper.delete(AuditEvent, AuditEvent.seq == 4)
    try:
        result = _verify(filled)
        assert (result["ok"], result["first_bad_seq"]) == (False, 4), result
        assert "missing" in result["reason"]
    finally:
        tamper.insert(AuditEvent, original)


def test_reordered_entries_are_caught(filled: RunningServer, tamper: ServerDB) -> None:
    six, seven = tamper.rows(AuditEvent, seq=6)[0], tamper.rows(AuditEvent, seq=7)[0]
    tamper.update(AuditEvent, {"seq": 6}, **_content(seven))
    tamper.update(AuditEvent, {"seq": 7}, **_content(six))
    try:
        result = _verify(filled)
        assert (result["ok"], result["first_bad_seq"]) == (False, 6), result
    finally:
        tamper.update(AuditEvent, {"seq": 6}, **_content(six))
        tamper.update(AuditEvent, {"seq": 7}, **_content(seven))


def test_a_rechained_edit_is_caught_by_the_next_signed_digest(
    filled: RunningServer, tamper: ServerDB
) -> None:
    """An intruder who edits entry 2 and recomputes every hash after it still fails."""
    rows = tamper.audit_events()
    prev = rows[0]["hash"]
    for row in rows[1:]:
        actor = "mallory" if row["seq"] == 2 else row["actor"]
        record = AuditRecord(
            actor,
            row["action"],
            row["resource"],
            row["outcome"],
            row["status_code"],
            row["request_id"],
            row["client"],
            row["team"],
        )
        forged = entry_hash(prev, row["seq"], row["at"], record)
        tamper.update(AuditEvent, {"seq": row["seq"]}, actor=actor, prev_hash=prev, hash=forged)
        prev = forged
    try:
        result = _verify(filled)
        assert (result["ok"], result["first_bad_seq"]) == (False, 5), result
        assert "signed digest" in result["reason"]
    finally:
        for row in rows:
            tamper.update(AuditEvent, {"seq": row["seq"]}, **_content(row))


def test_a_tail_truncated_past_a_signed_digest_is_caught(
    filled: RunningServer, tamper: ServerDB
) -> None:
    last_digest = tamper.audit_digests()[-1]["seq"]
    tail = [r for r in tamper.audit_events() if r["seq"] >= last_digest - 1]
    tamper.delete(AuditEvent, AuditEvent.seq >= last_digest - 1)
    try:
        result = _verify(filled)
        assert (result["ok"], result["first_bad_seq"]) == (False, last_digest - 1), result
        assert f"entry {last_digest} was signed" in result["reason"]
    finally:
        tamper.insert(AuditEvent, tail)


def test_an_altered_digest_signature_is_caught(filled: RunningServer, tamper: ServerDB) -> None:
    digest = tamper.audit_digests()[1]
    flipped = ("0" if digest["signature"][0] != "0" else "1") + digest["signature"][1:]
    tamper.update(AuditDigest, {"seq": digest["seq"]}, signature=flipped)
    try:
        result = _verify(filled)
        assert (result["ok"], result["first_bad_seq"]) == (False, digest["seq"]), result
        assert "signature" in result["reason"]
    finally:
        tamper.update(AuditDigest, {"seq": digest["seq"]}, signature=digest["signature"])


def test_an_altered_digest_hash_is_caught(filled: RunningServer, tamper: ServerDB) -> None:
    digest = tamper.audit_digests()[0]
    tamper.update(AuditDigest, {"seq": digest["seq"]}, hash="f" * 64)
    try:
        result = _verify(filled)
        assert (result["ok"], result["first_bad_seq"]) == (False, digest["seq"]), result
    finally:
        tamper.update(AuditDigest, {"seq": digest["seq"]}, hash=digest["hash"])


# --- sealing at shutdown ---------------------------------------------------------------


def test_sigterm_seals_the_log(tmp_path: Path, fresh_db_url: str) -> None:
    home = tmp_path / "home"
    server = start_server(home, db_url=fresh_db_url)
    try:
        with server.admin() as admin:
            for _ in range(3):
                assert admin.post(V1 + "/teams", json={"name": unique("seal-")}).is_success
    finally:
        assert server.stop(signal.SIGTERM) == 0, server.log()
    with server_db(server) as db:
        last = db.audit_events()[-1]["seq"]
        assert [d["seq"] for d in db.audit_digests()][-1:] == [last]
    database = Database(fresh_db_url)
    try:
        with database.read() as s:
            result = AuditService(SigningKey(home / "audit-signing.key"), 100).verify(s)
    finally:
        database.dispose()
    assert result.ok, result
    assert result.digests >= 1
