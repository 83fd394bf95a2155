"""Tracking logic: experiments, runs, batched metric writes, search, history, lineage.

The batch is the unit of work: a client's buffered params, tags and metric points land in
one transaction (all or nothing), and a single ``log_metric`` is just a batch of one.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from shipyard.kit.gcpause import paused_gc
from shipyard.kit.ids import new_id
from shipyard.tracking import columnar, schemas, search
from shipyard.tracking.filters import FilterSyntaxError, parse_filter, parse_order_by
from shipyard.tracking.models import Experiment, MetricSeries, Run
from shipyard.tracking.repository import SeriesHead
from shipyard.tracking.repository import tracking_repository as repo

MAX_BATCH_ITEMS = 10_000
SMALL_BLOCK = 512  # points; smaller history blocks are merged, MERGE_RUN at a time
MERGE_RUN = 8
DEFAULT_EXPERIMENT = "Default"
STAGES = {"active": ("active",), "deleted": ("deleted",), "all": ("active", "deleted")}


def now_ms() -> int:
    return int(time.time() * 1000)


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode()


def decode_token(token: str | None, field: str = "page_token") -> int:
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token.encode()).decode()
        if raw.startswith("o") and raw[1:].isdigit():
            return int(raw[1:])
    except (ValueError, UnicodeDecodeError):
        pass
    raise BadRequest("the page token is not valid; pass back one this server returned", field=field)


def run_view(run: Run, experiment: str, extras: dict[str, Any]) -> schemas.RunOut:
    """Built without validation (``model_construct``): every field comes from the database
    already typed, and validating 235 runs' worth of dicts was half of a search's time."""
    return schemas.RunOut.model_construct(
        id=run.id,
        experiment_id=run.experiment_id,
        experiment=experiment,
        name=run.name,
        status=schemas.RunStatus(run.status),
        start_time=run.start_time,
        end_time=run.end_time,
        user=run.user_id,
        parent_run_id=run.parent_run_id,
        source=schemas.Source.model_construct(
            name=run.source_name, git_commit=run.git_commit, git_dirty=run.git_dirty
        ),
        artifact_uri=run.artifact_root,
        lifecycle_stage=run.lifecycle_stage,
        **extras,
    )


class TrackingService:
    # experiments ------------------------------------------------------------------------
    def create_experiment(
        self, s: Session, project_id: str, body: schemas.ExperimentCreate, actor: str
    ) -> Experiment:
        if repo.experiment_by_name(s, project_id, body.name) is not None:
            raise Conflict(f"experiment {body.name!r} already exists", field="name")
        row = Experiment(
            project_id=project_id,
            name=body.name,
            description=body.description,
            tags=dict(body.tags),
            created_by=actor,
        )
        s.add(row)
        s.flush()
        return row

    @staticmethod
    def _lookup(s: Session, project_id: str, ref: str) -> Experiment | None:
        """By id or by name, so users can type names and clients can pass ids."""
        return repo.experiment_by_id(s, project_id, ref) or repo.experiment_by_name(
            s, project_id, ref
        )

    def experiment(self, s: Session, project_id: str, ref: str) -> Experiment:
        row = self._lookup(s, project_id, ref)
        if row is None:
            raise NotFound(f"experiment {ref!r} not found", field="experiment")
        return row

    def ensure_experiment(self, s: Session, project_id: str, ref: str, actor: str) -> Experiment:
        """The experiment, created if missing. Two writers may both find it missing (two jobs
        starting at once in a new project), and the loser finds out one of two ways: its
        insert fails on the unique name (in a savepoint), or the winner committed before
        ``create_experiment`` looked again (``Conflict``). Either way it takes the winner's
        row."""
        found = self._lookup(s, project_id, ref)
        if found is not None:
            return found
        try:
            with s.begin_nested():
                return self.create_experiment(
                    s, project_id, schemas.ExperimentCreate(name=ref), actor
                )
        except (IntegrityError, Conflict):
            found = repo.experiment_by_name(s, project_id, ref)
            if found is None:
                raise
            return found

    def experiments(self, s: Session, project_id: str, view: str = "active") -> list[Experiment]:
        stage = None if view == "all" else view
        return list(repo.experiments(s, project_id, stage))

    def set_experiment_stage(self, s: Session, project_id: str, ref: str, stage: str) -> None:
        self.experiment(s, project_id, ref).lifecycle_stage = stage
        s.flush()

    def rename_experiment(self, s: Session, project_id: str, ref: str, name: str) -> None:
        row = self.experiment(s, project_id, ref)
        if name != row.name and repo.experiment_by_name(s, project_id, name) is not None:
            raise Conflict(f"experiment {name!r} already exists", field="name")
        row.name = name
        s.flush()

    def set_experiment_tag(
        self, s: Session, project_id: str, ref: str, key: str, value: str
    ) -> None:
        row = self.experiment(s, project_id, ref)
        row.tags = {**row.tags, key: value}
        s.flush()

    # runs -------------------------------------------------------------------------------
    def create_run(self, s: Session, project_id: str, body: schemas.RunCreate, actor: str) -> Run:
        experiment = self.ensure_experiment(s, project_id, body.experiment, actor)
        if body.parent_run_id:
            self.run(s, project_id, body.parent_run_id, field="parent_run_id")
        run_id = new_id()
        run = Run(
            id=run_id,
            project_id=project_id,
            experiment_id=experiment.id,
            name=body.name or f"run-{run_id[:8]}",
            status=schemas.RunStatus.RUNNING.value,
            start_time=body.start_time if body.start_time is not None else now_ms(),
            user_id=actor,
            parent_run_id=body.parent_run_id,
            source_name=body.source.name,
            git_commit=body.source.git_commit,
            git_dirty=body.source.git_dirty,
            lifecycle_stage="active",
            artifact_root=f"runs/{run_id}/artifacts",
        )
        s.add(run)
        s.flush()
        repo.insert_params(s, run_id, dict(body.params))
        repo.upsert_tags(s, run_id, dict(body.tags))
        return run

    def run(self, s: Session, project_id: str, run_id: str, *, field: str = "run_id") -> Run:
        row = repo.run(s, project_id, run_id) if len(run_id) <= 32 else None
        if row is None:
            raise NotFound(f"run {run_id!r} not found", field=field)
        return row

    def update_run(self, s: Session, project_id: str, run_id: str, body: schemas.RunUpdate) -> Run:
        run = self.run(s, project_id, run_id)
        if body.name is not None:
            run.name = body.name
        if body.status is not None:
            run.status = body.status.value
            if body.status.terminal:
                run.end_time = body.end_time if body.end_time is not None else now_ms()
            else:
                run.end_time = None
        elif body.end_time is not None:
            run.end_time = body.end_time
        s.flush()
        return run

    def set_run_stage(self, s: Session, project_id: str, run_id: str, stage: str) -> None:
        self.run(s, project_id, run_id).lifecycle_stage = stage
        s.flush()

    def writable_run(self, s: Session, project_id: str, run_id: str) -> None:
        """404 for an unknown run, 409 for a finished one, 400 for a deleted one; reads two
        columns, no object (this runs before every write)."""
        state = repo.run_state(s, project_id, run_id) if len(run_id) <= 32 else None
        if state is None:
            raise NotFound(f"run {run_id!r} not found", field="run_id")
        if state[1] != "active":
            raise BadRequest(
                f"run {run_id} is deleted; restore it before logging to it", field="run_id"
            )
        if schemas.RunStatus(state[0]).terminal:
            raise Conflict(
                f"run {run_id} is {state[0]}; a finished run accepts no more data",
                field="run_id",
            )

    def record_input(
        self, s: Session, project_id: str, run_id: str, body: schemas.DatasetInput
    ) -> None:
        """Lineage: the run read this dataset version (idempotent)."""
        self.writable_run(s, project_id, run_id)
        dataset = repo.dataset(s, project_id, body.dataset)
        if dataset is None:
            raise NotFound(f"dataset {body.dataset!r} not found", field="dataset")
        version = repo.dataset_version(s, dataset.id, body.version)
        if version is None:
            raise NotFound(
                f"dataset {body.dataset!r} has no version {body.version}", field="version"
            )
        repo.record_input(s, run_id, version.id, body.context)

    def delete_tag(self, s: Session, project_id: str, run_id: str, key: str) -> None:
        self.run(s, project_id, run_id)
        if not repo.delete_tag(s, run_id, key):
            raise NotFound(f"tag {key!r} not found on run {run_id}", field="key")

    # logging ----------------------------------------------------------------------------
    def log_batch(self, s: Session, project_id: str, run_id: str, batch: schemas.LogBatch) -> int:
        """Write a whole batch in this transaction; returns the number of items written."""
        items = len(batch.metrics) + len(batch.params) + len(batch.tags)
        check_batch_size(items)
        self.writable_run(s, project_id, run_id)
        self._log_params(s, run_id, dict(batch.params))
        repo.upsert_tags(s, run_id, dict(batch.tags))
        with paused_gc():
            points = [(m.key, m.value, m.step, m.timestamp) for m in batch.metrics]
            self.log_points(s, run_id, points)
        return items

    def _log_params(self, s: Session, run_id: str, params: dict[str, str]) -> None:
        """Params are write-once: the same value again is a no-op, a different one a 409."""
        if not params:
            return
        existing = repo.param_values(s, run_id, list(params))
        for key, value in params.items():
            if key in existing and existing[key] != value:
                raise Conflict(
                    f"param {key!r} was logged as {existing[key]!r}; params cannot change",
                    field=f"params.{key}",
                )
        repo.insert_params(s, run_id, {k: v for k, v in params.items() if k not in existing})

    def log_points(
        self, s: Session, run_id: str, points: Sequence[tuple[str, float, int, int | None]]
    ) -> None:
        """One history block per series (one executemany), then move each series' latest
        value forward."""
        if not points:
            return
        heads = self._series_for(s, run_id, sorted({p[0] for p in points}))
        per_key = _arrays_by_key(points, now_ms())
        repo.insert_blocks(s, [_block(heads[k].id, *arrays) for k, arrays in per_key.items()])
        for key, arrays in per_key.items():
            head, added = heads[key], len(arrays[0])
            # Look for a run of small blocks only when this batch is small and the count
            # crosses a multiple of MERGE_RUN: single points then pay one query in eight.
            if added < SMALL_BLOCK and (head.point_count + added) // MERGE_RUN > (
                head.point_count // MERGE_RUN
            ):
                self._merge_small_tail(s, head.id)
        self._move_heads(s, heads, _newest(per_key))

    def _merge_small_tail(self, s: Session, series_id: int) -> None:
        """Keep one-point-per-call logging from leaving a history of tiny blocks.

        When the newest ``MERGE_RUN`` blocks of a series are all small, they become one
        (they are the tail, so arrival order holds). Each point is rewritten a bounded
        number of times (about log base MERGE_RUN of SMALL_BLOCK), and reads stay a few
        hundred blobs for any history.
        """
        tail = repo.tail_blocks(s, series_id, MERGE_RUN)
        if len(tail) < MERGE_RUN or any(count >= SMALL_BLOCK for _, count in tail):
            return
        ids = [block_id for block_id, _ in tail]
        merged = columnar.concat(repo.blocks_by_id(s, ids))
        repo.delete_blocks(s, ids)
        repo.insert_blocks(s, [_block(series_id, *merged)])

    def _series_for(self, s: Session, run_id: str, keys: list[str]) -> dict[str, SeriesHead]:
        heads = repo.lock_series(s, run_id, keys)
        missing = [k for k in keys if k not in heads]
        if missing:
            low = -(2**62)
            repo.create_series(
                s,
                [
                    {
                        "run_id": run_id,
                        "key": k,
                        "latest_value": 0.0,
                        "latest_is_nan": False,
                        "latest_step": low,
                        "latest_timestamp": low,
                        "point_count": 0,
                    }
                    for k in missing
                ],
            )
            heads = repo.lock_series(s, run_id, keys)
        return heads

    def _move_heads(
        self, s: Session, heads: dict[str, SeriesHead], newest: dict[str, Newest]
    ) -> None:
        """Advance each series' latest point where the batch has a later one; count all."""
        moved, counted = [], []
        for key, (step, ts, value, count) in newest.items():
            head = heads[key]
            if (step, ts) >= (head.step, head.timestamp):
                nan = math.isnan(value)
                v = 0.0 if nan else value
                moved.append({"sid": head.id, "v": v, "nan": nan, "st": step, "ts": ts, "n": count})
            else:
                counted.append({"sid": head.id, "n": count})
        if moved:
            repo.update_series(s, moved)
        if counted:
            repo.bump_point_counts(s, counted)

    # reading runs -----------------------------------------------------------------------
    def views(self, s: Session, runs: Sequence[Run]) -> list[schemas.RunOut]:
        """Runs with params, tags, latest metrics and inputs, in five queries for any count."""
        with paused_gc():  # thousands of small objects for a page of runs, no cycles
            return self._views(s, runs)

    def _views(self, s: Session, runs: Sequence[Run]) -> list[schemas.RunOut]:
        ids = [r.id for r in runs]
        names = repo.experiment_names(s, (r.experiment_id for r in runs))
        params, tags = repo.params_of(s, ids), repo.tags_of(s, ids)
        metrics, inputs = repo.latest_metrics_of(s, ids), repo.inputs_of(s, ids)
        out = []
        for run in runs:
            latest = {
                key: schemas.LatestMetric.model_construct(
                    value=math.nan if nan else value, step=step, timestamp=ts
                )
                for key, (value, nan, step, ts) in metrics[run.id].items()
            }
            extras = {
                "params": params[run.id],
                "tags": tags[run.id],
                "metrics": latest,
                "inputs": [schemas.RunInputOut.model_construct(**i) for i in inputs[run.id]],
            }
            out.append(run_view(run, names.get(run.experiment_id, ""), extras))
        return out

    def view(self, s: Session, project_id: str, run_id: str) -> schemas.RunOut:
        return self.views(s, [self.run(s, project_id, run_id)])[0]

    def search(
        self, s: Session, project_id: str, body: schemas.RunSearch
    ) -> tuple[list[Run], str | None]:
        try:
            comparisons = parse_filter(body.filter)
            order = parse_order_by(body.order_by)
        except FilterSyntaxError as exc:
            field = "order_by" if "order_by" in exc.message else "filter"
            raise BadRequest(str(exc), field=field, position=exc.position) from exc
        experiment_ids = None
        if body.experiments is not None:
            experiment_ids = [self.experiment(s, project_id, e).id for e in body.experiments]
        query = search.build_query(
            project_id, experiment_ids, comparisons, order, STAGES[body.run_view]
        )
        offset = decode_token(body.page_token)
        ids = repo.search_ids(s, query.offset(offset).limit(body.max_results + 1))
        more = len(ids) > body.max_results
        ids = ids[: body.max_results]
        by_id = repo.runs_by_ids(s, ids)
        token = encode_token(offset + len(ids)) if more else None
        return [by_id[i] for i in ids], token

    def compare(self, s: Session, project_id: str, run_ids: Sequence[str]) -> schemas.Comparison:
        runs = self.views(s, [self.run(s, project_id, r) for r in run_ids])
        param_keys = sorted({k for r in runs for k in r.params})
        metric_keys = sorted({k for r in runs for k in r.metrics})
        return schemas.Comparison(
            runs=runs,
            params={k: [r.params.get(k) for r in runs] for k in param_keys},
            metrics={
                k: [r.metrics[k].value if k in r.metrics else None for r in runs]
                for k in metric_keys
            },
        )

    # history ----------------------------------------------------------------------------
    def series(self, s: Session, project_id: str, run_id: str, key: str) -> MetricSeries | None:
        self.run(s, project_id, run_id)
        return repo.series(s, run_id, key)

    def history(
        self,
        s: Session,
        project_id: str,
        run_id: str,
        key: str,
        *,
        page_size: int,
        page_token: str | None,
        max_points: int | None,
    ) -> dict[str, Any]:
        """Columnar history: a page in (step, timestamp) order, or ``max_points`` buckets.

        Read from the packed blocks as arrays; no Python object is built per point.
        """
        series = self.series(s, project_id, run_id, key)
        total = series.point_count if series else 0
        extra: dict[str, Any] = {"total_points": total, "downsampled": False}
        if series is None or total == 0:
            return schemas.history_body(run_id, key, _EMPTY, {**extra, "next_page_token": None})
        with paused_gc():
            history = columnar.unpack(repo.blocks(s, series.id))
            if max_points is not None and len(history) > max_points:
                columns = columnar.downsample(history, max_points)
                extra |= {"downsampled": True, "next_page_token": None}
                return schemas.history_body(run_id, key, columns, extra)
            start = columnar.resume_at(history, _page_position(page_token))
            end = min(start + page_size, len(history))
            token = _page_token(columnar.position_of(history, end)) if end < len(history) else None
            columns = columnar.columns(history.between(start, end))
        return schemas.history_body(run_id, key, columns, {**extra, "next_page_token": token})

    def metric_keys(self, s: Session, project_id: str, run_id: str) -> list[str]:
        self.run(s, project_id, run_id)
        return repo.metric_keys(s, run_id)


Newest = tuple[int, int, float, int]  # step, timestamp, value, points in the batch


def _newest(per_key: dict[str, tuple[list[int], list[int], list[float]]]) -> dict[str, Newest]:
    """Each key's latest point in the batch: max (step, timestamp), the last one on ties."""
    out: dict[str, Newest] = {}
    for key, (steps, stamps, values) in per_key.items():
        best = max(range(len(steps)), key=lambda i: (steps[i], stamps[i], i))
        out[key] = (steps[best], stamps[best], values[best], len(steps))
    return out


def _block(series_id: int, steps: Any, stamps: Any, values: Any) -> dict[str, Any]:
    packed_steps, packed_stamps, packed_values = columnar.pack(steps, stamps, values)
    return {
        "series_id": series_id,
        "count": len(packed_steps) // 8,
        "steps": packed_steps,
        "timestamps": packed_stamps,
        "values": packed_values,
    }


def check_batch_size(items: int) -> None:
    if items > MAX_BATCH_ITEMS:
        raise PayloadTooLarge(
            f"a batch may hold at most {MAX_BATCH_ITEMS} items (metrics + params + tags); "
            f"this one has {items}",
            field="metrics",
            limit=MAX_BATCH_ITEMS,
        )


_EMPTY: dict[str, list[Any]] = {"steps": [], "values": [], "timestamps": []}


def _page_position(token: str | None) -> tuple[int, int, int] | None:
    """(step, timestamp, points of that step and time already sent) from a page token."""
    if not token:
        return None
    try:
        step, ts, sent = (int(p) for p in base64.urlsafe_b64decode(token).decode().split(":"))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the page token is not valid", field="page_token") from None
    return step, ts, sent


def _page_token(position: tuple[int, int, int]) -> str:
    return base64.urlsafe_b64encode(":".join(map(str, position)).encode()).decode()


def _arrays_by_key(
    points: Sequence[tuple[str, float, int, int | None]], stamp: int
) -> dict[str, tuple[list[int], list[int], list[float]]]:
    """Split a batch into per-metric columns (a point without a timestamp gets ``stamp``)."""
    per_key: dict[str, tuple[list[int], list[int], list[float]]] = {}
    for key, value, step, ts in points:
        arrays = per_key.get(key) or per_key.setdefault(key, ([], [], []))
        arrays[0].append(step)
        arrays[1].append(stamp if ts is None else ts)
        arrays[2].append(value)
    return per_key
