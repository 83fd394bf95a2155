"""Identity tables: users, teams, projects, memberships, API keys, refresh tokens, audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.db.base import Base, IdMixin, TaggedMixin, TimestampMixin
from shipyard.kit.ids import utcnow


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class Team(IdMixin, TimestampMixin, TaggedMixin, Base):
    __tablename__ = "teams"

    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(1024), default="")
    required_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    quotas: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Rules for the team's workloads, e.g. {"require_network_isolation": true}.
    policies: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Project(IdMixin, TimestampMixin, TaggedMixin, Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("team_id", "name"),)

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(1024), default="")


class Membership(TimestampMixin, Base):
    __tablename__ = "memberships"

    team_id: Mapped[str] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16))


class ApiKey(IdMixin, TimestampMixin, Base):
    """An automation credential: ``key_id`` is public, the secret is shown once.

    The secret is stored as a SHA-256 hash for bearer checks and also encrypted under the
    master key, because AWS Signature V4 (boto3 against the gateway) needs the secret itself.
    """

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64))
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class RefreshToken(IdMixin, Base):
    __tablename__ = "refresh_tokens"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditEvent(Base):
    """One line of the append-only, hash-chained audit log (no route updates or deletes it)."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(128))
    resource: Mapped[str] = mapped_column(String(1024))
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int]
    request_id: Mapped[str] = mapped_column(String(64))
    client: Mapped[str] = mapped_column(String(64))
    team: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditDigest(Base):
    """A signed checkpoint of the chain: truncating the log past one is detectable."""

    __tablename__ = "audit_digests"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))
    key_fingerprint: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)
