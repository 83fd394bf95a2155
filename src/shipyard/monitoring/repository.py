"""All SQL of monitoring.

Two kinds of work are claimed with conditional updates, so any number of API processes can
run the monitoring controller: a due schedule is taken by moving its ``next_run_at`` on (the
process whose update matched creates the execution), and a pending execution by a lease
(a process that dies mid-run leaves a lapsed lease, and the execution runs again).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from shipyard.db.leases import takeable_first
from shipyard.monitoring.models import Baseline, Execution, Schedule

T = TypeVar("T", Baseline, Schedule, Execution)
PENDING, RUNNING, COMPLETED, FAILED = "Pending", "Running", "Completed", "Failed"


def _takeable(now: datetime) -> ColumnElement[bool]:
    """Pending, or running under a lapsed lease."""
    return or_(
        Execution.status == PENDING,
        and_(Execution.status == RUNNING, Execution.lease_until < now),
    )


class MonitoringRepository:
    # --- baselines --------------------------------------------------------------------------

    def next_baseline_version(self, s: Session, project_id: str, name: str) -> int:
        query = select(func.max(Baseline.version)).where(
            Baseline.project_id == project_id, Baseline.name == name
        )
        return int(s.scalar(query) or 0) + 1

    def baseline(
        self, s: Session, project_id: str, name: str, version: int | None
    ) -> Baseline | None:
        query = select(Baseline).where(Baseline.project_id == project_id, Baseline.name == name)
        if version is not None:
            query = query.where(Baseline.version == version)
        return s.scalars(query.order_by(Baseline.version.desc()).limit(1)).first()

    def baselines(self, s: Session, project_id: str) -> Sequence[Baseline]:
        query = select(Baseline).where(Baseline.project_id == project_id)
        return s.scalars(query.order_by(Baseline.name, Baseline.version.desc())).all()

    # --- schedules --------------------------------------------------------------------------

    def schedule(self, s: Session, project_id: str, name: str) -> Schedule | None:
        query = select(Schedule).where(Schedule.project_id == project_id, Schedule.name == name)
        return s.scalars(query).first()

    def schedule_by_id(self, s: Session, schedule_id: str) -> Schedule | None:
        return s.get(Schedule, schedule_id)

    def schedules(
        self, s: Session, project_id: str | None = None, endpoint: str | None = None
    ) -> Sequence[Schedule]:
        query = select(Schedule)
        if project_id is not None:
            query = query.where(Schedule.project_id == project_id)
        if endpoint is not None:
            query = query.where(Schedule.endpoint_name == endpoint)
        return s.scalars(query.order_by(Schedule.name)).all()

    def due(self, s: Session, now: datetime, limit: int = 50) -> list[tuple[str, datetime]]:
        query = (
            select(Schedule.id, Schedule.next_run_at)
            .where(Schedule.enabled.is_(True), Schedule.next_run_at <= now)
            .order_by(Schedule.next_run_at)
            .limit(limit)
        )
        return [(row[0], row[1]) for row in s.execute(query) if row[1] is not None]

    def advance(self, s: Session, schedule_id: str, seen: datetime, following: datetime) -> bool:
        """Move a due schedule on, if nobody else did since ``seen``: whoever did runs it."""
        result = s.execute(
            update(Schedule)
            .where(Schedule.id == schedule_id, Schedule.next_run_at == seen)
            .values(next_run_at=following)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    # --- executions -------------------------------------------------------------------------

    def add(self, s: Session, row: T) -> T:
        s.add(row)
        s.flush()
        return row

    def execution(self, s: Session, project_id: str, execution_id: str) -> Execution | None:
        row = s.get(Execution, execution_id)
        return row if row is not None and row.project_id == project_id else None

    def executions(
        self, s: Session, schedule_ids: Sequence[str], limit: int
    ) -> Sequence[Execution]:
        if not schedule_ids:
            return []
        query = select(Execution).where(Execution.schedule_id.in_(list(schedule_ids)))
        return s.scalars(query.order_by(Execution.created_at.desc()).limit(limit)).all()

    def runnable(self, s: Session, now: datetime, limit: int = 10) -> list[tuple[str, str | None]]:
        """(id, lease owner) of pending and running executions, those ``claim`` can take
        first: it takes a running one only if its lease lapsed or its owner is dead."""
        query = (
            select(Execution.id, Execution.lease_owner)
            .where(Execution.status.in_((PENDING, RUNNING)))
            .order_by(takeable_first(_takeable(now)), Execution.created_at)
            .limit(limit)
        )
        return [(row[0], row[1]) for row in s.execute(query)]

    def claim(
        self,
        s: Session,
        execution_id: str,
        owner: str,
        now: datetime,
        until: datetime,
        steal: str | None,
    ) -> Execution | None:
        free = _takeable(now)
        if steal is not None:
            free = or_(free, and_(Execution.status == RUNNING, Execution.lease_owner == steal))
        result = s.execute(
            update(Execution)
            .where(Execution.id == execution_id, free)
            .values(status=RUNNING, lease_owner=owner, lease_until=until, started_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return s.get(Execution, execution_id, populate_existing=True)

    def finish(self, s: Session, execution_id: str, owner: str, **values: Any) -> bool:
        """Record the outcome while the lease is still ours (else another run has it)."""
        result = s.execute(
            update(Execution)
            .where(Execution.id == execution_id, Execution.lease_owner == owner)
            .values(lease_owner=None, lease_until=None, **values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def awaiting_retrain(self, s: Session, limit: int = 20) -> Sequence[Execution]:
        """Executions whose retraining job has not yet become a model version."""
        query = select(Execution).where(
            Execution.retrain_job.is_not(None),
            Execution.retrain_version.is_(None),
            Execution.status == COMPLETED,
            Execution.error == "",
        )
        return s.scalars(query.order_by(Execution.created_at).limit(limit)).all()

    def latest_completed(self, s: Session) -> Sequence[tuple[Schedule, Execution]]:
        """Each schedule's newest completed execution (what Prometheus shows)."""
        newest = (
            select(Execution.schedule_id, func.max(Execution.finished_at).label("at"))
            .where(Execution.status == COMPLETED)
            .group_by(Execution.schedule_id)
            .subquery()
        )
        query = (
            select(Schedule, Execution)
            .join(Execution, Execution.schedule_id == Schedule.id)
            .join(
                newest,
                and_(
                    newest.c.schedule_id == Execution.schedule_id,
                    newest.c.at == Execution.finished_at,
                ),
            )
        )
        return [(row[0], row[1]) for row in s.execute(query)]


monitoring_repository = MonitoringRepository()
