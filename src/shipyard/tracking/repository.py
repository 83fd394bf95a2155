"""All SQL of tracking.

Metric writes and history reads go through SQLAlchemy Core with executemany, not the ORM:
they are the hot path (tens of thousands of rows per call) and per-object bookkeeping would
cost more than the database does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shipyard.tracking.models import (
    Dataset,
    DatasetVersion,
    Experiment,
    MetricBlock,
    MetricSeries,
    Run,
    RunInput,
    RunParam,
    RunTag,
)

# SQLite allows 32,766 bound variables per statement; stay far below on every engine.
IN_CHUNK = 900


def chunks(items: Sequence[str], size: int = IN_CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class SeriesHead:
    """The latest point of a series as stored; the batch writer decides what replaces it."""

    id: int
    key: str
    step: int
    timestamp: int
    point_count: int


class TrackingRepository:
    # experiments ------------------------------------------------------------------------
    def experiment_by_name(self, s: Session, project_id: str, name: str) -> Experiment | None:
        return s.scalar(
            select(Experiment).where(Experiment.project_id == project_id, Experiment.name == name)
        )

    def experiment_by_id(self, s: Session, project_id: str, exp_id: str) -> Experiment | None:
        return s.scalar(
            select(Experiment).where(Experiment.project_id == project_id, Experiment.id == exp_id)
        )

    def experiments(self, s: Session, project_id: str, stage: str | None) -> Sequence[Experiment]:
        query = select(Experiment).where(Experiment.project_id == project_id)
        if stage:
            query = query.where(Experiment.lifecycle_stage == stage)
        return s.scalars(query.order_by(Experiment.created_at, Experiment.name)).all()

    def experiment_names(self, s: Session, ids: Iterable[str]) -> dict[str, str]:
        wanted = list(set(ids))
        rows = s.execute(select(Experiment.id, Experiment.name).where(Experiment.id.in_(wanted)))
        return {row.id: row.name for row in rows}

    # runs -------------------------------------------------------------------------------
    def run(self, s: Session, project_id: str, run_id: str, *, lock: bool = False) -> Run | None:
        query = select(Run).where(Run.project_id == project_id, Run.id == run_id)
        return s.scalar(query.with_for_update() if lock else query)

    def run_state(self, s: Session, project_id: str, run_id: str) -> tuple[str, str] | None:
        """(status, lifecycle stage) only: the check before every write to a run."""
        row = s.execute(
            select(Run.status, Run.lifecycle_stage).where(
                Run.project_id == project_id, Run.id == run_id
            )
        ).first()
        return (row.status, row.lifecycle_stage) if row else None

    def runs_by_ids(self, s: Session, run_ids: Sequence[str]) -> dict[str, Run]:
        found: dict[str, Run] = {}
        for part in chunks(run_ids):
            found.update((r.id, r) for r in s.scalars(select(Run).where(Run.id.in_(part))))
        return found

    def search_ids(self, s: Session, query: Select[Any]) -> list[str]:
        return list(s.scalars(query))

    def params_of(self, s: Session, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        return self._key_values(s, RunParam, run_ids)

    def tags_of(self, s: Session, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        return self._key_values(s, RunTag, run_ids)

    def _key_values(
        self, s: Session, table: type[RunParam] | type[RunTag], run_ids: Sequence[str]
    ) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {run_id: {} for run_id in run_ids}
        for part in chunks(run_ids):
            query = select(table.run_id, table.key, table.value).where(table.run_id.in_(part))
            for run_id, key, value in s.execute(query):
                out[run_id][key] = value
        return out

    def latest_metrics_of(
        self, s: Session, run_ids: Sequence[str]
    ) -> dict[str, dict[str, tuple[float, bool, int, int]]]:
        out: dict[str, dict[str, tuple[float, bool, int, int]]] = {r: {} for r in run_ids}
        cols = (
            MetricSeries.run_id,
            MetricSeries.key,
            MetricSeries.latest_value,
            MetricSeries.latest_is_nan,
            MetricSeries.latest_step,
            MetricSeries.latest_timestamp,
        )
        for part in chunks(run_ids):
            for run_id, key, *latest in s.execute(select(*cols).where(cols[0].in_(part))):
                out[run_id][key] = tuple(latest)  # type: ignore[assignment]
        return out

    def inputs_of(self, s: Session, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {r: [] for r in run_ids}
        for part in chunks(run_ids):
            query = (
                select(
                    RunInput.run_id,
                    Dataset.name,
                    DatasetVersion.version,
                    DatasetVersion.digest,
                    RunInput.context,
                )
                .join(DatasetVersion, DatasetVersion.id == RunInput.dataset_version_id)
                .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                .where(RunInput.run_id.in_(part))
                .order_by(Dataset.name, DatasetVersion.version)
            )
            for run_id, name, version, digest, context in s.execute(query):
                out[run_id].append(
                    {"dataset": name, "version": version, "digest": digest, "context": context}
                )
        return out

    def param_values(self, s: Session, run_id: str, keys: Sequence[str]) -> dict[str, str]:
        query = select(RunParam.key, RunParam.value).where(
            RunParam.run_id == run_id, RunParam.key.in_(list(keys))
        )
        return dict(s.execute(query).tuples().all())

    def insert_params(self, s: Session, run_id: str, params: dict[str, str]) -> None:
        rows = [{"run_id": run_id, "key": k, "value": v} for k, v in params.items()]
        if rows:
            s.execute(insert(RunParam), rows)

    def upsert_tags(self, s: Session, run_id: str, tags: dict[str, str]) -> None:
        if not tags:
            return
        s.execute(delete(RunTag).where(RunTag.run_id == run_id, RunTag.key.in_(list(tags))))
        s.execute(
            insert(RunTag), [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()]
        )

    def delete_tag(self, s: Session, run_id: str, key: str) -> bool:
        result = s.execute(delete(RunTag).where(RunTag.run_id == run_id, RunTag.key == key))
        return bool(getattr(result, "rowcount", 0))

    # metrics ----------------------------------------------------------------------------
    def lock_series(self, s: Session, run_id: str, keys: Sequence[str]) -> dict[str, SeriesHead]:
        """The run's existing series for ``keys``, row-locked on PostgreSQL so concurrent
        batches to one run update the latest values one after the other."""
        query = (
            select(
                MetricSeries.id,
                MetricSeries.key,
                MetricSeries.latest_step,
                MetricSeries.latest_timestamp,
                MetricSeries.point_count,
            )
            .where(MetricSeries.run_id == run_id, MetricSeries.key.in_(list(keys)))
            .with_for_update()
        )
        return {row.key: SeriesHead(*row) for row in s.execute(query)}

    def create_series(self, s: Session, rows: list[dict[str, Any]]) -> None:
        """Insert new series; a concurrent writer may have created one first, which is fine."""
        dialect = s.get_bind().dialect.name
        if dialect == "postgresql":
            s.execute(postgresql.insert(MetricSeries).on_conflict_do_nothing(), rows)
        elif dialect == "sqlite":
            s.execute(sqlite.insert(MetricSeries).on_conflict_do_nothing(), rows)
        else:
            s.execute(insert(MetricSeries), rows)

    def insert_blocks(self, s: Session, rows: list[dict[str, Any]]) -> None:
        s.execute(insert(MetricBlock), rows)

    def blocks(self, s: Session, series_id: int) -> list[tuple[bytes, bytes, bytes]]:
        query = (
            select(MetricBlock.steps, MetricBlock.timestamps, MetricBlock.values)
            .where(MetricBlock.series_id == series_id)
            .order_by(MetricBlock.id)
        )
        return [(bytes(a), bytes(b), bytes(c)) for a, b, c in s.execute(query)]

    def tail_blocks(self, s: Session, series_id: int, limit: int) -> list[tuple[int, int]]:
        """(id, count) of the newest blocks of a series, newest first (index only)."""
        query = (
            select(MetricBlock.id, MetricBlock.count)
            .where(MetricBlock.series_id == series_id)
            .order_by(MetricBlock.id.desc())
            .limit(limit)
        )
        return [(int(i), int(n)) for i, n in s.execute(query)]

    def blocks_by_id(self, s: Session, ids: Sequence[int]) -> list[tuple[bytes, bytes, bytes]]:
        query = (
            select(MetricBlock.steps, MetricBlock.timestamps, MetricBlock.values)
            .where(MetricBlock.id.in_(list(ids)))
            .order_by(MetricBlock.id)
        )
        return [(bytes(a), bytes(b), bytes(c)) for a, b, c in s.execute(query)]

    def delete_blocks(self, s: Session, ids: Sequence[int]) -> None:
        s.execute(delete(MetricBlock).where(MetricBlock.id.in_(list(ids))))

    def update_series(self, s: Session, rows: list[dict[str, Any]]) -> None:
        """Move each series' latest point and add to its point count (executemany)."""
        table: Any = MetricSeries.__table__
        statement = (
            update(table)
            .where(table.c.id == bindparam("sid"))
            .values(
                latest_value=bindparam("v"),
                latest_is_nan=bindparam("nan"),
                latest_step=bindparam("st"),
                latest_timestamp=bindparam("ts"),
                point_count=table.c.point_count + bindparam("n"),
            )
        )
        s.connection().execute(statement, rows)

    def bump_point_counts(self, s: Session, rows: list[dict[str, Any]]) -> None:
        table: Any = MetricSeries.__table__
        statement = (
            update(table)
            .where(table.c.id == bindparam("sid"))
            .values(point_count=table.c.point_count + bindparam("n"))
        )
        s.connection().execute(statement, rows)

    def series(self, s: Session, run_id: str, key: str) -> MetricSeries | None:
        return s.scalar(
            select(MetricSeries).where(MetricSeries.run_id == run_id, MetricSeries.key == key)
        )

    def metric_keys(self, s: Session, run_id: str) -> list[str]:
        return list(
            s.scalars(
                select(MetricSeries.key)
                .where(MetricSeries.run_id == run_id)
                .order_by(MetricSeries.key)
            )
        )

    # datasets ---------------------------------------------------------------------------
    def dataset(self, s: Session, project_id: str, name: str) -> Dataset | None:
        return s.scalar(
            select(Dataset).where(Dataset.project_id == project_id, Dataset.name == name)
        )

    def datasets(self, s: Session, project_id: str) -> Sequence[Dataset]:
        return s.scalars(
            select(Dataset).where(Dataset.project_id == project_id).order_by(Dataset.name)
        ).all()

    def dataset_versions(self, s: Session, dataset_id: str) -> Sequence[DatasetVersion]:
        return s.scalars(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset_id)
            .order_by(DatasetVersion.version)
        ).all()

    def dataset_version(self, s: Session, dataset_id: str, version: int) -> DatasetVersion | None:
        return s.scalar(
            select(DatasetVersion).where(
                DatasetVersion.dataset_id == dataset_id, DatasetVersion.version == version
            )
        )

    def latest_version_numbers(self, s: Session, dataset_ids: Sequence[str]) -> dict[str, int]:
        query = (
            select(DatasetVersion.dataset_id, func.max(DatasetVersion.version))
            .where(DatasetVersion.dataset_id.in_(list(dataset_ids)))
            .group_by(DatasetVersion.dataset_id)
        )
        return dict(s.execute(query).tuples().all())

    def next_dataset_version(self, s: Session, dataset_id: str) -> int:
        top = s.scalar(
            select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == dataset_id)
        )
        return int(top or 0) + 1

    def lock_dataset(self, s: Session, dataset_id: str) -> None:
        s.execute(select(Dataset.id).where(Dataset.id == dataset_id).with_for_update())

    def record_input(self, s: Session, run_id: str, version_id: str, context: str) -> None:
        exists = s.get(RunInput, (run_id, version_id))
        if exists is None:
            s.add(RunInput(run_id=run_id, dataset_version_id=version_id, context=context))
            s.flush()

    def runs_reading(self, s: Session, version_id: str) -> list[str]:
        query = (
            select(RunInput.run_id)
            .join(Run, Run.id == RunInput.run_id)
            .where(RunInput.dataset_version_id == version_id)
            .order_by(Run.start_time)
        )
        return list(s.scalars(query))


tracking_repository = TrackingRepository()
