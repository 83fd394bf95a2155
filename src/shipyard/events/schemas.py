"""API shapes of events and webhooks.

``EventOut`` is also the body every webhook receives, serialized by ``body_of`` — one
shape for the list API and for receivers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    computed_field,
    field_validator,
)

# an exact event type ("job.completed"), a prefix wildcard ("model.version.*") or "*"
TypePattern = Annotated[
    str,
    StringConstraints(
        pattern=r"^(\*|[a-z0-9_-]+(\.[a-z0-9_-]+)*(\.\*)?)$", min_length=1, max_length=128
    ),
]


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)


class DeliveryState(StrEnum):
    PENDING = "Pending"
    DELIVERED = "Delivered"
    FAILED = "Failed"


class EventOut(Schema):
    id: str
    type: str
    subject: str
    project: str = Field(description="<team>/<project>")
    actor: str
    created_at: datetime
    data: dict[str, Any]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def text(self) -> str:
        """One line for people: what chat tools show. With it every delivery is also a valid
        Slack (and Mattermost, Teams-connector) incoming-webhook message; ``data["text"]``,
        when an emitter writes one, says it better than the generic line."""
        given = self.data.get("text")
        if isinstance(given, str) and given:
            return given
        return f"[{self.project}] {self.type}: {self.subject}"

    @field_validator("created_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        """UTC whatever zone the database session hands back (receivers' bytes must not vary)."""
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class WebhookCreate(Schema):
    url: str = Field(
        max_length=2048,
        description="http(s) URL of the receiver; must resolve to public addresses only "
        "(or be allow-listed by an admin)",
    )
    event_types: list[TypePattern] = Field(
        default_factory=list,
        max_length=50,
        description="exact types or prefix wildcards like 'model.version.*'; empty: all",
    )
    description: str = Field(default="", max_length=1024)


class WebhookOut(Schema):
    id: str
    url: str
    event_types: list[str]
    description: str
    active: bool
    created_by: str
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="the HMAC signing secret; shown only in this response")


class AttemptOut(Schema):
    number: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str
    next_attempt_at: datetime | None


class DeliveryOut(Schema):
    id: str
    event_id: str
    event_type: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str
    created_at: datetime
    finished_at: datetime | None
    history: list[AttemptOut]


class PingOut(Schema):
    delivery_id: str
    event_id: str


class AllowList(Schema):
    entries: list[Annotated[str, StringConstraints(min_length=1, max_length=255)]] = Field(
        max_length=1000,
        description="host names (exact) and IP addresses or CIDR ranges webhooks may target "
        "even though they are not public",
    )
