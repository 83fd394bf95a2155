"""Tables of events and webhooks.

``events.seq`` orders events for ``?after=`` paging: it is assigned by the database and never
reused (SQLite AUTOINCREMENT, a PostgreSQL sequence), and emitters of one project are
serialized until they commit (see ``EventRepository.lock_project``), so within a project a
reader that saw event n has already seen every event before it: pages never skip one.

A delivery is one event to one subscription (its id is what the receiver deduplicates on);
each try is an attempt row. A dispatcher owns a delivery while its lease lasts, and every
write it makes names itself, so two processes never make the same attempt.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.db.base import Base, IdMixin, TimestampMixin
from shipyard.kit.ids import new_id, utcnow

# BIGINT on PostgreSQL; on SQLite only "INTEGER PRIMARY KEY" is the auto-assigned rowid.
SeqType = BigInteger().with_variant(Integer(), "sqlite")


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_project_seq", "project_id", "seq"),
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # "<team>/<project>" when it happened: an event is a record, not a live view
    project: Mapped[str] = mapped_column(String(129))
    type: Mapped[str] = mapped_column(String(128))
    subject: Mapped[str] = mapped_column(String(512))
    actor: Mapped[str] = mapped_column(String(128))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookSubscription(IdMixin, TimestampMixin, Base):
    __tablename__ = "webhook_subscriptions"
    __table_args__ = (Index("ix_webhook_subscriptions_project_id", "project_id"),)

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2048))
    # exact types and prefix wildcards ("model.version.*"); empty: every event
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(String(1024), default="")
    # sealed under the master key, the subscription's id as context (re-sealed on rotation)
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    # deleted subscriptions stay, so their delivery history does
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class WebhookDelivery(IdMixin, Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_subscription_id", "subscription_id", "created_at"),
    )

    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    event_seq: Mapped[int] = mapped_column(
        SeqType, ForeignKey("events.seq", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(String(16), default="Pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class WebhookAttempt(IdMixin, Base):
    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery_id", "delivery_id", "number"),)

    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str] = mapped_column(Text, default="")
    # when the next attempt is due; None when this one ended the delivery
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    address: Mapped[str] = mapped_column(String(64), default="")


class WebhookAllowEntry(Base):
    """A host name or an address range an admin opened for webhooks (platform-wide)."""

    __tablename__ = "webhook_allowlist"

    entry: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
