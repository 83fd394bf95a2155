"""The audit trail: an append-only, hash-chained log with Ed25519-signed digests.

Each entry stores the SHA-256 of its predecessor and its own hash over a canonical encoding
of its fields; every ``digest_every`` entries (and at shutdown) a digest row signs the hash at
that sequence number. Verification recomputes the chain from the start, so an edited,
deleted or reordered row breaks it at that row, and a tail truncated past a digest is caught
because the signed digest names an entry that no longer exists. Appends are serialized (a
PostgreSQL advisory lock; SQLite's single writer) so sequence numbers never fork.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from shipyard.kit.ids import as_utc, utcnow
from shipyard.security.keyring import SigningKey
from shipyard.security.models import AuditDigest, AuditEvent

GENESIS = "0" * 64
_ADVISORY_LOCK_ID = 0x5A1D_A0D1


@dataclass(frozen=True)
class AuditRecord:
    actor: str
    action: str
    resource: str
    outcome: str
    status_code: int
    request_id: str
    client: str
    team: str | None = None


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    digests: int
    first_bad_seq: int | None = None
    reason: str = ""


def entry_hash(prev_hash: str, seq: int, at: datetime, record: AuditRecord) -> str:
    body = {
        "seq": seq,
        # In UTC whatever the zone ``at`` comes back in: PostgreSQL returns timestamptz in the
        # session's time zone, and "12:00+00:00" and "17:30+05:30" must hash the same.
        "at": as_utc(at).astimezone(UTC).isoformat(),
        "actor": record.actor,
        "action": record.action,
        "resource": record.resource,
        "outcome": record.outcome,
        "status_code": record.status_code,
        "request_id": record.request_id,
        "client": record.client,
        "team": record.team,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}|{canonical}".encode()).hexdigest()


def digest_message(seq: int, entry_hash_hex: str) -> bytes:
    return f"shipyard-audit-digest|{seq}|{entry_hash_hex}".encode()


def record_of(row: AuditEvent) -> AuditRecord:
    """The hashed content of a stored entry."""
    return AuditRecord(
        row.actor,
        row.action,
        row.resource,
        row.outcome,
        row.status_code,
        row.request_id,
        row.client,
        row.team,
    )


class AuditService:
    def __init__(self, signing_key: SigningKey, digest_every: int) -> None:
        self._key = signing_key
        self._every = max(1, digest_every)

    def _lock(self, s: Session) -> None:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})

    def append(self, s: Session, record: AuditRecord) -> AuditEvent:
        """Chain one entry after the last. It is written with a plain INSERT: every mutating
        request pays for this, and the ORM's unit of work would cost more than the row."""
        self._lock(s)
        last = s.execute(
            select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
        ).first()
        seq = (last.seq + 1) if last else 1
        prev = last.hash if last else GENESIS
        at = utcnow()
        values = {
            "seq": seq,
            "at": at,
            "prev_hash": prev,
            "hash": entry_hash(prev, seq, at, record),
            **record.__dict__,
        }
        s.execute(insert(AuditEvent), [values])
        row = AuditEvent(**values)  # not added to the session: the INSERT above wrote it
        if seq % self._every == 0:
            self._sign(s, row)
        return row

    def _sign(self, s: Session, row: AuditEvent) -> None:
        s.add(
            AuditDigest(
                seq=row.seq,
                hash=row.hash,
                key_fingerprint=self._key.fingerprint,
                signature=self._key.sign(digest_message(row.seq, row.hash)),
            )
        )
        s.flush()

    def seal(self, s: Session) -> AuditDigest | None:
        """Sign the current head (at shutdown), unless it is already signed."""
        self._lock(s)
        last = s.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
        if last is None or s.get(AuditDigest, last.seq) is not None:
            return None
        self._sign(s, last)
        return s.get(AuditDigest, last.seq)

    def tail(self, s: Session, n: int, team_ids: Sequence[str] | None = None) -> list[AuditEvent]:
        query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(n)
        if team_ids is not None:
            query = query.where(AuditEvent.team.in_(team_ids))
        return list(reversed(s.scalars(query).all()))

    def count(self, s: Session) -> int:
        return s.scalar(select(func.count()).select_from(AuditEvent)) or 0

    def verify(self, s: Session) -> VerifyResult:
        digests = {d.seq: d for d in s.scalars(select(AuditDigest).order_by(AuditDigest.seq))}
        bad = self._check_digest_signatures(digests.values())
        if bad:
            return bad
        prev, expected_seq, checked = GENESIS, 1, 0
        for row in self._rows(s):
            problem = self._check_row(row, expected_seq, prev, digests.get(row.seq))
            if problem:
                return VerifyResult(False, checked, len(digests), expected_seq, problem)
            prev, expected_seq, checked = row.hash, row.seq + 1, checked + 1
        last_digest = max(digests, default=0)
        if last_digest >= expected_seq:
            reason = f"the log ends at entry {expected_seq - 1} but entry {last_digest} was signed"
            return VerifyResult(False, checked, len(digests), expected_seq, reason)
        return VerifyResult(True, checked, len(digests))

    def _rows(self, s: Session) -> Iterator[AuditEvent]:
        yield from s.scalars(
            select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=2000)
        )

    def _check_row(
        self, row: AuditEvent, expected_seq: int, prev: str, digest: AuditDigest | None
    ) -> str:
        if row.seq != expected_seq:
            return f"entry {expected_seq} is missing (next is {row.seq})"
        if row.prev_hash != prev:
            return f"entry {row.seq} does not follow entry {row.seq - 1} (chain broken)"
        if entry_hash(prev, row.seq, row.at, record_of(row)) != row.hash:
            return f"entry {row.seq} was altered (its hash does not match its content)"
        if digest is not None and digest.hash != row.hash:
            return f"entry {row.seq} does not match its signed digest"
        return ""

    def _check_digest_signatures(self, digests: Iterable[AuditDigest]) -> VerifyResult | None:
        for count, digest in enumerate(digests, start=1):
            if not self._key.verify(digest_message(digest.seq, digest.hash), digest.signature):
                reason = f"the digest at entry {digest.seq} has a bad signature"
                return VerifyResult(False, 0, count, digest.seq, reason)
        return None
