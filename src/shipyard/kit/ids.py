"""Identifiers and timestamps shared by every domain."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime


def new_id() -> str:
    """A random UUID as 32 hex chars: sortable enough, safe in paths and URLs."""
    return uuid.uuid4().hex


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were stored as UTC, so say so."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
