"""``shipyard.security.audit`` on an in-memory SQLite database with the migrated schema."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shipyard.db.engine import Database
from shipyard.db.migrate import upgrade
from shipyard.security.audit import (
    GENESIS,
    AuditRecord,
    AuditService,
    VerifyResult,
    entry_hash,
    record_of,
)
from shipyard.security.keyring import SigningKey
from shipyard.security.models import AuditDigest, AuditEvent

EVERY = 4


@pytest.fixture
def db() -> Iterator[Database]:
    database = Database("sqlite://")
    upgrade(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return SigningKey(tmp_path / "audit-signing.key")


@pytest.fixture
def audit(key: SigningKey) -> AuditService:
    return AuditService(key, digest_every=EVERY)


def record(i: int, team: str | None = None) -> AuditRecord:
    return AuditRecord(
        actor=f"user{i}",
        action="POST /api/v1/teams",
        resource=f"/api/v1/teams/t{i}",
        outcome="ok",
        status_code=201,
        request_id=f"req{i}",
        client="127.0.0.1",
        team=team,
    )


def fill(db: Database, audit: AuditService, n: int) -> None:
    for i in range(1, n + 1):
        with db.transaction() as s:
            audit.append(s, record(i, team="a" if i % 2 else "b"))


def verify(db: Database, audit: AuditService) -> VerifyResult:
    with db.read() as s:
        return audit.verify(s)


def edit(db: Database, *statements: object) -> None:
    with db.transaction() as s:
        for statement in statements:
            s.execute(statement)  # type: ignore[call-overload]


def events(s: Session) -> list[AuditEvent]:
    return list(s.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def test_entries_form_a_chain_with_a_digest_every_n(db: Database, audit: AuditService) -> None:
    fill(db, audit, 10)
    with db.read() as s:
        rows = events(s)
        digests = [d.seq for d in s.scalars(select(AuditDigest).order_by(AuditDigest.seq))]
    assert [r.seq for r in rows] == list(range(1, 11))
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert digests == [4, 8]
    assert verify(db, audit) == VerifyResult(True, 10, 2)


def test_an_empty_log_verifies(db: Database, audit: AuditService) -> None:
    assert verify(db, audit) == VerifyResult(True, 0, 0)


def test_an_edited_entry_is_named(db: Database, audit: AuditService) -> None:
    fill(db, audit, 10)
    edit(db, update(AuditEvent).where(AuditEvent.seq == 6).values(actor="mallory"))
    result = verify(db, audit)
    assert (result.ok, result.first_bad_seq, result.checked) == (False, 6, 5)
    assert "entry 6 was altered" in result.reason


@pytest.mark.parametrize(
    "column", ["action", "resource", "outcome", "request_id", "client", "team"]
)
def test_every_field_is_covered_by_the_hash(db: Database, audit: AuditService, column: str) -> None:
    fill(db, audit, 3)
    edit(db, update(AuditEvent).where(AuditEvent.seq == 2).values({column: "changed"}))
    assert verify(db, audit).first_bad_seq == 2


def test_the_time_and_status_are_covered_by_the_hash(db: Database, audit: AuditService) -> None:
    fill(db, audit, 3)
    with db.read() as s:
        at = events(s)[1].at
    edit(db, update(AuditEvent).where(AuditEvent.seq == 2).values(at=at + timedelta(seconds=1)))
    assert verify(db, audit).first_bad_seq == 2
    edit(db, update(AuditEvent).where(AuditEvent.seq == 2).values(at=at, status_code=200))
    assert verify(db, audit).first_bad_seq == 2


def test_a_deleted_entry_is_named(db: Database, audit: AuditService) -> None:
    fill(db, audit, 10)
    edit(db, delete(AuditEvent).where(AuditEvent.seq == 3))
    result = verify(db, audit)
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "entry 3 is missing" in result.reason


def test_the_first_entry_deleted_is_named(db: Database, audit: AuditService) -> None:
    fill(db, audit, 3)
    edit(db, delete(AuditEvent).where(AuditEvent.seq == 1))
    assert verify(db, audit).first_bad_seq == 1


def test_swapped_entries_are_caught(db: Database, audit: AuditService) -> None:
    fill(db, audit, 10)
    with db.read() as s:
        rows = {r.seq: r for r in events(s)}
    content = ["at", "actor", "action", "resource", "outcome", "status_code", "request_id"]
    content += ["client", "team", "prev_hash", "hash"]

    def values(seq: int) -> dict[str, object]:
        return {c: getattr(rows[seq], c) for c in content}

    edit(
        db,
        update(AuditEvent).where(AuditEvent.seq == 5).values(values(6)),
        update(AuditEvent).where(AuditEvent.seq == 6).values(values(5)),
    )
    result = verify(db, audit)
    assert (result.ok, result.first_bad_seq) == (False, 5)


def test_a_rechained_edit_fails_at_the_next_digest(db: Database, audit: AuditService) -> None:
    """Recomputing every hash after an edit needs no key; the signed digest still differs."""
    fill(db, audit, 10)
    with db.transaction() as s:
        rows = events(s)
        prev = rows[0].hash
        for row in rows[1:]:
            if row.seq == 2:
                row.actor = "mallory"
            row.prev_hash, row.hash = prev, entry_hash(prev, row.seq, row.at, record_of(row))
            prev = row.hash
    result = verify(db, audit)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "signed digest" in result.reason


def test_a_tail_truncated_past_a_digest_is_caught(db: Database, audit: AuditService) -> None:
    fill(db, audit, 10)
    edit(db, delete(AuditEvent).where(AuditEvent.seq >= 7))
    result = verify(db, audit)
    assert (result.ok, result.first_bad_seq) == (False, 7)
    assert "ends at entry 6 but entry 8 was signed" in result.reason


def test_a_tail_truncated_short_of_a_digest_is_not_provable(
    db: Database, audit: AuditService
) -> None:
    """The known limit, and why the server seals at shutdown: after the last digest, only
    entries up to it are provable."""
    fill(db, audit, 10)
    edit(db, delete(AuditEvent).where(AuditEvent.seq >= 9))
    assert verify(db, audit).ok


def test_an_altered_digest_signature_is_caught(db: Database, audit: AuditService) -> None:
    fill(db, audit, 10)
    with db.read() as s:
        signature = s.get(AuditDigest, 8).signature  # type: ignore[union-attr]
    flipped = ("1" if signature[0] == "0" else "0") + signature[1:]
    edit(db, update(AuditDigest).where(AuditDigest.seq == 8).values(signature=flipped))
    result = verify(db, audit)
    assert (result.ok, result.first_bad_seq) == (False, 8)
    assert "bad signature" in result.reason


def test_a_digest_moved_to_another_entry_is_caught(db: Database, audit: AuditService) -> None:
    fill(db, audit, 10)
    edit(db, update(AuditDigest).where(AuditDigest.seq == 8).values(seq=9))
    assert verify(db, audit).first_bad_seq == 9


def test_digests_signed_by_another_key_are_caught(
    db: Database, audit: AuditService, tmp_path: Path
) -> None:
    fill(db, audit, 5)
    other = AuditService(SigningKey(tmp_path / "other.key"), digest_every=EVERY)
    result = verify(db, other)
    assert (result.ok, result.first_bad_seq) == (False, 4)


def test_seal_signs_the_head_once(db: Database, audit: AuditService) -> None:
    with db.transaction() as s:
        assert audit.seal(s) is None  # nothing to seal
    fill(db, audit, 6)
    with db.transaction() as s:
        sealed = audit.seal(s)
        assert sealed is not None and sealed.seq == 6
    with db.transaction() as s:
        assert audit.seal(s) is None
    fill(db, audit, 2)  # seq 8 is a regular digest: nothing more to seal
    with db.transaction() as s:
        assert audit.seal(s) is None
    edit(db, delete(AuditEvent).where(AuditEvent.seq == 6))
    assert verify(db, audit).first_bad_seq == 6


def test_the_hash_does_not_depend_on_the_time_zone_it_is_read_in() -> None:
    """PostgreSQL returns timestamptz in the session's zone; the chain must not care."""
    at = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    kolkata = at.astimezone(timezone(timedelta(hours=5, minutes=30)))
    naive = at.replace(tzinfo=None)  # SQLite hands back naive UTC
    rec = record(1)
    assert entry_hash(GENESIS, 1, at, rec) == entry_hash(GENESIS, 1, kolkata, rec)
    assert entry_hash(GENESIS, 1, at, rec) == entry_hash(GENESIS, 1, naive, rec)
    later = at + timedelta(microseconds=1)
    assert entry_hash(GENESIS, 1, at, rec) != entry_hash(GENESIS, 1, later, rec)


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(AuditRecord)])
def test_entry_hash_covers_every_record_field(field: str) -> None:
    at = datetime(2026, 5, 1, tzinfo=UTC)
    base = record(1, team="t")
    value: Any = 999 if field == "status_code" else "other"
    changed = dataclasses.replace(base, **{field: value})
    assert entry_hash(GENESIS, 1, at, base) != entry_hash(GENESIS, 1, at, changed)
    assert entry_hash(GENESIS, 1, at, base) != entry_hash("1" * 64, 1, at, base)
    assert entry_hash(GENESIS, 1, at, base) != entry_hash(GENESIS, 2, at, base)


def test_tail_filters_by_team(db: Database, audit: AuditService) -> None:
    fill(db, audit, 6)
    with db.read() as s:
        assert [r.seq for r in audit.tail(s, 10, ["a"])] == [1, 3, 5]
        assert [r.seq for r in audit.tail(s, 2)] == [5, 6]
        assert audit.tail(s, 10, []) == []
        assert audit.count(s) == 6
