"""Events and webhooks: emitting (a transactional outbox), listing, subscriptions, the
admin allow-list, and what the dispatcher needs to sign and send.

``emit`` runs inside the caller's transaction: the event and one pending delivery per
matching subscription commit with the state change they describe, or roll back with it.
Once that transaction commits, the dispatchers waiting on ``add_waker`` are told to look.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from shipyard.db.engine import Database
from shipyard.errors import NotFound, ValidationFailed
from shipyard.events import schemas
from shipyard.events.models import Event, WebhookAttempt, WebhookDelivery, WebhookSubscription
from shipyard.events.repository import event_repository as repo
from shipyard.events.signing import encode_body
from shipyard.kit.ids import new_id, utcnow
from shipyard.kit.netguard import (
    AllowList,
    CheckedTarget,
    Resolver,
    UnsafeTarget,
    check_url,
    parse_allow_entry,
    system_resolver,
)
from shipyard.security.keyring import MasterKey, seal_with, unseal_with
from shipyard.security.service import IdentityService

EVENT_TYPE = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)+$")
PING = "webhook.ping"
_WAKE_KEY = "shipyard.events.wake"
MAX_LIST = 1000


def matches(patterns: Sequence[str], event_type: str) -> bool:
    """Empty: every type; ``*``: every type; ``a.b.*``: types under ``a.b.``; else exact."""
    if not patterns:
        return True
    for pattern in patterns:
        if pattern in ("*", event_type):
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def _secret_context(subscription_id: str) -> bytes:
    return f"webhook:{subscription_id}".encode()


@dataclass(frozen=True)
class NewWebhook:
    row: WebhookSubscription
    secret: str


@dataclass(frozen=True)
class DeliveryView:
    delivery: WebhookDelivery
    event: Event
    attempts: list[WebhookAttempt]


class EventService:
    def __init__(
        self,
        *,
        master_key: MasterKey,
        identity: IdentityService,
        resolve: Resolver = system_resolver,
    ) -> None:
        self._master = master_key
        self.identity = identity
        self.resolve = resolve
        self._wakers: list[Callable[[], None]] = []

    def add_waker(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` after each commit that stored deliveries (the dispatcher's)."""
        self._wakers.append(wake)

    # --- emitting ----------------------------------------------------------------------------

    def emit(
        self,
        s: Session,
        *,
        project_id: str,
        type: str,
        subject: str,
        data: dict[str, Any],
        actor: str,
    ) -> Event:
        """Record that ``type`` happened to ``subject`` in the caller's transaction, with a
        pending delivery for each matching webhook of the project.

        It serializes the project's emitters until the transaction ends (so ``?after=``
        pages never skip an event): call it last, after the state change it reports.
        """
        if not EVENT_TYPE.match(type):
            raise ValueError(f"event type {type!r} must be dotted lower-case words")
        event = self._store(s, project_id, type, subject, data, actor)
        targets = [
            sub
            for sub in repo.active_subscriptions(s, project_id)
            if matches(sub.event_types, type)
        ]
        self._enqueue(s, event, targets)
        return event

    def _store(
        self,
        s: Session,
        project_id: str,
        type_: str,
        subject: str,
        data: dict[str, Any],
        actor: str,
    ) -> Event:
        names = self.identity.project_names(s, project_id)
        if names is None:
            raise NotFound(f"project {project_id!r} not found", field="project")
        repo.lock_project(s, project_id)
        event = Event(
            id=new_id(),
            project_id=project_id,
            project=f"{names[0]}/{names[1]}",
            type=type_,
            subject=subject[:512],
            actor=actor[:128],
            data=dict(data),
            created_at=utcnow(),
        )
        repo.add(s, event)
        return event

    def _enqueue(
        self, s: Session, event: Event, targets: Sequence[WebhookSubscription]
    ) -> list[WebhookDelivery]:
        deliveries = [
            WebhookDelivery(
                id=new_id(),
                subscription_id=sub.id,
                event_seq=event.seq,
                state=schemas.DeliveryState.PENDING.value,
                attempts=0,
                next_attempt_at=event.created_at,
                created_at=event.created_at,
            )
            for sub in targets
        ]
        if deliveries:
            s.add_all(deliveries)
            s.flush()
            self._wake_after_commit(s)
        return deliveries

    def _wake_after_commit(self, s: Session) -> None:
        """Wake the dispatchers once this transaction commits; never if it rolls back."""
        if _WAKE_KEY in s.info:
            return
        token = object()
        s.info[_WAKE_KEY] = token

        def committed(session: Session) -> None:
            if session.info.get(_WAKE_KEY) is token:
                del session.info[_WAKE_KEY]
                for wake in self._wakers:
                    wake()

        def rolled_back(session: Session) -> None:
            if session.info.get(_WAKE_KEY) is token:
                del session.info[_WAKE_KEY]

        sa_event.listen(s, "after_commit", committed, once=True)
        sa_event.listen(s, "after_rollback", rolled_back, once=True)

    # --- reading events ----------------------------------------------------------------------

    def events(
        self,
        s: Session,
        project_id: str,
        *,
        type_pattern: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> Sequence[Event]:
        """The project's events, oldest first; ``after`` is the id of the last one seen."""
        after_seq = None
        if after is not None:
            cursor = repo.event(s, project_id, after)
            if cursor is None:
                raise ValidationFailed(f"no event {after!r} in this project", field="after")
            after_seq = cursor.seq
        exact = prefix = None
        if type_pattern and type_pattern != "*":
            if type_pattern.endswith(".*"):
                prefix = type_pattern[:-1]
            else:
                exact = type_pattern
        return repo.events(
            s,
            project_id,
            after_seq=after_seq,
            type_exact=exact,
            type_prefix=prefix,
            limit=min(limit, MAX_LIST),
        )

    @staticmethod
    def payload(event: Event) -> dict[str, Any]:
        """The event as the API shows it and receivers get it."""
        return schemas.EventOut.model_validate(event).model_dump(mode="json")

    def body_of(self, event: Event) -> bytes:
        return encode_body(self.payload(event))

    # --- subscriptions -----------------------------------------------------------------------

    def create_webhook(
        self, db: Database, project_id: str, body: schemas.WebhookCreate, actor: str
    ) -> NewWebhook:
        """Check the URL (resolving it, outside any transaction), then store the
        subscription with a new secret sealed under the master key."""
        with db.read() as s:
            allow = self.allow_list(s)
        self.check_url(body.url, allow)
        secret = secrets.token_urlsafe(32)
        subscription_id = new_id()
        row = WebhookSubscription(
            id=subscription_id,
            project_id=project_id,
            url=body.url,
            event_types=list(dict.fromkeys(body.event_types)),
            description=body.description,
            secret_encrypted=self._master.seal(
                secret.encode(), context=_secret_context(subscription_id)
            ),
            created_by=actor[:128],
        )
        with db.transaction() as s:
            repo.add(s, row)
        return NewWebhook(row=row, secret=secret)

    def check_url(self, url: str, allow: AllowList) -> CheckedTarget:
        """The URL's target, checked against SSRF rules; 422 on ``url`` naming the reason."""
        try:
            return check_url(url, allow=allow, resolve=self.resolve)
        except UnsafeTarget as exc:
            raise ValidationFailed(
                f"the webhook URL is refused: {exc.reason} (webhooks may only target public "
                "addresses unless an admin allow-lists the host)",
                field="url",
                reason=exc.reason,
            ) from exc

    def webhook(self, s: Session, project_id: str, subscription_id: str) -> WebhookSubscription:
        row = repo.subscription(s, project_id, subscription_id)
        if row is None:
            raise NotFound(f"webhook {subscription_id!r} not found", field="id")
        return row

    def webhooks(self, s: Session, project_id: str) -> Sequence[WebhookSubscription]:
        return repo.active_subscriptions(s, project_id)

    def delete_webhook(self, s: Session, project_id: str, subscription_id: str) -> None:
        """Stop delivering to it; its history stays readable in the database."""
        row = self.webhook(s, project_id, subscription_id)
        now = utcnow()
        row.deleted_at = now
        s.flush()
        repo.cancel_pending(s, row.id, now, "the webhook was deleted")

    def deliveries(
        self, s: Session, project_id: str, subscription_id: str, limit: int = 100
    ) -> list[DeliveryView]:
        """The webhook's deliveries, newest first, each with its attempts."""
        row = self.webhook(s, project_id, subscription_id)
        pairs = repo.deliveries(s, row.id, min(limit, MAX_LIST))
        attempts = repo.attempts_of(s, [d.id for d, _ in pairs])
        return [DeliveryView(d, e, attempts[d.id]) for d, e in pairs]

    def ping(
        self, s: Session, project_id: str, subscription_id: str, actor: str
    ) -> tuple[WebhookDelivery, Event]:
        """A ``webhook.ping`` event delivered to this one webhook, whatever its filter."""
        row = self.webhook(s, project_id, subscription_id)
        data = {"webhook": row.id, "message": "a test delivery from Shipyard"}
        event = self._store(s, project_id, PING, f"webhook:{row.id}", data, actor)
        (delivery,) = self._enqueue(s, event, [row])
        return delivery, event

    def secret_of(self, row: WebhookSubscription) -> str:
        return self._master.unseal(row.secret_encrypted, context=_secret_context(row.id)).decode()

    def reseal_webhook_secrets(self, s: Session, old: bytes, new: bytes) -> int:
        """Re-seal every webhook secret under a new master key (part of a rotation)."""
        rows = repo.all_subscriptions(s)
        for row in rows:
            context = _secret_context(row.id)
            row.secret_encrypted = seal_with(
                new, unseal_with(old, row.secret_encrypted, context=context), context=context
            )
        s.flush()
        return len(rows)

    # --- the allow-list ----------------------------------------------------------------------

    def allow_list(self, s: Session) -> AllowList:
        return AllowList(repo.allowlist(s))

    def allow_entries(self, s: Session) -> list[str]:
        return repo.allowlist(s)

    def set_allow_entries(self, s: Session, entries: Sequence[str], actor: str) -> list[str]:
        """Replace the allow-list; entries are stored in canonical form (``127.0.0.1/32``,
        ``hooks.internal``)."""
        canonical: list[str] = []
        for index, entry in enumerate(entries):
            try:
                canonical.append(parse_allow_entry(entry)[1])
            except ValueError as exc:
                raise ValidationFailed(str(exc), field=f"entries.{index}") from exc
        unique = sorted(set(canonical))
        repo.replace_allowlist(s, unique, actor[:128])
        return unique
