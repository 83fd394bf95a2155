"""Monitoring logic users call: baselines, schedules, run-now, executions, ground truth.

Running an execution (reading captures, computing, alerting, acting) is ``runner.py``'s;
this module records what users ask for and reads it back.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
import orjson
from croniter import croniter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.db.engine import Database
from shipyard.errors import Conflict, NotFound, ShipyardError, ValidationFailed
from shipyard.hosting.service import HostingService
from shipyard.kit.ids import new_id, utcnow
from shipyard.monitoring import schemas
from shipyard.monitoring.models import Baseline, Execution, Schedule
from shipyard.monitoring.repository import PENDING
from shipyard.monitoring.repository import monitoring_repository as repo
from shipyard.monitoring.statistics import Constraints, EmptyDataset, baseline_from_file
from shipyard.storage.models import ArtifactVersion
from shipyard.storage.service import ArtifactService
from shipyard.tracking.datasets import DatasetService

BASELINES = "monitoring/baselines"
GROUND_TRUTH = "monitoring/ground-truth"


def baseline_dir(name: str, version: int) -> str:
    return f"{BASELINES}/{name}/v{version}"


def ground_truth_prefix(endpoint: str) -> str:
    return f"{GROUND_TRUTH}/{endpoint}/"


def next_run(cron: str, after: datetime) -> datetime:
    """The first time ``cron`` fires after ``after`` (UTC)."""
    found: datetime = croniter(cron, after).get_next(datetime)
    return found


class MonitoringService:
    def __init__(
        self,
        *,
        artifacts: ArtifactService,
        datasets: DatasetService,
        hosting: HostingService,
    ) -> None:
        self.artifacts = artifacts
        self.datasets = datasets
        self.hosting = hosting

    # --- artifacts, read and written whole ---------------------------------------------------

    async def download(self, db: Database, row: ArtifactVersion, dest: Path) -> Path:
        """The stored bytes into ``dest`` (decrypted, checked against their SHA-256)."""
        with db.read() as s:
            download = await self.artifacts.open_download(s, row)
        with dest.open("wb") as out:
            async for piece in download:
                out.write(piece)
        return dest

    async def read_json(
        self, db: Database, project_id: str, path: str, version: int | None = None
    ) -> dict[str, Any]:
        with db.read() as s:
            row = self.artifacts.find(s, project_id, path, version)
            download = await self.artifacts.open_download(s, row)
        document: dict[str, Any] = orjson.loads(b"".join([piece async for piece in download]))
        return document

    # --- baselines --------------------------------------------------------------------------

    async def create_baseline(
        self, db: Database, project_id: str, body: schemas.BaselineCreate, actor: str
    ) -> Baseline:
        """Profile the dataset version (one vectorised pass), store statistics.json and the
        suggested constraints.json as artifacts, and record the baseline version."""
        source, row = self._baseline_source(db, project_id, body)
        with tempfile.TemporaryDirectory(prefix="shipyard-baseline-") as tmp:
            local = await self.download(db, row, Path(tmp) / PurePosixPath(row.path).name)
            try:
                statistics = await anyio.to_thread.run_sync(
                    lambda: baseline_from_file(local, exclude=body.exclude)
                )
            except EmptyDataset as exc:
                field = "dataset" if body.dataset else "artifact_path"
                raise ValidationFailed(f"cannot make a baseline: {exc}", field=field) from exc
            except ValueError as exc:  # unreadable as CSV or Parquet
                field = "dataset" if body.dataset else "artifact_path"
                raise ValidationFailed(f"cannot read {row.path!r}: {exc}", field=field) from exc
        constraints = Constraints.suggest(statistics)
        features = [feature.name for feature in statistics.features]
        with db.read() as s:
            version = repo.next_baseline_version(s, project_id, body.name)
        directory = baseline_dir(body.name, version)
        json_type = "application/json"
        stats_bytes = orjson.dumps(statistics.to_json(), option=orjson.OPT_INDENT_2)
        await self.artifacts.put(
            db,
            project_id,
            f"{directory}/statistics.json",
            stats_bytes,
            content_type=json_type,
            actor=actor,
        )
        recorded: list[Baseline] = []

        def record(s: Session, stored: ArtifactVersion) -> None:
            recorded.append(
                repo.add(
                    s,
                    Baseline(
                        project_id=project_id,
                        name=body.name,
                        version=version,
                        source=source,
                        features=features,
                        excluded=list(body.exclude),
                        statistics_path=f"{directory}/statistics.json",
                        constraints_path=stored.path,
                        rows=int(statistics.rows),
                        created_by=actor,
                    ),
                )
            )

        constraints_bytes = orjson.dumps(constraints.to_json(), option=orjson.OPT_INDENT_2)
        try:
            await self.artifacts.put(
                db,
                project_id,
                f"{directory}/constraints.json",
                constraints_bytes,
                content_type=json_type,
                actor=actor,
                then=record,
            )
        except IntegrityError as exc:  # two creates of the same name at once
            raise Conflict(
                f"baseline {body.name!r} changed meanwhile; retry", field="name"
            ) from exc
        return recorded[0]

    def _baseline_source(
        self, db: Database, project_id: str, body: schemas.BaselineCreate
    ) -> tuple[dict[str, Any], ArtifactVersion]:
        with db.read() as s:
            ref = body.dataset_ref()
            if ref is not None:
                try:
                    _, version = self.datasets.version(s, project_id, ref[0], ref[1])
                except ShipyardError as exc:
                    raise ValidationFailed(exc.message, field="dataset") from exc
                row = self.artifacts.find(
                    s, project_id, version.artifact_path, version.artifact_version
                )
                return {"dataset": ref[0], "version": ref[1]}, row
            assert body.artifact_path is not None
            try:
                row = self.artifacts.find(
                    s,
                    project_id,
                    ArtifactService.clean_path(body.artifact_path),
                    body.artifact_version,
                )
            except ShipyardError as exc:
                raise ValidationFailed(exc.message, field="artifact_path") from exc
            return {"artifact": row.path, "version": row.version}, row

    def baseline(self, s: Session, project_id: str, name: str, version: int | None) -> Baseline:
        row = repo.baseline(s, project_id, name, version)
        if row is None:
            which = f" version {version}" if version else ""
            raise NotFound(f"baseline {name!r}{which} not found", field="name")
        return row

    def baselines(self, s: Session, project_id: str) -> Sequence[Baseline]:
        return repo.baselines(s, project_id)

    async def constraints(
        self, db: Database, project_id: str, baseline: Baseline
    ) -> dict[str, Any]:
        """The baseline's constraints as they are now (edits are new artifact versions)."""
        return await self.read_json(db, project_id, baseline.constraints_path)

    async def replace_constraints(
        self,
        db: Database,
        project_id: str,
        baseline: Baseline,
        document: dict[str, Any],
        actor: str,
    ) -> dict[str, Any]:
        """A person's edit of constraints.json: checked whole, stored as a new version."""
        try:
            constraints = Constraints.from_json(document)
        except ValueError as exc:
            raise ValidationFailed(f"constraints: {exc}", field="constraints") from exc
        unknown = sorted(set(constraints.features) - set(baseline.features))
        if unknown:
            raise ValidationFailed(
                f"constraints name features the baseline does not have: {', '.join(unknown)}",
                field="constraints",
            )
        data = orjson.dumps(constraints.to_json(), option=orjson.OPT_INDENT_2)
        await self.artifacts.put(
            db,
            project_id,
            baseline.constraints_path,
            data,
            content_type="application/json",
            actor=actor,
        )
        return constraints.to_json()

    # --- schedules --------------------------------------------------------------------------

    def create_schedule(
        self,
        s: Session,
        team_id: str,
        project_id: str,
        body: schemas.ScheduleCreate,
        actor: str,
    ) -> Schedule:
        self.hosting.endpoint(s, project_id, body.endpoint)  # 404 naming it
        baseline_version = None
        if body.baseline is not None:
            try:
                found = self.baseline(s, project_id, body.baseline.name, body.baseline.version)
            except NotFound as exc:
                raise ValidationFailed(exc.message, field="baseline") from exc
            baseline_version = found.version  # pinned: "latest" means latest now
        if repo.schedule(s, project_id, body.name) is not None:
            raise Conflict(f"monitor {body.name!r} already exists", field="name")
        return repo.add(
            s,
            Schedule(
                project_id=project_id,
                team_id=team_id,
                name=body.name,
                endpoint_name=body.endpoint,
                kind=body.kind.value,
                baseline_name=body.baseline.name if body.baseline else None,
                baseline_version=baseline_version,
                problem_type=body.problem_type,
                cron=body.cron,
                window_s=body.window_s,
                rules=[rule.model_dump(mode="json") for rule in body.rules or []],
                actions=body.actions.model_dump(mode="json", exclude_none=True),
                enabled=body.enabled,
                next_run_at=next_run(body.cron, utcnow()) if body.enabled else None,
                created_by=actor,
            ),
        )

    def schedule(self, s: Session, project_id: str, name: str) -> Schedule:
        row = repo.schedule(s, project_id, name)
        if row is None:
            raise NotFound(f"monitor {name!r} not found", field="name")
        return row

    def schedule_by_id(self, s: Session, schedule_id: str) -> Schedule:
        row = repo.schedule_by_id(s, schedule_id)
        if row is None:
            raise NotFound(f"monitor {schedule_id!r} not found", field="name")
        return row

    def schedules(self, s: Session, project_id: str) -> Sequence[Schedule]:
        return repo.schedules(s, project_id)

    def update_schedule(
        self, s: Session, project_id: str, name: str, body: schemas.ScheduleUpdate
    ) -> Schedule:
        row = self.schedule(s, project_id, name)
        if body.rules is not None:
            try:
                schemas.check_rules(body.rules, schemas.Kind(row.kind), row.problem_type)
            except ValueError as exc:
                raise ValidationFailed(str(exc), field="rules") from exc
            row.rules = [rule.model_dump(mode="json") for rule in body.rules]
        if body.actions is not None:
            row.actions = body.actions.model_dump(mode="json", exclude_none=True)
        if body.window_s is not None:
            row.window_s = body.window_s
        if body.cron is not None:
            row.cron = body.cron
        if body.enabled is not None:
            row.enabled = body.enabled
        row.next_run_at = next_run(row.cron, utcnow()) if row.enabled else None
        s.flush()
        return row

    def delete_schedule(self, s: Session, project_id: str, name: str) -> None:
        s.delete(self.schedule(s, project_id, name))
        s.flush()

    def run_now(
        self, s: Session, project_id: str, name: str, body: schemas.RunRequest, actor: str
    ) -> Execution:
        """A manual execution over the schedule's window ending now (or the one given)."""
        schedule = self.schedule(s, project_id, name)
        end = body.end or utcnow()
        start = body.start or end - timedelta(seconds=schedule.window_s)
        return self.new_execution(s, schedule, start, end, "manual", actor)

    @staticmethod
    def new_execution(
        s: Session, schedule: Schedule, start: datetime, end: datetime, trigger: str, actor: str
    ) -> Execution:
        return repo.add(
            s,
            Execution(
                id=new_id(),
                schedule_id=schedule.id,
                project_id=schedule.project_id,
                trigger=trigger,
                status=PENDING,
                window_start=start,
                window_end=end,
                summary={},
                alerts=[],
                requested_by=actor,
            ),
        )

    # --- executions -------------------------------------------------------------------------

    def execution(self, s: Session, project_id: str, execution_id: str) -> Execution:
        row = repo.execution(s, project_id, execution_id)
        if row is None:
            raise NotFound(f"execution {execution_id!r} not found", field="execution_id")
        return row

    def executions(
        self, s: Session, project_id: str, schedule: str | None, limit: int
    ) -> Sequence[Execution]:
        rows = (
            [self.schedule(s, project_id, schedule)] if schedule else self.schedules(s, project_id)
        )
        return repo.executions(s, [row.id for row in rows], limit)

    def report_row(
        self, s: Session, project_id: str, execution_id: str, html: bool
    ) -> ArtifactVersion:
        row = self.execution(s, project_id, execution_id)
        path = row.html_path if html else row.report_path
        if path is None:
            raise Conflict(
                f"execution {execution_id!r} is {row.status}: it has no report",
                field="execution_id",
            )
        return self.artifacts.find(s, project_id, path, None)

    # --- ground truth -----------------------------------------------------------------------

    async def upload_ground_truth(
        self,
        db: Database,
        project_id: str,
        endpoint: str,
        body: schemas.GroundTruthUpload,
        actor: str,
    ) -> schemas.GroundTruthOut:
        """Labels keyed by capture event id, stored as one JSONL artifact per upload (joined
        to captures when a model-quality monitor runs; unknown ids are counted there)."""
        with db.read() as s:
            self.hosting.endpoint(s, project_id, endpoint)
        now = utcnow()
        path = f"{ground_truth_prefix(endpoint)}{now:%Y/%m/%d/%H}/{new_id()}.jsonl"
        lines = b"".join(orjson.dumps(label.model_dump()) + b"\n" for label in body.labels)
        await self.artifacts.put(
            db, project_id, path, lines, content_type="application/x-ndjson", actor=actor
        )
        return schemas.GroundTruthOut(accepted=len(body.labels), path=path)
