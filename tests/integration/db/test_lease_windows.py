"""Controllers read a bounded window of rows to claim. Rows held by a live owner must not fill
that window and starve newer work: with more running jobs (endpoints, executions, queued
invocations) than the window holds, the newest unheld row is still among the candidates.
Real SQLite and PostgreSQL, the repositories' own queries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from shipyard.db.engine import Database
from shipyard.db.migrate import upgrade
from shipyard.hosting.async_repository import async_repository
from shipyard.hosting.models import AsyncInvocation, Endpoint
from shipyard.hosting.repository import hosting_repository
from shipyard.jobs.models import Job
from shipyard.jobs.repository import job_repository
from shipyard.kit.leases import new_owner_id
from shipyard.monitoring.models import Execution, Schedule
from shipyard.monitoring.repository import monitoring_repository
from shipyard.security.models import Project, Team

WINDOW = 8
HELD = WINDOW + 4
NOW = datetime.now(UTC)
LIVE_OWNER = new_owner_id()  # this process: alive, so its leases are never stolen


@pytest.fixture
def db(fresh_db_url: str) -> Iterator[Database]:
    database = Database(fresh_db_url)
    upgrade(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def project(db: Database) -> tuple[str, str]:
    with db.transaction() as s:
        team = Team(name="leases")
        s.add(team)
        s.flush()
        found = Project(team_id=team.id, name="p")
        s.add(found)
        s.flush()
        return team.id, found.id


def _insert(db: Database, row: Schedule | Endpoint) -> str:
    with db.transaction() as s:
        s.add(row)
        s.flush()
        return row.id


def _lease(held: bool, **running: object) -> dict[str, object]:
    """The columns of a row a live owner holds (with ``running``'s values), or none."""
    if not held:
        return {}
    return {"lease_owner": LIVE_OWNER, "lease_until": NOW + timedelta(hours=1), **running}


def _age(n: int) -> datetime:
    """Older rows first: the held ones predate the free one."""
    return NOW - timedelta(minutes=100 - n)


def _fill(db: Database, make: Callable[[Session, int, bool], object]) -> str:
    """``HELD`` held rows, then one unheld; the unheld row's id."""
    with db.transaction() as s:
        for n in range(HELD):
            s.add(make(s, n, True))
        free = make(s, HELD, False)
        s.add(free)
        s.flush()
        return str(free.id)  # type: ignore[attr-defined]


def test_a_new_job_is_claimable_behind_running_ones(db: Database, project: tuple[str, str]) -> None:
    team_id, project_id = project

    def job(s: Session, n: int, held: bool) -> Job:
        return Job(
            project_id=project_id,
            team_id=team_id,
            name=f"job-{n}",
            kind="training",
            spec={},
            created_at=_age(n),
            **_lease(held, status="Running"),
        )

    free = _fill(db, job)
    with db.read() as s:
        candidates = job_repository.claimable(s, NOW, WINDOW)
    assert candidates[0] == (free, None)
    assert len(candidates) == WINDOW


def test_a_new_endpoint_is_claimable_behind_driven_ones(
    db: Database, project: tuple[str, str]
) -> None:
    team_id, project_id = project

    def endpoint(s: Session, n: int, held: bool) -> Endpoint:
        return Endpoint(
            project_id=project_id,
            team_id=team_id,
            name=f"endpoint-{n}",
            environment="dev",
            config_name="c",
            created_at=_age(n),
            **_lease(held),
        )

    free = _fill(db, endpoint)
    with db.read() as s:
        candidates = hosting_repository.claimable(s, NOW, WINDOW)
    assert candidates[0] == (free, None, True)


def test_a_pending_execution_is_runnable_behind_running_ones(
    db: Database, project: tuple[str, str]
) -> None:
    team_id, project_id = project
    schedule = Schedule(
        project_id=project_id,
        team_id=team_id,
        name="hourly",
        endpoint_name="e",
        kind="data_quality",
        cron="0 * * * *",
        window_s=3600,
    )
    schedule_id = _insert(db, schedule)

    def execution(s: Session, n: int, held: bool) -> Execution:
        return Execution(
            schedule_id=schedule_id,
            project_id=project_id,
            trigger="manual",
            window_start=NOW,
            window_end=NOW,
            created_at=_age(n),
            **_lease(held, status="Running"),
        )

    free = _fill(db, execution)
    with db.read() as s:
        candidates = monitoring_repository.runnable(s, NOW, WINDOW)
    assert candidates[0] == (free, None)


def test_a_queued_invocation_is_claimable_behind_running_ones(
    db: Database, project: tuple[str, str]
) -> None:
    team_id, project_id = project
    endpoint = Endpoint(
        project_id=project_id, team_id=team_id, name="e", environment="dev", config_name="c"
    )
    endpoint_id = _insert(db, endpoint)

    def invocation(s: Session, n: int, held: bool) -> AsyncInvocation:
        return AsyncInvocation(
            endpoint_id=endpoint_id,
            project_id=project_id,
            endpoint_name="e",
            inference_id=f"i-{n}",
            input_path="in",
            input_version=1,
            output_path="out",
            failure_path="fail",
            expires_at=NOW + timedelta(hours=6),
            created_at=_age(n),
            **_lease(held, status="Running"),
        )

    free = _fill(db, invocation)
    with db.read() as s:
        candidates = async_repository.claimable(s, [endpoint_id], NOW, 1)
    assert candidates[0] == (free, None)
