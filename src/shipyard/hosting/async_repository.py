"""All SQL of asynchronous inference: the durable queue behind ``async-invocations``.

Gateways claim queued rows with a lease, so two gateways never run the same request at the
same time and a gateway that dies mid-request loses nothing: its claims lapse (or, on the
same machine, are taken at once when its pid is gone) and another claim runs them again.
Every write after the claim is conditional on still holding it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from shipyard.db.leases import takeable_first
from shipyard.hosting.models import AsyncInvocation

QUEUED, RUNNING, COMPLETED, FAILED = "Queued", "Running", "Completed", "Failed"


def _takeable(now: datetime) -> ColumnElement[bool]:
    """Queued, or running under a lapsed lease."""
    return or_(
        AsyncInvocation.status == QUEUED,
        and_(AsyncInvocation.status == RUNNING, AsyncInvocation.lease_until < now),
    )


class AsyncRepository:
    def add(self, s: Session, row: AsyncInvocation) -> AsyncInvocation:
        s.add(row)
        s.flush()
        return row

    def claimable(
        self, s: Session, endpoint_ids: Sequence[str], now: datetime, limit: int
    ) -> list[tuple[str, str | None]]:
        """(id, lease owner) of the oldest requests that are queued and due, or running
        under a lapsed lease, for the endpoints this gateway serves."""
        if not endpoint_ids or limit <= 0:
            return []
        due = and_(
            AsyncInvocation.status == QUEUED,
            or_(AsyncInvocation.not_before.is_(None), AsyncInvocation.not_before <= now),
        )
        query = (
            select(AsyncInvocation.id, AsyncInvocation.lease_owner)
            .where(
                AsyncInvocation.endpoint_id.in_(list(endpoint_ids)),
                or_(due, AsyncInvocation.status == RUNNING),
            )
            .order_by(takeable_first(_takeable(now)), AsyncInvocation.created_at)
            .limit(limit * 4)
        )
        return [(row[0], row[1]) for row in s.execute(query)]

    def claim(
        self, s: Session, row_id: str, owner: str, now: datetime, until: datetime, steal: str | None
    ) -> AsyncInvocation | None:
        """Take a queued request, a lapsed claim, or a claim of ``steal`` (a dead owner)."""
        free = _takeable(now)
        if steal is not None:
            free = or_(
                free, and_(AsyncInvocation.status == RUNNING, AsyncInvocation.lease_owner == steal)
            )
        result = s.execute(
            update(AsyncInvocation)
            .where(AsyncInvocation.id == row_id, free)
            .values(
                status=RUNNING,
                lease_owner=owner,
                lease_until=until,
                attempts=AsyncInvocation.attempts + 1,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return s.get(AsyncInvocation, row_id, populate_existing=True)

    def finish(
        self, s: Session, row_id: str, owner: str, now: datetime, **values: Any
    ) -> AsyncInvocation | None:
        """Record the outcome if the claim is still ours; the row, or None if it was lost."""
        result = s.execute(
            update(AsyncInvocation)
            .where(AsyncInvocation.id == row_id, AsyncInvocation.lease_owner == owner)
            .values(lease_owner=None, lease_until=None, updated_at=now, **values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return s.get(AsyncInvocation, row_id, populate_existing=True)

    def release(self, s: Session, owner: str, now: datetime) -> int:
        """Hand back what ``owner`` claimed (a clean stop): queued again, at once."""
        result = s.execute(
            update(AsyncInvocation)
            .where(AsyncInvocation.lease_owner == owner, AsyncInvocation.status == RUNNING)
            .values(status=QUEUED, lease_owner=None, lease_until=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def expired(self, s: Session, endpoint_ids: Sequence[str], now: datetime) -> list[str]:
        """Queued requests past their time to live (they fail without running)."""
        if not endpoint_ids:
            return []
        query = select(AsyncInvocation.id).where(
            AsyncInvocation.endpoint_id.in_(list(endpoint_ids)),
            AsyncInvocation.status == QUEUED,
            AsyncInvocation.expires_at < now,
        )
        return list(s.scalars(query.limit(100)))

    def expire(self, s: Session, row_id: str, now: datetime, error: str) -> AsyncInvocation | None:
        result = s.execute(
            update(AsyncInvocation)
            .where(AsyncInvocation.id == row_id, AsyncInvocation.status == QUEUED)
            .values(status=FAILED, error=error, finished_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return s.get(AsyncInvocation, row_id, populate_existing=True)

    def find(self, s: Session, endpoint_id: str, inference_id: str) -> AsyncInvocation | None:
        """The newest request of the endpoint with this inference id (ids given by callers
        need not be unique, as in SageMaker)."""
        query = (
            select(AsyncInvocation)
            .where(
                AsyncInvocation.endpoint_id == endpoint_id,
                AsyncInvocation.inference_id == inference_id,
            )
            .order_by(AsyncInvocation.created_at.desc())
            .limit(1)
        )
        return s.scalars(query).first()

    def listing(
        self, s: Session, endpoint_id: str, status: str | None, limit: int
    ) -> Sequence[AsyncInvocation]:
        query = select(AsyncInvocation).where(AsyncInvocation.endpoint_id == endpoint_id)
        if status is not None:
            query = query.where(AsyncInvocation.status == status)
        return s.scalars(query.order_by(AsyncInvocation.created_at.desc()).limit(limit)).all()

    def backlog(self, s: Session, endpoint_id: str) -> int:
        """Requests not yet done: what an async endpoint has waiting."""
        query = select(func.count()).where(
            AsyncInvocation.endpoint_id == endpoint_id,
            AsyncInvocation.status.in_((QUEUED, RUNNING)),
        )
        return int(s.scalar(query) or 0)


async_repository = AsyncRepository()
