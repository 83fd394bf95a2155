"""Migration 0004 moves history logged as rows (before 0003) into blocks, losing nothing."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text

from shipyard.db.migrate import alembic_config
from shipyard.tracking import columnar

ROWS = [  # step, timestamp, value, is_nan -- in arrival order
    (2, 10, 0.5, False),
    (0, 11, 0.0, True),
    (1, 12, 1.5, False),
    (1, 9, -2.0, False),
]
SETUP = [
    "INSERT INTO teams (id, name, description, required_tags, quotas, tags, created_at,"
    " updated_at) VALUES ('t', 't', '', '[]', '{}', '{}', '2026-01-01', '2026-01-01')",
    "INSERT INTO projects (id, team_id, name, description, tags, created_at, updated_at)"
    " VALUES ('p', 't', 'p', '', '{}', '2026-01-01', '2026-01-01')",
    "INSERT INTO experiments (id, project_id, name, description, lifecycle_stage, tags,"
    " created_by, created_at, updated_at)"
    " VALUES ('e', 'p', 'e', '', 'active', '{}', 'x', '2026-01-01', '2026-01-01')",
    "INSERT INTO runs (id, project_id, experiment_id, name, status, start_time, user_id,"
    " source_name, lifecycle_stage, artifact_root)"
    " VALUES ('r', 'p', 'e', 'r', 'RUNNING', 1, 'x', '', 'active', '')",
    "INSERT INTO metric_series (id, run_id, key, latest_value, latest_is_nan, latest_step,"
    " latest_timestamp, point_count) VALUES (1, 'r', 'loss', 0.5, 0, 2, 10, 4)",
]


def test_rows_become_one_block_in_history_order(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")

    def upgrade(revision: str) -> None:
        with engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)

    upgrade("0002")
    with engine.begin() as conn:
        for statement in SETUP:
            conn.execute(text(statement))
        for step, ts, value, nan in ROWS:
            conn.execute(
                text(
                    "INSERT INTO metric_points (series_id, step, timestamp, value, is_nan)"
                    " VALUES (1, :s, :t, :v, :n)"
                ),
                {"s": step, "t": ts, "v": value, "n": nan},
            )
    upgrade("head")
    with engine.begin() as conn:
        blocks = conn.execute(
            text('SELECT steps, timestamps, "values" FROM metric_blocks WHERE series_id = 1')
        ).all()
        tables = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
        names = {row[0] for row in tables}
    history = columnar.columns(columnar.unpack([tuple(bytes(c) for c in b) for b in blocks]))
    assert history["steps"] == [0, 1, 1, 2]
    assert history["timestamps"] == [11, 9, 12, 10]
    assert history["values"] == ["NaN", -2.0, 1.5, 0.5]
    assert "metric_points" not in names and len(blocks) == 1
