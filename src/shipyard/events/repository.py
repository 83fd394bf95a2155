"""All SQL of events and webhooks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from shipyard.events.models import (
    Event,
    WebhookAllowEntry,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)

PENDING = "Pending"
_EVENTS_LOCK_CLASS = 0x5E7E  # the advisory-lock namespace of event emitters


class EventRepository:
    # --- events ----------------------------------------------------------------------------

    def lock_project(self, s: Session, project_id: str) -> None:
        """Serialize this project's emitters until the caller's transaction ends, so their
        events commit in ``seq`` order (SQLite: its one writer does that already)."""
        if s.get_bind().dialect.name == "postgresql":
            s.execute(
                text("SELECT pg_advisory_xact_lock(:cls, hashtext(:project))"),
                {"cls": _EVENTS_LOCK_CLASS, "project": project_id},
            )

    def add(
        self, s: Session, row: Event | WebhookSubscription | WebhookDelivery | WebhookAttempt
    ) -> None:
        s.add(row)
        s.flush()

    def event(self, s: Session, project_id: str, event_id: str) -> Event | None:
        return s.scalar(select(Event).where(Event.project_id == project_id, Event.id == event_id))

    def events(
        self,
        s: Session,
        project_id: str,
        *,
        after_seq: int | None,
        type_exact: str | None,
        type_prefix: str | None,
        limit: int,
    ) -> Sequence[Event]:
        query = select(Event).where(Event.project_id == project_id)
        if after_seq is not None:
            query = query.where(Event.seq > after_seq)
        if type_exact is not None:
            query = query.where(Event.type == type_exact)
        if type_prefix is not None:
            query = query.where(Event.type.startswith(type_prefix, autoescape=True))
        return s.scalars(query.order_by(Event.seq).limit(limit)).all()

    # --- subscriptions ---------------------------------------------------------------------

    def active_subscriptions(self, s: Session, project_id: str) -> Sequence[WebhookSubscription]:
        query = select(WebhookSubscription).where(
            WebhookSubscription.project_id == project_id,
            WebhookSubscription.deleted_at.is_(None),
        )
        return s.scalars(query.order_by(WebhookSubscription.created_at)).all()

    def subscription(
        self, s: Session, project_id: str, subscription_id: str
    ) -> WebhookSubscription | None:
        return s.scalar(
            select(WebhookSubscription).where(
                WebhookSubscription.project_id == project_id,
                WebhookSubscription.id == subscription_id,
                WebhookSubscription.deleted_at.is_(None),
            )
        )

    def all_subscriptions(self, s: Session) -> Sequence[WebhookSubscription]:
        return s.scalars(select(WebhookSubscription)).all()

    def cancel_pending(self, s: Session, subscription_id: str, at: datetime, why: str) -> int:
        """End the subscription's unfinished deliveries (it was deleted)."""
        result = s.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.subscription_id == subscription_id,
                WebhookDelivery.state == PENDING,
            )
            .values(
                state="Failed",
                last_error=why,
                next_attempt_at=None,
                finished_at=at,
                lease_owner=None,
                lease_until=None,
            )
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    # --- deliveries, as the API shows them ---------------------------------------------------

    def deliveries(
        self, s: Session, subscription_id: str, limit: int
    ) -> Sequence[tuple[WebhookDelivery, Event]]:
        query = (
            select(WebhookDelivery, Event)
            .join(Event, Event.seq == WebhookDelivery.event_seq)
            .where(WebhookDelivery.subscription_id == subscription_id)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
            .limit(limit)
        )
        return [(row[0], row[1]) for row in s.execute(query)]

    def attempts_of(
        self, s: Session, delivery_ids: Sequence[str]
    ) -> dict[str, list[WebhookAttempt]]:
        found: dict[str, list[WebhookAttempt]] = {i: [] for i in delivery_ids}
        if not delivery_ids:
            return found
        query = (
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(delivery_ids))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.number)
        )
        for attempt in s.scalars(query):
            found[attempt.delivery_id].append(attempt)
        return found

    # --- the dispatcher ----------------------------------------------------------------------

    def _claimable(self, now: datetime) -> Any:
        return (
            WebhookDelivery.state == PENDING,
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.lease_owner.is_(None), WebhookDelivery.lease_until < now),
        )

    def due(self, s: Session, now: datetime, limit: int) -> Sequence[str]:
        query = (
            select(WebhookDelivery.id)
            .where(*self._claimable(now))
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
        return s.scalars(query).all()

    def claim(
        self, s: Session, delivery_id: str, owner: str, until: datetime, now: datetime
    ) -> bool:
        """Take the delivery if it is still due and nobody holds it: of two dispatchers
        racing for it, exactly one update matches."""
        result = s.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, *self._claimable(now))
            .values(lease_owner=owner, lease_until=until)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def next_due(self, s: Session) -> datetime | None:
        """When the earliest unheld pending delivery is due."""
        query = select(func.min(WebhookDelivery.next_attempt_at)).where(
            WebhookDelivery.state == PENDING, WebhookDelivery.lease_owner.is_(None)
        )
        return s.scalar(query)

    def bundle(
        self, s: Session, delivery_id: str
    ) -> tuple[WebhookDelivery, WebhookSubscription, Event] | None:
        query = (
            select(WebhookDelivery, WebhookSubscription, Event)
            .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
            .join(Event, Event.seq == WebhookDelivery.event_seq)
            .where(WebhookDelivery.id == delivery_id)
        )
        row = s.execute(query).first()
        return None if row is None else (row[0], row[1], row[2])

    def write_held(self, s: Session, delivery_id: str, owner: str, values: dict[str, Any]) -> bool:
        """Change a pending delivery this owner holds; False if it no longer does."""
        result = s.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.lease_owner == owner,
                WebhookDelivery.state == PENDING,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def release(self, s: Session, owner: str, delivery_ids: Sequence[str]) -> None:
        if not delivery_ids:
            return
        s.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(delivery_ids), WebhookDelivery.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )

    # --- the allow-list ----------------------------------------------------------------------

    def allowlist(self, s: Session) -> list[str]:
        query = select(WebhookAllowEntry.entry).order_by(WebhookAllowEntry.entry)
        return list(s.scalars(query))

    def replace_allowlist(self, s: Session, entries: Sequence[str], actor: str) -> None:
        s.execute(delete(WebhookAllowEntry))
        s.add_all(WebhookAllowEntry(entry=entry, created_by=actor) for entry in entries)
        s.flush()


event_repository = EventRepository()
