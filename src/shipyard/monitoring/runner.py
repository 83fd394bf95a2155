"""Running one monitoring execution: from captured traffic to a verdict, alerts and actions.

1. The capture files of the endpoint whose hour overlaps the window are downloaded (they are
   encrypted artifacts) into a private temporary directory — only those hours, so the work
   is bounded by the window, not by the endpoint's history.
2. Data quality: the baseline's statistics and current constraints, and ``drift.analyze`` over
   the files (DuckDB, streaming); model quality: captured predictions joined to the uploaded
   ground truth by event id, and ``quality.model_quality``.
3. The JSON and HTML reports are stored as artifacts; the summary, the verdict and the alerts
   (rules broken) are recorded with ``monitor.execution.completed`` and, when a rule broke,
   ``monitor.violation`` (whose ``text`` makes it a Slack message as it is) — in the same
   transaction, so an alert is emitted exactly when its execution is recorded.
4. An action on a broken rule starts the retraining job from the schedule's template; the
   controller registers what it makes once it completes (``follow_retrain``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import anyio
import duckdb
import orjson
from sqlalchemy.orm import Session

from shipyard.db.engine import Database
from shipyard.errors import ShipyardError
from shipyard.events.service import EventService
from shipyard.hosting.fleet import CAPTURE_PREFIX
from shipyard.jobs.schemas import JobCreate, JobStatus
from shipyard.jobs.service import JobService
from shipyard.kit.ids import as_utc, utcnow
from shipyard.monitoring import capture, drift, quality, report
from shipyard.monitoring.models import Execution, Schedule
from shipyard.monitoring.repository import COMPLETED, FAILED
from shipyard.monitoring.repository import monitoring_repository as repo
from shipyard.monitoring.schemas import Kind, Rule
from shipyard.monitoring.service import MonitoringService, ground_truth_prefix
from shipyard.monitoring.statistics import Constraints, Statistics
from shipyard.registry.schemas import ModelGroupCreate, ModelVersionCreate
from shipyard.registry.service import RegistryService
from shipyard.security.models import Project, Team

MAX_FILES = 100_000
_OPS = {
    ">": lambda value, limit: value > limit,
    ">=": lambda value, limit: value >= limit,
    "<": lambda value, limit: value < limit,
    "<=": lambda value, limit: value <= limit,
}


@dataclass
class Outcome:
    """What an execution found: the report document and what the list views show."""

    report: dict[str, Any]
    html: str
    summary: dict[str, Any]
    metrics: dict[str, float]  # what rules compare: execution-level values
    features: dict[str, dict[str, float]]  # per feature: psi, ks, js, chi2
    verdict: str


class MonitoringRunner:
    def __init__(
        self,
        *,
        db: Database,
        service: MonitoringService,
        events: EventService,
        jobs: JobService,
        registry: RegistryService,
        wake_jobs: Any = None,
    ) -> None:
        self.db = db
        self.service = service
        self.events = events
        self.jobs = jobs
        self.registry = registry
        self._wake_jobs = wake_jobs

    # --- one execution ----------------------------------------------------------------------

    async def execute(self, execution: Execution, owner: str) -> None:
        """Run it and record the outcome (or the failure) while the lease is ours."""
        with self.db.read() as s:
            schedule = repo.schedule_by_id(s, execution.schedule_id)
        if schedule is None:
            return
        try:
            with tempfile.TemporaryDirectory(prefix="shipyard-monitor-") as tmp:
                outcome = await self._compute(schedule, execution, Path(tmp))
            await self._record(schedule, execution, owner, outcome)
        except ShipyardError as exc:
            self._failed(schedule, execution, owner, exc.message)
        except Exception as exc:  # a bug or a broken file: recorded, never a silent stop
            self._failed(schedule, execution, owner, f"{type(exc).__name__}: {exc}")
            raise

    async def _compute(self, schedule: Schedule, execution: Execution, tmp: Path) -> Outcome:
        start, end = as_utc(execution.window_start), as_utc(execution.window_end)
        files = await self._captures(schedule, start, end, tmp / "capture")
        if schedule.kind == Kind.MODEL_QUALITY:
            return await self._model_quality(schedule, files, start, end, tmp)
        return await self._data_quality(schedule, files, start, end)

    async def _captures(
        self, schedule: Schedule, start: datetime, end: datetime, into: Path
    ) -> list[Path]:
        prefix = f"{CAPTURE_PREFIX}/{schedule.endpoint_name}/"
        return await self._download(
            schedule, prefix, into, lambda path: _hour_overlaps(path, start, end)
        )

    async def _download(
        self, schedule: Schedule, prefix: str, into: Path, keep: Callable[[str], bool]
    ) -> list[Path]:
        """The latest version of every artifact under ``prefix`` that ``keep`` wants, as
        local files (decrypted, checked against their digest)."""
        with self.db.read() as s:
            rows = self.service.artifacts.list_latest(s, schedule.project_id, prefix, MAX_FILES)
        into.mkdir(parents=True, exist_ok=True)
        chosen = [row for row in rows if keep(row.path)]
        return [
            await self.service.download(self.db, row, into / f"{index}.jsonl")
            for index, row in enumerate(chosen)
        ]

    async def _data_quality(
        self, schedule: Schedule, files: Sequence[Path], start: datetime, end: datetime
    ) -> Outcome:
        assert schedule.baseline_name is not None
        with self.db.read() as s:
            baseline = self.service.baseline(
                s, schedule.project_id, schedule.baseline_name, schedule.baseline_version
            )
        statistics = Statistics.from_json(
            await self.service.read_json(self.db, schedule.project_id, baseline.statistics_path)
        )
        constraints = Constraints.from_json(
            await self.service.constraints(self.db, schedule.project_id, baseline)
        )
        analysis = await anyio.to_thread.run_sync(
            lambda: drift.analyze(statistics, constraints, files, start=start, end=end)
        )
        document = analysis.to_json()
        title = (
            f"{schedule.endpoint_name}: {schedule.name}, {start:%Y-%m-%d %H:%M} to {end:%H:%M} UTC"
        )
        html = report.html_report(analysis, statistics, title=title)
        return _data_outcome(document, html)

    async def _model_quality(
        self,
        schedule: Schedule,
        files: Sequence[Path],
        start: datetime,
        end: datetime,
        tmp: Path,
    ) -> Outcome:
        labels = await self._ground_truth(schedule, tmp / "labels")
        problem: Literal["classification", "regression"] = (
            "regression" if schedule.problem_type == "regression" else "classification"
        )
        joined = await anyio.to_thread.run_sync(lambda: _join_labels(files, labels, start, end))
        predictions, truth, unmatched, total = joined
        metrics = quality.model_quality(problem, predictions, truth) if len(predictions) else {}
        counts = {"labels": total, "matched": len(predictions), "unmatched": unmatched}
        document = {"kind": "model_quality", "problem_type": problem, "metrics": metrics, **counts}
        summary = {**counts, "metrics": metrics}
        values = {**metrics, "matched": float(len(predictions)), "unmatched": float(unmatched)}
        return Outcome(document, _quality_html(schedule, document), summary, values, {}, "ok")

    async def _ground_truth(self, schedule: Schedule, into: Path) -> list[Path]:
        prefix = ground_truth_prefix(schedule.endpoint_name)
        return await self._download(schedule, prefix, into, lambda path: True)

    # --- recording, alerts, actions --------------------------------------------------------

    async def _record(
        self, schedule: Schedule, execution: Execution, owner: str, outcome: Outcome
    ) -> None:
        directory = f"monitoring/executions/{schedule.name}/{execution.id}"
        report_path, html_path = f"{directory}/report.json", f"{directory}/report.html"
        actor = "monitoring"
        body = orjson.dumps(outcome.report, option=orjson.OPT_INDENT_2)
        put = self.service.artifacts.put
        await put(
            self.db,
            schedule.project_id,
            report_path,
            body,
            content_type="application/json",
            actor=actor,
        )
        await put(
            self.db,
            schedule.project_id,
            html_path,
            outcome.html.encode(),
            content_type="text/html",
            actor=actor,
        )
        alerts = broken_rules(
            [Rule.model_validate(rule) for rule in schedule.rules],
            outcome.metrics,
            outcome.features,
        )
        retrain = (schedule.actions or {}).get("retrain") if alerts else None
        job_name = await self._retrain(schedule, execution, retrain) if retrain else None
        with self.db.transaction() as s:
            recorded = repo.finish(
                s,
                execution.id,
                owner,
                status=COMPLETED,
                verdict=outcome.verdict if not alerts else "alert",
                summary=outcome.summary,
                alerts=alerts,
                report_path=report_path,
                html_path=html_path,
                finished_at=utcnow(),
                retrain_job=job_name,
                error="",
            )
            if not recorded:
                return
            self._emit_outcome(s, schedule, execution, outcome, alerts, html_path, job_name)

    def _emit_outcome(
        self,
        s: Session,
        schedule: Schedule,
        execution: Execution,
        outcome: Outcome,
        alerts: list[dict[str, Any]],
        html_path: str,
        job_name: str | None,
    ) -> None:
        base = {
            "monitor": schedule.name,
            "endpoint": schedule.endpoint_name,
            "execution": execution.id,
            "kind": schedule.kind,
            "verdict": outcome.verdict,
            "summary": outcome.summary,
            "report": html_path,
        }
        subject = f"monitor:{schedule.name}"
        self._emit(s, schedule, "monitor.execution.completed", subject, base)
        if alerts:
            text = violation_text(self._project_label(s, schedule), schedule, alerts, html_path)
            data = {**base, "alerts": alerts, "retrain_job": job_name, "text": text}
            self._emit(s, schedule, "monitor.violation", subject, data)
        if job_name:
            data = {**base, "job": job_name}
            self._emit(s, schedule, "monitor.retrain.started", f"job:{job_name}", data)

    async def _retrain(
        self, schedule: Schedule, execution: Execution, action: dict[str, Any]
    ) -> str | None:
        """Submit the template job under a name of its own; None (recorded as an error on the
        event) when admission refuses it — the alert still goes out."""
        template = dict(action["job"])
        template["name"] = f"{template['name'][:40]}-{utcnow():%Y%m%d%H%M%S}"[:63]
        spec = JobCreate.model_validate(template)
        with self.db.read() as s:
            team = s.get(Team, schedule.team_id)
            project = s.get(Project, schedule.project_id)
        if team is None or project is None:
            return None
        try:
            # on behalf of who made the monitor: the job's token, quotas and audit are theirs
            job = await self.jobs.admit(self.db, team, project, spec, schedule.created_by)
        except ShipyardError:
            return None
        if self._wake_jobs is not None:
            self._wake_jobs()
        return job.name

    def _failed(self, schedule: Schedule, execution: Execution, owner: str, message: str) -> None:
        with self.db.transaction() as s:
            recorded = repo.finish(
                s, execution.id, owner, status=FAILED, error=message[:4000], finished_at=utcnow()
            )
            if recorded:
                data = {
                    "monitor": schedule.name,
                    "endpoint": schedule.endpoint_name,
                    "execution": execution.id,
                    "error": message,
                }
                self._emit(
                    s, schedule, "monitor.execution.failed", f"monitor:{schedule.name}", data
                )

    def _emit(
        self, s: Session, schedule: Schedule, type: str, subject: str, data: dict[str, Any]
    ) -> None:
        self.events.emit(
            s,
            project_id=schedule.project_id,
            type=type,
            subject=subject,
            data=data,
            actor=f"monitor:{schedule.name}",
        )

    @staticmethod
    def _project_label(s: Session, schedule: Schedule) -> str:
        team, project = s.get(Team, schedule.team_id), s.get(Project, schedule.project_id)
        return f"{team.name}/{project.name}" if team and project else schedule.project_id

    # --- the continuous-training loop's last step ------------------------------------------

    async def follow_retrain(self, execution: Execution) -> None:
        """Once the retraining job completes, register its model as a new pending version of
        the schedule's group (which a lead then approves); a failed job is recorded."""
        with self.db.read() as s:
            schedule = repo.schedule_by_id(s, execution.schedule_id)
            if schedule is None or execution.retrain_job is None:
                return
            job = self.jobs.get(s, execution.project_id, execution.retrain_job)
        status = JobStatus(job.status)
        if not status.terminal:
            return
        retrain = (schedule.actions or {}).get("retrain") or {}
        group = retrain.get("register_group")
        if status != JobStatus.COMPLETED or not group:
            self._retrain_done(
                execution,
                None,
                "" if group else "not registered: no group",
                job_error=status != JobStatus.COMPLETED,
                reason=job.reason,
            )
            return
        try:
            version = await self._register(schedule, group, job.name)
        except ShipyardError as exc:  # recorded once, not retried every pass
            self._retrain_done(execution, None, f"cannot register the retrained model: {exc}")
            return
        self._retrain_done(execution, version, "")
        with self.db.transaction() as s:
            data = {"monitor": schedule.name, "job": job.name, "group": group, "version": version}
            self._emit(s, schedule, "monitor.retrain.registered", f"model:{group}:{version}", data)

    async def _register(self, schedule: Schedule, group: str, job_name: str) -> int:
        """A new version from the job, described like the group's latest (flavor, signature,
        example: so a promotion can test it the same way)."""
        with self.db.transaction() as s:
            try:
                self.registry.group(s, schedule.project_id, group)
            except ShipyardError:
                self.registry.create_group(
                    s, schedule.project_id, ModelGroupCreate(name=group), "monitoring"
                )
            newest = self.registry.versions(s, schedule.project_id, group)
            previous = newest[0] if newest else None
        body: dict[str, Any] = {"job": job_name, "description": f"retrained by {schedule.name}"}
        if previous is not None:
            body |= {
                "flavor": previous.flavor,
                "signature": previous.signature,
                "example": previous.example,
            }
        version = await self.registry.register(
            self.db,
            schedule.project_id,
            group,
            ModelVersionCreate.model_validate(body),
            schedule.created_by,  # who may not approve it (four eyes)
        )
        return int(version.version)

    def _retrain_done(
        self,
        execution: Execution,
        version: int | None,
        note: str,
        *,
        job_error: bool = False,
        reason: str = "",
    ) -> None:
        with self.db.transaction() as s:
            row = s.get(Execution, execution.id)
            if row is None:
                return
            if version is not None:
                row.retrain_version = version
            else:
                row.error = f"retraining job failed: {reason}" if job_error else note


# --- pure helpers ---------------------------------------------------------------------------


def broken_rules(
    rules: Sequence[Rule], metrics: dict[str, float], features: dict[str, dict[str, float]]
) -> list[dict[str, Any]]:
    """The rules the values break, each with the value that broke it (absent values never
    break a rule: a feature without traffic has no drift score)."""
    broken = []
    for rule in rules:
        if rule.feature is None:
            value = metrics.get(rule.metric)
        else:
            value = features.get(rule.feature, {}).get(rule.metric)
        if value is not None and _OPS[rule.op](float(value), rule.threshold):
            broken.append({**rule.model_dump(mode="json"), "value": float(value)})
    return broken


def violation_text(
    project: str, schedule: Schedule, alerts: list[dict[str, Any]], report: str
) -> str:
    parts = [
        f"{a['metric']}{'[' + a['feature'] + ']' if a.get('feature') else ''} = "
        f"{a['value']:g} {a['op']} {a['threshold']:g}"
        for a in alerts
    ]
    return (
        f":rotating_light: [{project}] monitor {schedule.name} on endpoint "
        f"{schedule.endpoint_name}: {'; '.join(parts)} (report: {report})"
    )


def _data_outcome(document: dict[str, Any], html: str) -> Outcome:
    """Execution-level values from the analysis document (see ``drift.Analysis.to_json``)."""
    results = document.get("features", [])
    features = {
        r["name"]: {k: float(v) for k, v in r.get("metrics", {}).items() if _is_number(v)}
        for r in results
    }
    drifted = sorted(r["name"] for r in results if r.get("drifted"))
    violations = document.get("violations", [])
    counts = document.get("counts", {})
    total = max(1, len(features))
    metrics = {
        "drifted_features": float(len(drifted)),
        "drift_share": len(drifted) / total,
        "violations": float(len(violations)),
        "records": float(counts.get("records", 0)),
    }
    summary = {
        "records": counts.get("records", 0),
        "rows": counts.get("rows", 0),
        "drifted_features": drifted,
        "drift_share": round(metrics["drift_share"], 4),
        "violations": len(violations),
        "violation_kinds": sorted({v.get("kind", "") for v in violations}),
        "feature_metrics": {
            name: {metric: round(value, 6) for metric, value in values.items()}
            for name, values in features.items()
        },
    }
    return Outcome(document, html, summary, metrics, features, str(document.get("verdict", "ok")))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _join_labels(
    captures: Sequence[Path], labels: Sequence[Path], start: datetime, end: datetime
) -> tuple[Any, Any, int, int]:
    """(predictions, labels) of the captured events that have a label, the number of labels
    whose event is not in the window's captures, and the number of labels — one DuckDB join."""
    no_features = Statistics(rows=0, features=[])  # only event ids and predictions
    table = capture.read_capture(list(captures), no_features, start=start, end=end)
    connection = duckdb.connect()
    try:
        connection.register("captured", table)
        if labels:
            files = [str(path) for path in labels]
            connection.execute(
                "CREATE TABLE truth AS SELECT event_id, arg_max(label, 1) AS label "
                "FROM read_json(?, format='newline_delimited', "
                "columns={'event_id': 'VARCHAR', 'label': 'DOUBLE'}) GROUP BY event_id",
                [files],
            )
        else:
            connection.execute("CREATE TABLE truth (event_id VARCHAR, label DOUBLE)")
        joined = connection.execute(
            "SELECT c.prediction, t.label FROM captured c JOIN truth t USING (event_id) "
            "WHERE c.prediction IS NOT NULL AND t.label IS NOT NULL"
        ).fetchnumpy()
        total = int(connection.execute("SELECT count(*) FROM truth").fetchone()[0])  # type: ignore[index]
        unmatched = int(
            connection.execute(  # type: ignore[index]
                "SELECT count(*) FROM truth t ANTI JOIN captured c USING (event_id)"
            ).fetchone()[0]
        )
    finally:
        connection.close()
    return joined["prediction"], joined["label"], unmatched, total


def _quality_html(schedule: Schedule, document: dict[str, Any]) -> str:
    from html import escape

    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{value:.4f}</td></tr>"
        for name, value in document["metrics"].items()
    )
    return (
        "<!doctype html><meta charset=utf-8>"
        f"<title>{escape(schedule.name)}</title>"
        f"<h1>Model quality: {escape(schedule.endpoint_name)}</h1>"
        f"<p>{document['matched']} labelled predictions; {document['unmatched']} labels without a "
        f"captured event</p><table><tr><th>metric</th><th>value</th></tr>{rows}</table>"
    )


def _hour_overlaps(path: str, start: datetime, end: datetime) -> bool:
    """``capture/<endpoint>/<variant>/<yyyy>/<mm>/<dd>/<hh>/<batch>.jsonl`` whose hour
    intersects [start, end)."""
    parts = path.split("/")
    try:
        y, m, d, h = (int(p) for p in parts[-5:-1])
        hour = datetime(y, m, d, h, tzinfo=UTC)
    except (ValueError, TypeError):
        return False
    return hour < end and hour + timedelta(hours=1) > start
