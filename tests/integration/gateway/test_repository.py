"""The gateway's SQL on both engines: route versions, traffic upserts, wanted marks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from shipyard.db.engine import Database
from shipyard.db.migrate import upgrade
from shipyard.hosting.gateway_repository import TrafficDelta, gateway_repository
from shipyard.hosting.models import Endpoint, EndpointTraffic
from shipyard.security.models import Project, Team


def _endpoint(db: Database, name: str) -> str:
    with db.transaction() as s:
        team = Team(name=f"team-{name}")
        s.add(team)
        s.flush()
        project = Project(team_id=team.id, name="p")
        s.add(project)
        s.flush()
        row = Endpoint(
            project_id=project.id, team_id=team.id, name=name, environment="dev", config_name="c"
        )
        s.add(row)
        s.flush()
        return row.id


def test_gateway_sql(fresh_db_url: str) -> None:
    db = Database(fresh_db_url)
    try:
        upgrade(db.engine)
        first, second = _endpoint(db, "one"), _endpoint(db, "two")
        with db.read() as s:
            versions = gateway_repository.route_versions(s)
            assert versions == {first: 1, second: 1}
            rows = gateway_repository.route_rows(s, [second])
        assert [(r.id, r.name, r.status, r.routes) for r in rows] == [
            (second, "two", "Creating", None)
        ]

        now = datetime.now(UTC)
        for _ in range(2):
            with db.transaction() as s:
                added = gateway_repository.add_traffic(
                    s,
                    "gw-1",
                    [
                        TrafficDelta(first, "A", 10, 2, 1, 0.5),
                        TrafficDelta("deleted-endpoint", "A", 5, 0, 0, 0.1),
                    ],
                    now,
                )
            assert added == 1  # the delta of a deleted endpoint is skipped, not an error
        with db.transaction() as s:
            gateway_repository.mark_wanted(s, "gw-1", second, "lazy", now)
            gateway_repository.mark_wanted(s, "gw-1", second, "lazy", now + timedelta(seconds=5))
            gateway_repository.mark_wanted(s, "gw-1", "deleted-endpoint", "lazy", now)
        with db.read() as s:
            traffic = {
                (t.endpoint_id, t.variant): t for t in s.scalars(select(EndpointTraffic)).all()
            }
        counted = traffic[(first, "A")]
        assert (counted.invocations, counted.errors_4xx, counted.errors_5xx) == (20, 4, 2)
        assert abs(counted.model_latency_s - 1.0) < 1e-9
        wanted = traffic[(second, "lazy")]
        assert wanted.wanted_at is not None
        assert abs((wanted.wanted_at - now).total_seconds()) < 1  # the first mark is kept
        assert len(traffic) == 2
    finally:
        db.dispose()
