"""Routes of events and webhooks, and the admin's webhook allow-list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from shipyard.api.deps import PlatformDep, ProjectAccess, platform_access, project_access
from shipyard.events import schemas
from shipyard.events.models import WebhookSubscription
from shipyard.events.service import DeliveryView
from shipyard.security.permissions import Permission
from shipyard.security.principal import Principal

router = APIRouter(prefix="/api/v1/projects/{team}/{project}", tags=["events"])
admin_router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
Readable = Annotated[ProjectAccess, Depends(project_access(Permission.EVENT_READ))]
Manager = Annotated[ProjectAccess, Depends(project_access(Permission.WEBHOOK_MANAGE))]
PlatformAdmin = Annotated[Principal, Depends(platform_access(Permission.PLATFORM_ADMIN))]
HookId = Annotated[str, Path(max_length=32, description="the webhook's id")]


def _hook(row: WebhookSubscription) -> schemas.WebhookOut:
    return schemas.WebhookOut(
        id=row.id,
        url=row.url,
        event_types=list(row.event_types),
        description=row.description,
        active=row.deleted_at is None,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _delivery(view: DeliveryView) -> schemas.DeliveryOut:
    d = view.delivery
    return schemas.DeliveryOut(
        id=d.id,
        event_id=view.event.id,
        event_type=view.event.type,
        state=schemas.DeliveryState(d.state),
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        created_at=d.created_at,
        finished_at=d.finished_at,
        history=[schemas.AttemptOut.model_validate(a) for a in view.attempts],
    )


@router.get("/events")
def list_events(
    access: Readable,
    platform: PlatformDep,
    type_: Annotated[
        schemas.TypePattern | None,
        Query(alias="type", description="an exact type or a prefix wildcard like 'job.*'"),
    ] = None,
    after: Annotated[
        str | None, Query(max_length=32, description="the id of the last event already seen")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[schemas.EventOut]:
    """The project's events, oldest first; page with ``after`` = the last id you saw."""
    with platform.db.read() as s:
        rows = platform.events.events(
            s, access.project.id, type_pattern=type_, after=after, limit=limit
        )
        return [schemas.EventOut.model_validate(row) for row in rows]


@router.post("/webhooks", status_code=status.HTTP_201_CREATED)
def create_webhook(
    body: schemas.WebhookCreate, access: Manager, platform: PlatformDep
) -> schemas.WebhookCreated:
    """Subscribe a URL to the project's events; the signing secret is shown only here."""
    created = platform.events.create_webhook(
        platform.db, access.project.id, body, access.principal.username
    )
    return schemas.WebhookCreated(**_hook(created.row).model_dump(), secret=created.secret)


@router.get("/webhooks")
def list_webhooks(access: Manager, platform: PlatformDep) -> list[schemas.WebhookOut]:
    """The project's webhooks (never their secrets)."""
    with platform.db.read() as s:
        return [_hook(row) for row in platform.events.webhooks(s, access.project.id)]


@router.get("/webhooks/{webhook_id}")
def get_webhook(webhook_id: HookId, access: Manager, platform: PlatformDep) -> schemas.WebhookOut:
    with platform.db.read() as s:
        return _hook(platform.events.webhook(s, access.project.id, webhook_id))


@router.delete("/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(webhook_id: HookId, access: Manager, platform: PlatformDep) -> None:
    """Stop delivering to the webhook; its pending deliveries end Failed."""
    with platform.db.transaction() as s:
        platform.events.delete_webhook(s, access.project.id, webhook_id)


@router.get("/webhooks/{webhook_id}/deliveries")
def list_deliveries(
    webhook_id: HookId,
    access: Manager,
    platform: PlatformDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[schemas.DeliveryOut]:
    """The webhook's deliveries, newest first, with every attempt."""
    with platform.db.read() as s:
        views = platform.events.deliveries(s, access.project.id, webhook_id, limit)
        return [_delivery(view) for view in views]


@router.post("/webhooks/{webhook_id}/ping", status_code=status.HTTP_202_ACCEPTED)
def ping_webhook(webhook_id: HookId, access: Manager, platform: PlatformDep) -> schemas.PingOut:
    """Send a ``webhook.ping`` event to this webhook alone."""
    with platform.db.transaction() as s:
        delivery, event = platform.events.ping(
            s, access.project.id, webhook_id, access.principal.username
        )
        return schemas.PingOut(delivery_id=delivery.id, event_id=event.id)


@admin_router.get("/webhook-allowlist")
def get_allowlist(_: PlatformAdmin, platform: PlatformDep) -> schemas.AllowList:
    """Hosts and address ranges webhooks may target although they are not public."""
    with platform.db.read() as s:
        return schemas.AllowList(entries=platform.events.allow_entries(s))


@admin_router.put("/webhook-allowlist")
def put_allowlist(
    body: schemas.AllowList, principal: PlatformAdmin, platform: PlatformDep
) -> schemas.AllowList:
    """Replace the allow-list (exact host names; IP addresses or CIDR ranges)."""
    with platform.db.transaction() as s:
        entries = platform.events.set_allow_entries(s, body.entries, principal.username)
    return schemas.AllowList(entries=entries)
