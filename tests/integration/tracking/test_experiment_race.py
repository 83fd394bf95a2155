"""Two jobs starting at once in a new project both ask for the experiment ``jobs``. The one
that loses the race must take the winner's experiment, not fail: on PostgreSQL a job failed
with "experiment 'jobs' already exists" when the winner committed between the loser's first
lookup and its insert. Real SQLite and PostgreSQL; the interleaving is forced by making the
loser's first lookup miss (as it did when it ran before the winner's commit)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shipyard.db.engine import Database
from shipyard.db.migrate import upgrade
from shipyard.security.models import Project, Team
from shipyard.tracking.models import Experiment
from shipyard.tracking.service import TrackingService


@pytest.fixture
def db(fresh_db_url: str) -> Iterator[Database]:
    database = Database(fresh_db_url)
    upgrade(database.engine)
    yield database
    database.dispose()


def test_the_loser_of_a_create_race_takes_the_winners_experiment(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    with db.transaction() as s:
        team = Team(name="race")
        s.add(team)
        s.flush()
        project = Project(team_id=team.id, name="p")
        s.add(project)
        s.flush()
        project_id = project.id
    winner = TrackingService()
    with db.transaction() as s:
        won = winner.ensure_experiment(s, project_id, "jobs", "job-a").id

    loser = TrackingService()
    monkeypatch.setattr(loser, "_lookup", lambda s, project_id, ref: None)  # ran too early
    with db.transaction() as s:
        taken = loser.ensure_experiment(s, project_id, "jobs", "job-b")
        assert taken.id == won and taken.created_by == "job-a"
    with db.read() as s:
        assert s.query(Experiment).filter_by(project_id=project_id).count() == 1
