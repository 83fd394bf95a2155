"""Driving one job from its current status to the end: attempts, phases, checkpoints, uploads.

A ``JobExecution`` runs in a controller thread while that controller holds the job's lease.
Every write goes through the lease (``write_held``), so if the lease is lost the execution
stops changing anything and ends its instances. The job row is the whole memory: a new
controller that adopts the job after a crash reads what happened from it and continues —
ending what the dead controller left running and resuming from the last stored checkpoint.

Phases: Pending → Starting (run, job key) → Downloading (code, inputs, checkpoints,
environment) → Running (logs, metrics, checkpoint sync, stop/interrupt/max runtime) →
Uploading (model.tar.gz, output/, logs) → Completed. A failed attempt is retried while
``max_retries`` allows; an interrupted one resumes with a new attempt without using one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from shipyard.config import Settings
from shipyard.db.engine import Database
from shipyard.errors import ShipyardError
from shipyard.events.service import EventService
from shipyard.jobs import runtime
from shipyard.jobs.backends.base import Backend, Cluster, IsolationRefused
from shipyard.jobs.backends.process import tail_lines
from shipyard.jobs.catalog import Catalog
from shipyard.jobs.host import Fetch, FileState, InstanceError, InstanceSpec
from shipyard.jobs.logmetrics import LogMetricExtractor, compile_definitions
from shipyard.jobs.repository import job_repository as repo
from shipyard.jobs.schemas import JobCreate, JobKind, JobStatus
from shipyard.jobs.service import JobService
from shipyard.kit.files import ensure_private_dir, open_private_append
from shipyard.kit.ids import utcnow
from shipyard.security.permissions import Role
from shipyard.security.service import IdentityService
from shipyard.storage.models import ArtifactVersion
from shipyard.storage.service import ArtifactService
from shipyard.tracking import schemas as tracking_schemas
from shipyard.tracking.service import TrackingService

log = logging.getLogger("shipyard.jobs")

TICK_S = 0.1
CHECK_REQUESTS_S = 0.5
FLUSH_METRICS_S = 1.0
FAILURE_LOG_LINES = 50
PRESIGN_S = 3600
KEY_SLACK = timedelta(hours=1)
MAX_CHAOS_INTERRUPTS = 3
JOBS_EXPERIMENT = "jobs"
EVENT_REASON_CHARS = 4000  # a failure's reason carries log lines; events keep the head


class LeaseLost(Exception):
    """Another controller holds the job now; this one must let go without writing."""


@dataclass
class JobContext:
    """The services an execution uses; built once by the controller."""

    settings: Settings
    db: Database
    artifacts: ArtifactService
    jobs: JobService
    tracking: TrackingService
    identity: IdentityService
    catalog: Catalog
    backend: Backend
    events: EventService


@dataclass
class Outcome:
    """How an attempt ended: the next status, why, and whether a retry may follow."""

    status: JobStatus
    reason: str = ""
    retryable: bool = False


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def job_prefix(name: str) -> str:
    return f"jobs/{name}"


def log_dir(settings: Settings, job_id: str) -> Path:
    return settings.jobs_dir / job_id / "logs"


def _in_progress(relative: str) -> bool:
    """A checkpoint file named as one still being written (``.ckpt.tmp``, ``x.partial``)."""
    name = relative.rsplit("/", 1)[-1]
    return name.startswith(".") or name.endswith((".tmp", ".partial"))


def end_leftovers(instances: list[dict[str, Any]] | None) -> int:
    """SIGKILL the process groups a dead controller left, if they are still the job's own
    (same working directory), so an adopted job never runs twice. How many were ended."""
    ended = 0
    for instance in instances or []:
        pid, cwd = instance.get("pid"), instance.get("cwd")
        if not isinstance(pid, int) or not cwd:
            continue
        try:
            if os.readlink(f"/proc/{pid}/cwd") != cwd:
                continue
            os.killpg(pid, signal.SIGKILL)
            ended += 1
        except (OSError, ProcessLookupError):
            continue
    return ended


class JobExecution:
    def __init__(self, ctx: JobContext, job_id: str, owner: str, shutdown: threading.Event) -> None:
        self.ctx = ctx
        self.job_id = job_id
        self.owner = owner
        self.shutdown = shutdown
        with ctx.db.read() as s:
            job = repo.by_id(s, job_id)
            if job is None:
                raise LeaseLost(job_id)
            self.name = job.name
            self.project_id = job.project_id
            self.team_id = job.team_id
            self.created_by = job.created_by
            self.spec = JobCreate.model_validate(job.spec)
            self.status = JobStatus(job.status)
            self.attempt = job.attempt
            self.retries = job.retries
            self.run_id = job.run_id
            self.token_key_id = job.token_key_id
            self.phase_times = dict(job.phase_times or {})
            self.request = job.request
            self.instances = job.instances
            self.model_artifact = job.model_artifact
        self.logs = log_dir(ctx.settings, job_id)
        for private in (ctx.settings.jobs_dir, self.logs.parent, self.logs):
            ensure_private_dir(private)
        self.hosts = [f"algo-{i + 1}" for i in range(self.spec.instance_count)]
        self.chaos_interrupts = 0
        self.runtime_used = 0.0
        self._synced: dict[str, FileState] = {}  # checkpoint files as last stored

    # --- writing through the lease -------------------------------------------------------

    def _write(self, **values: Any) -> None:
        with self.ctx.db.transaction() as s:
            if not repo.write_held(s, self.job_id, self.owner, values):
                raise LeaseLost(self.job_id)

    def _move(self, status: JobStatus, reason: str | None = None, **values: Any) -> None:
        self.status = status
        self.phase_times[status.value] = utcnow().isoformat()
        if reason is not None:
            values["reason"] = reason
        self._write(status=status.value, phase_times=dict(self.phase_times), **values)
        log.info("job %s: %s %s", self.name, status.value, reason or "")

    # --- the whole job ---------------------------------------------------------------------

    def run(self) -> None:
        """Drive the job to a terminal status, or hand it back (shutdown, lease lost)."""
        try:
            self._adopt()
            while not self.status.terminal:
                outcome = self._attempt()
                if outcome is None:  # handed back: shutdown
                    return
                if not self._continue_after(outcome):
                    self._finish(outcome)
        except LeaseLost:
            log.warning("job %s: lease lost; another controller has it", self.name)
        except Exception as exc:  # a platform fault must not leave the job Running forever
            log.exception("job %s: controller error", self.name)
            with contextlib.suppress(LeaseLost):
                self._finish(Outcome(JobStatus.FAILED, f"InternalError: {exc}"))

    def _adopt(self) -> None:
        """Pick up where a previous controller stopped."""
        ended = end_leftovers(self.instances)
        if ended:
            self._note_all(f"ended {ended} instance(s) left by a stopped controller")
        if self.status == JobStatus.STOPPING or self.request == "stop":
            self._finish(Outcome(JobStatus.STOPPED, "Stopped: stopped by request"))
            return
        if self.status in (JobStatus.PENDING, JobStatus.INTERRUPTED, JobStatus.RESUMING):
            return
        self._move(
            JobStatus.INTERRUPTED,
            "Interrupted: the controller running the job stopped; resuming from the last "
            "checkpoint",
            instances=None,
        )

    def _continue_after(self, outcome: Outcome) -> bool:
        """Start another attempt if the outcome allows one; False if the job ends."""
        if outcome.status == JobStatus.INTERRUPTED:
            self._move(JobStatus.INTERRUPTED, outcome.reason, request=None, instances=None)
            return True
        if outcome.retryable and self.retries < self.spec.max_retries:
            self.retries += 1
            self.attempt += 1
            reason = f"{outcome.reason}\nRetrying ({self.retries}/{self.spec.max_retries})."
            self._move(
                JobStatus.RESUMING,
                reason,
                retries=self.retries,
                attempt=self.attempt,
                instances=None,
            )
            return True
        return False

    def _finish(self, outcome: Outcome) -> None:
        """The terminal write: status, reason, run status, key revoked, lease released."""
        run_status = {
            JobStatus.COMPLETED: tracking_schemas.RunStatus.FINISHED,
            JobStatus.STOPPED: tracking_schemas.RunStatus.KILLED,
        }.get(outcome.status, tracking_schemas.RunStatus.FAILED)
        self.status = outcome.status
        self.phase_times[outcome.status.value] = utcnow().isoformat()
        with self.ctx.db.transaction() as s:
            done = repo.write_held(
                s,
                self.job_id,
                self.owner,
                {
                    "status": outcome.status.value,
                    "reason": outcome.reason,
                    "phase_times": dict(self.phase_times),
                    "instances": None,
                    "lease_owner": None,
                    "lease_until": None,
                },
            )
            if not done:
                raise LeaseLost(self.job_id)
            if self.run_id:
                update = tracking_schemas.RunUpdate(status=run_status)
                with contextlib.suppress(ShipyardError):
                    self.ctx.tracking.update_run(s, self.project_id, self.run_id, update)
            if self.token_key_id:
                self.ctx.identity.revoke_workload_key(s, self.token_key_id)
            self._emit_end(s, outcome)
        log.info("job %s: %s %s", self.name, outcome.status.value, outcome.reason[:200])

    def _emit_end(self, s: Any, outcome: Outcome) -> None:
        """``job.completed`` / ``job.failed`` / ``job.stopped``, with the terminal write."""
        self.ctx.events.emit(
            s,
            project_id=self.project_id,
            type=f"job.{outcome.status.value.lower()}",
            subject=f"job:{self.name}",
            data={
                "name": self.name,
                "status": outcome.status.value,
                "reason": outcome.reason[:EVENT_REASON_CHARS],
                "run_id": self.run_id,
                "model_artifact": self.model_artifact,
            },
            actor="system",
        )

    def release(self, reason: str) -> None:
        """Hand the job back, resumable, without ending it (the platform is stopping)."""
        self._move(JobStatus.INTERRUPTED, reason, lease_owner=None, lease_until=None)

    # --- one attempt -----------------------------------------------------------------------

    def _attempt(self) -> Outcome | None:
        if self.status == JobStatus.INTERRUPTED:  # a new attempt, not a retry
            self.attempt += 1
            self._move(JobStatus.RESUMING, attempt=self.attempt)
        if self.status == JobStatus.RESUMING:
            self._note_all(f"--- attempt {self.attempt} ---")
        env = self._start()
        self._move(JobStatus.DOWNLOADING)
        try:
            cluster = self._launch(env)
        except IsolationRefused as exc:
            return Outcome(JobStatus.FAILED, f"NetworkIsolationUnavailable: {exc}")
        except (OSError, RuntimeError, TimeoutError) as exc:  # no capacity, cluster unreachable
            return Outcome(JobStatus.FAILED, f"LaunchFailed: {exc}", retryable=True)
        try:
            try:
                cluster.prepare()
            except (InstanceError, OSError, ShipyardError, RuntimeError) as exc:
                return Outcome(JobStatus.FAILED, f"DownloadFailed: {exc}", retryable=True)
            if self._requested() == "stop":
                return Outcome(JobStatus.STOPPED, "Stopped: stopped by request")
            started = cluster.start()
            self._move(JobStatus.RUNNING, instances=started)
            return self._watch(cluster)
        finally:
            self._store_logs()
            cluster.close()

    def _start(self) -> dict[str, str]:
        """Starting: the run (first attempt), a fresh job key; the platform's variables."""
        self._move(JobStatus.STARTING)
        with self.ctx.db.transaction() as s:
            names = self.ctx.identity.project_names(s, self.project_id)
            if names is None:
                raise LeaseLost(self.job_id)
            if self.run_id is None:
                self.run_id = self._create_run(s).id
                self._record_inputs(s, self.run_id)
            if self.token_key_id:
                self.ctx.identity.revoke_workload_key(s, self.token_key_id)
            expires = utcnow() + timedelta(seconds=self.spec.max_runtime_s) + KEY_SLACK
            key = self.ctx.identity.issue_workload_key(
                s,
                username=self.created_by,
                team_id=self.team_id,
                project_id=self.project_id,
                role=Role.SCIENTIST,
                name=f"job {self.name} attempt {self.attempt}",
                expires_at=expires,
            )
            self.token_key_id = key.row.key_id
            held = repo.write_held(
                s,
                self.job_id,
                self.owner,
                {"run_id": self.run_id, "token_key_id": self.token_key_id},
            )
            if not held:
                raise LeaseLost(self.job_id)
        self.team_name, self.project_name = names
        return {
            "SHIPYARD_URL": self.ctx.settings.api_url,
            "SHIPYARD_API_KEY": key.token,
            "SHIPYARD_PROJECT": f"{names[0]}/{names[1]}",
            "SHIPYARD_RUN_ID": self.run_id,
            "SHIPYARD_JOB_NAME": self.name,
        }

    def _create_run(self, s: Any) -> Any:
        body = tracking_schemas.RunCreate(
            experiment=JOBS_EXPERIMENT,
            name=self.name,
            params={k: str(v)[:6000] for k, v in self.spec.hyperparameters.items()},
            tags={
                "shipyard.job": self.name,
                "shipyard.instance_type": self.spec.instance_type,
                "shipyard.instance_count": str(self.spec.instance_count),
                **{k: v[:5000] for k, v in self.spec.tags.items()},
            },
        )
        return self.ctx.tracking.create_run(s, self.project_id, body, self.created_by)

    def _record_inputs(self, s: Any, run_id: str) -> None:
        """Lineage: the job's run read these dataset versions (one per channel)."""
        for channel, where in self.spec.channels.items():
            if where.source == "dataset" and where.version:
                body = tracking_schemas.DatasetInput(
                    dataset=where.name, version=where.version, context=channel
                )
                self.ctx.tracking.record_input(s, self.project_id, run_id, body)

    def _launch(self, platform_env: dict[str, str]) -> Cluster:
        fetches = self._fetches()
        instance_type = self.ctx.catalog.get(self.spec.instance_type)
        memory = instance_type.memory_mib * 1024 * 1024 if instance_type.memory_mib else None
        spec = self.spec

        def build(master_addr: str, master_port: int) -> list[InstanceSpec]:
            return [
                InstanceSpec(
                    job_name=self.name,
                    placement=runtime.Placement(
                        hosts=tuple(self.hosts),
                        current_host=host,
                        rank=rank,
                        local_rank=0,
                        master_addr=master_addr,
                        master_port=master_port,
                        num_cpus=instance_type.cpus,
                    ),
                    entry_point=spec.entry_point,
                    hyperparameters=dict(spec.hyperparameters),
                    arguments=list(spec.arguments),
                    environment={**spec.environment, **platform_env},
                    source=fetches["source"][0] if fetches["source"] else None,
                    channels=fetches["channels"],
                    checkpoints=fetches["checkpoints"],
                    requirements=spec.requirements,
                    memory_bytes=memory,
                    cpus=instance_type.cpus,
                    attempt=self.attempt,
                )
                for rank, host in enumerate(self.hosts)
            ]

        work_dir = self.ctx.settings.jobs_dir / self.job_id
        return self.ctx.backend.launch(
            work_dir,
            build,
            [self.logs / f"{host}.log" for host in self.hosts],
            isolate_network=spec.network_isolation,
        )

    def _fetches(self) -> dict[str, Any]:
        """Presigned downloads of the source, each channel's files and the checkpoints."""
        artifacts = self.ctx.artifacts
        with self.ctx.db.read() as s:
            source = []
            if self.spec.source:
                row = artifacts.find(s, self.project_id, self.spec.source, self.spec.source_version)
                source.append(self._fetch(row, "source.tar.gz"))
            channels = {
                channel: [
                    self._fetch(row, name)
                    for row, name in self.ctx.jobs.channel_files(
                        s, self.project_id, where, field=f"inputs.{channel}"
                    )
                ]
                for channel, where in self.spec.channels.items()
            }
            prefix = f"{job_prefix(self.name)}/checkpoints/"
            checkpoints = []
            if self.spec.checkpointing:
                for row in artifacts.list_latest(s, self.project_id, prefix, 100_000):
                    checkpoints.append(self._fetch(row, row.path.removeprefix(prefix)))
                    self._synced[row.path.removeprefix(prefix)] = FileState(-1, -1)
        return {"source": source, "channels": channels, "checkpoints": checkpoints}

    def _fetch(self, row: ArtifactVersion, dest: str) -> Fetch:
        url = self.ctx.artifacts.presign(
            row,
            base_url=self.ctx.settings.api_url,
            team=self.team_name,
            project=self.project_name,
            expires_in=PRESIGN_S,
        ).url
        return Fetch(dest=dest, url=url)

    # --- while it runs ---------------------------------------------------------------------

    def _watch(self, cluster: Cluster) -> Outcome | None:
        """Follow the attempt until its instances end or something ends them."""
        extractor = self._extractor()
        points: list[tuple[str, float, int, int | None]] = []
        started = time.monotonic()
        last_request = last_flush = last_sync = started
        chaos_rate = self.ctx.settings.spot_interruptions_per_hour if self.spec.spot else 0.0
        try:
            while True:
                now = time.monotonic()
                self._collect_metrics(cluster, extractor, points)
                if now - last_flush >= FLUSH_METRICS_S:
                    self._flush_metrics(points)
                    last_flush = now
                codes = cluster.poll()
                if all(code is not None for code in codes) or any(c for c in codes if c):
                    return self._ended(cluster, codes, extractor, points)
                if (
                    self.spec.checkpointing
                    and now - last_sync >= self.ctx.settings.checkpoint_sync_s
                ):
                    self._sync_checkpoints(cluster)
                    last_sync = now
                if now - last_request >= CHECK_REQUESTS_S:
                    last_request = now
                    request = self._requested()
                    if request == "stop":
                        return self._stop(cluster, "Stopped: stopped by request")
                    if request == "interrupt":
                        return self._interrupt(cluster, "Interrupted: interrupted on request")
                if self.runtime_used + (now - started) > self.spec.max_runtime_s:
                    return self._stop(
                        cluster,
                        f"MaxRuntimeExceeded: the job ran longer than "
                        f"max_runtime_s={self.spec.max_runtime_s}",
                    )
                if self._chaos_strikes(chaos_rate):
                    return self._interrupt(
                        cluster, "Interrupted: spot capacity reclaimed (chaos setting)"
                    )
                if self.shutdown.is_set():
                    self._hand_back(cluster)
                    return None
                time.sleep(TICK_S)
        finally:
            self.runtime_used += time.monotonic() - started
            # what the instances printed before they were stopped or reclaimed still counts
            self._collect_metrics(cluster, extractor, points)
            self._flush_metrics(points)

    def _extractor(self) -> LogMetricExtractor:
        """Steps continue after what earlier attempts logged, so a resumed job's points
        follow its first attempt's rather than overwrite them."""
        definitions = compile_definitions([d.model_dump() for d in self.spec.metric_definitions])
        start: dict[str, int] = {}
        if self.run_id is not None:
            with self.ctx.db.read() as s:
                for definition in definitions:
                    series = self.ctx.tracking.series(
                        s, self.project_id, self.run_id, definition.name
                    )
                    if series is not None:
                        start[definition.name] = series.latest_step + 1
        return LogMetricExtractor(definitions, start)

    def _collect_metrics(
        self,
        cluster: Cluster,
        extractor: LogMetricExtractor,
        points: list[tuple[str, float, int, int | None]],
    ) -> None:
        """Metric definitions read the leader's log (``algo-1``), as each line arrives."""
        for host, lines in cluster.pump_logs().items():
            if host != self.hosts[0]:
                continue
            for line in lines:
                if line.startswith("[shipyard]"):
                    continue
                points.extend((p.name, p.value, p.step, None) for p in extractor.feed(line))

    def _flush_metrics(self, points: list[tuple[str, float, int, int | None]]) -> None:
        if not points or self.run_id is None:
            return
        batch = list(points)
        points.clear()
        with self.ctx.db.transaction() as s:
            self.ctx.tracking.log_points(s, self.run_id, batch)

    def _chaos_strikes(self, per_hour: float) -> bool:
        if per_hour <= 0 or self.chaos_interrupts >= MAX_CHAOS_INTERRUPTS:
            return False
        if random.random() < per_hour * TICK_S / 3600:
            self.chaos_interrupts += 1
            return True
        return False

    def _requested(self) -> str | None:
        with self.ctx.db.read() as s:
            job = repo.by_id(s, self.job_id)
            if job is None or job.lease_owner != self.owner:
                raise LeaseLost(self.job_id)
            self.request = job.request
            return job.request

    def _ended(
        self,
        cluster: Cluster,
        codes: list[int | None],
        extractor: LogMetricExtractor,
        points: list[tuple[str, float, int, int | None]],
    ) -> Outcome:
        """Every instance exited, or one failed (the others are then stopped)."""
        failed = next((i for i, code in enumerate(codes) if code), None)
        if failed is not None:
            if any(code is None for code in codes):
                cluster.stop(grace_s=5.0)
            self._collect_metrics(cluster, extractor, points)
            self._flush_metrics(points)
            if self.spec.checkpointing:  # the process is gone: its files are complete
                self._sync_checkpoints(cluster)
            return Outcome(
                JobStatus.FAILED, self._failure_reason(cluster, failed, codes[failed]), True
            )
        self._collect_metrics(cluster, extractor, points)
        self._flush_metrics(points)
        if self.spec.checkpointing:
            self._sync_checkpoints(cluster)
        self._move(JobStatus.UPLOADING)
        try:
            self._upload_results(cluster)
        except (OSError, ShipyardError, RuntimeError) as exc:  # e.g. a remote instance lost
            return Outcome(JobStatus.FAILED, f"UploadFailed: {exc}", retryable=True)
        return Outcome(JobStatus.COMPLETED)

    def _failure_reason(self, cluster: Cluster, index: int, code: int | None) -> str:
        host = self.hosts[index]
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"code {code}"
        parts = [f"AlgorithmError: {host} exited with {how}"]
        failure = cluster.failure_text(index)
        if failure:
            parts.append(f"Failure reason: {failure}")
        lines = tail_lines(self.logs / f"{host}.log", FAILURE_LOG_LINES)
        parts.append(f"Last {len(lines)} log lines of {host}:\n" + "\n".join(lines))
        return "\n".join(parts)

    def _stop(self, cluster: Cluster, reason: str) -> Outcome:
        """SIGTERM, grace, SIGKILL; the checkpoints written meanwhile are kept."""
        self._move(JobStatus.STOPPING)
        self._note_all("stopping: SIGTERM, then SIGKILL after the grace period")
        cluster.stop(self.ctx.settings.job_stop_grace_s)
        if self.spec.checkpointing:
            self._sync_checkpoints(cluster)
        return Outcome(JobStatus.STOPPED, reason)

    def _interrupt(self, cluster: Cluster, reason: str) -> Outcome:
        """Like a spot reclaim: the instances die at once; only what was synced survives."""
        self._note_all("interrupted: instances reclaimed; the job resumes from its checkpoint")
        cluster.kill()
        return Outcome(JobStatus.INTERRUPTED, reason)

    def _hand_back(self, cluster: Cluster) -> None:
        """The platform is stopping: end the instances gently, keep their checkpoints and
        leave the job Interrupted for whichever controller starts next."""
        self._note_all("the platform is stopping: the job resumes when it starts again")
        cluster.stop(min(self.ctx.settings.job_stop_grace_s, 10.0))
        if self.spec.checkpointing:
            self._sync_checkpoints(cluster)
        self.release("Interrupted: the platform stopped; the job resumes when it starts")

    def _note_all(self, message: str) -> None:
        for host in self.hosts:
            with open_private_append(self.logs / f"{host}.log") as f:
                f.write(f"[shipyard] {message}\n".encode())

    # --- storing -----------------------------------------------------------------------------

    def _store(self, path: str, data: bytes, content_type: str) -> ArtifactVersion:
        """A new artifact version, from this (non-async) controller thread."""
        return asyncio.run(
            self.ctx.artifacts.upload(
                self.ctx.db,
                self.project_id,
                path,
                _once(data),
                content_type=content_type,
                actor=self.created_by,
            )
        )

    def _sync_checkpoints(self, cluster: Cluster) -> None:
        """Copy new and changed files of the leader's checkpoints/ to the store, and mark
        deleted ones, so a resumed attempt starts from exactly this directory.

        Files still being written are left for the next sync: names that say so (a leading
        dot, ``.tmp``/``.partial``), and any file whose size or mtime changed while it was
        read, so a torn copy is never stored.
        """
        prefix = f"{job_prefix(self.name)}/checkpoints/"
        listed = {
            name: state
            for name, state in cluster.checkpoint_files().items()
            if not _in_progress(name)
        }
        changed = sorted(n for n, st in listed.items() if self._synced.get(n) != st)
        read: dict[str, bytes] = {}
        for relative in changed:
            with contextlib.suppress(OSError):  # replaced meanwhile: the next sync takes it
                read[relative] = cluster.read_file("checkpoints", relative)
        after = cluster.checkpoint_files() if read else listed
        for relative, data in read.items():
            if after.get(relative) != listed[relative]:
                continue  # written to while we read it
            self._store(prefix + relative, data, "application/octet-stream")
            self._synced[relative] = listed[relative]
        for relative in sorted(set(self._synced) - set(after)):
            with self.ctx.db.transaction() as s, contextlib.suppress(ShipyardError):
                self.ctx.artifacts.delete(s, self.project_id, prefix + relative, self.created_by)
            del self._synced[relative]

    def _upload_results(self, cluster: Cluster) -> None:
        base = self.spec.output_path or job_prefix(self.name)
        stored: dict[str, Any] = {"output": []}
        model: str | None = None
        if self.spec.kind == JobKind.TRAINING:
            row = self._store(f"{base}/model.tar.gz", cluster.pack_model(), "application/gzip")
            model = f"{row.path}@{row.version}"
            stored["model"] = model
        for index, host in enumerate(self.hosts):
            where = f"{base}/output" + (f"/{host}" if len(self.hosts) > 1 else "")
            for relative in sorted(cluster.output_files(index)):
                data = cluster.read_file("output", relative, index)
                row = self._store(f"{where}/{relative}", data, "application/octet-stream")
                stored["output"].append(f"{row.path}@{row.version}")
        self._write(model_artifact=model, output_artifacts=stored)
        self.model_artifact = model
        if model and self.run_id:
            with self.ctx.db.transaction() as s:
                batch = tracking_schemas.LogBatch(tags={"shipyard.model": model})
                self.ctx.tracking.log_batch(s, self.project_id, self.run_id, batch)

    def _store_logs(self) -> None:
        """Every instance's log so far, as artifacts (the local files may not outlive the
        machine; the stored copies are what ``logs`` serves once the job is over)."""
        for host in self.hosts:
            path = self.logs / f"{host}.log"
            if path.exists():
                with contextlib.suppress(ShipyardError, OSError):
                    self._store(
                        f"{job_prefix(self.name)}/logs/{host}.log",
                        path.read_bytes(),
                        "text/plain",
                    )


def run_execution(
    ctx: JobContext,
    job_id: str,
    owner: str,
    shutdown: threading.Event,
    done: Callable[[str], None],
) -> None:
    """Thread target: one job until it ends or is handed back."""
    try:
        JobExecution(ctx, job_id, owner, shutdown).run()
    except LeaseLost:
        pass
    except Exception:
        log.exception("job %s: could not start its execution", job_id)
    finally:
        done(job_id)
