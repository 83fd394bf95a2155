"""All SQL of jobs.

Controllers write a job only while they hold its lease (``lease_owner``): every such update
names the owner in its WHERE clause, so a controller that lost the job (it stalled past its
lease and another adopted it) changes nothing. Users' requests (stop, interrupt) are single
conditional updates too, so they never race a controller's write into a stale-row error.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from shipyard.db.leases import takeable_first
from shipyard.jobs.models import Job
from shipyard.jobs.schemas import TERMINAL

TERMINAL_STATUSES = tuple(sorted(status.value for status in TERMINAL))


def _unheld(now: datetime) -> ColumnElement[bool]:
    return or_(Job.lease_owner.is_(None), Job.lease_until < now)


class JobRepository:
    def by_name(self, s: Session, project_id: str, name: str) -> Job | None:
        return s.scalar(select(Job).where(Job.project_id == project_id, Job.name == name))

    def by_id(self, s: Session, job_id: str) -> Job | None:
        return s.get(Job, job_id)

    def by_run(self, s: Session, project_id: str, run_id: str) -> Job | None:
        """The job whose tracking run this is (lineage: run → job)."""
        query = select(Job).where(Job.project_id == project_id, Job.run_id == run_id).limit(1)
        return s.scalar(query)

    def in_project(
        self,
        s: Session,
        project_id: str,
        limit: int,
        status: str | None = None,
        kind: str | None = None,
    ) -> Sequence[Job]:
        query = select(Job).where(Job.project_id == project_id)
        if status is not None:
            query = query.where(Job.status == status)
        if kind is not None:
            query = query.where(Job.kind == kind)
        query = query.order_by(Job.created_at.desc(), Job.name).limit(limit)
        return s.scalars(query).all()

    def add(self, s: Session, job: Job) -> Job:
        s.add(job)
        s.flush()
        return job

    def claimable(self, s: Session, now: datetime, limit: int) -> Sequence[tuple[str, str | None]]:
        """(id, lease owner) of unfinished jobs: those nobody holds (or whose lease lapsed)
        first, then held ones (the caller checks whether their owner is alive)."""
        query = (
            select(Job.id, Job.lease_owner)
            .where(Job.status.not_in(TERMINAL_STATUSES))
            .order_by(takeable_first(_unheld(now)), Job.created_at)
            .limit(limit)
        )
        return [(row[0], row[1]) for row in s.execute(query)]

    def claim(
        self,
        s: Session,
        job_id: str,
        owner: str,
        until: datetime,
        now: datetime,
        *,
        steal: str | None,
    ) -> bool:
        """Take the lease if it is free, lapsed, or held by ``steal`` (a dead owner)."""
        free = _unheld(now)
        if steal is not None:
            free = or_(free, Job.lease_owner == steal)
        result = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.not_in(TERMINAL_STATUSES), free)
            .values(lease_owner=owner, lease_until=until)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def renew(self, s: Session, owner: str, job_ids: Sequence[str], until: datetime) -> set[str]:
        """Extend the leases still held; the ids of those that were."""
        if not job_ids:
            return set()
        s.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.lease_owner == owner)
            .values(lease_until=until)
            .execution_options(synchronize_session=False)
        )
        held = select(Job.id).where(Job.id.in_(job_ids), Job.lease_owner == owner)
        return set(s.scalars(held))

    def write_held(self, s: Session, job_id: str, owner: str, values: dict[str, Any]) -> bool:
        """Change a job this owner holds; False if it no longer does."""
        result = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == owner)
            .values(row_version=Job.row_version + 1, **values)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def set_request(self, s: Session, job_id: str, request: str) -> bool:
        """Record a user's stop/interrupt on an unfinished job; a stop is never downgraded."""
        query = update(Job).where(Job.id == job_id, Job.status.not_in(TERMINAL_STATUSES))
        if request != "stop":
            query = query.where(or_(Job.request.is_(None), Job.request != "stop"))
        result = s.execute(
            query.values(request=request, row_version=Job.row_version + 1).execution_options(
                synchronize_session=False
            )
        )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def request_of(self, s: Session, job_id: str) -> str | None:
        return s.scalar(select(Job.request).where(Job.id == job_id))


job_repository = JobRepository()
