"""Driving one endpoint: make its fleets match its spec, publish its routes, deploy safely.

An ``EndpointDriver`` runs in a controller thread while that controller holds the endpoint's
lease; every write goes through the lease (``write_held``), so a driver that lost the lease
changes nothing. The endpoint row and its replica rows are the whole memory: a driver that
adopts the endpoint after a crash keeps the replicas that still run and answer ``/ping``,
ends the others (pid *and* working directory must match, so a reused pid is never killed),
and carries on with the desired counts and the deployment recorded in ``progress``.

Each tick (``TICK_S``): read the row; act on a delete; look at the replicas (starting ones
for ``READY``, ready ones every ``hosting_health_interval_s`` for their process and
``/ping``: a replica that died or failed ``hosting_ping_failures`` pings in a row is taken
out of the routes first, then ended, then replaced); then, by state:

- **creating** (no config serves yet): start the fleet; once every variant has its replicas,
  publish the routes and go InService — or Failed after ``hosting_start_attempts`` failed
  starts (or at once when the model's bytes fail verification);
- **steady** (the wanted config serves): keep counts (manual, autoscaling, serverless);
- **deploying** (the wanted config differs): start the new fleet beside the serving one,
  shift traffic step by step (``plan.traffic_steps``), watch each step; a new fleet that
  fails its health checks or whose error rate (4xx+5xx over invocations of its variants,
  from ``endpoint_traffic``) goes above ``max_error_rate`` sends all traffic back
  (RollingBack, then InService on the old config, the reason saying why); otherwise the old
  fleet is stopped once the new one has all the traffic and baked.

Routes are published (``endpoints.routes``, ``row_version`` bumped) only when they change.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import shutil
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import ColumnElement

from shipyard.config import Settings
from shipyard.db.engine import Database
from shipyard.errors import NotFound, ShipyardError, ValidationFailed, VerificationFailed
from shipyard.events.service import EventService
from shipyard.hosting import plan
from shipyard.hosting.autoscaler import Cooldowns, CpuMeter, RateMeter, wanted_count
from shipyard.hosting.backends.base import Placed, ReplicaBackend, ReplicaExited, ReplicaLaunch
from shipyard.hosting.modelcache import ModelCache, UnsafeArchive
from shipyard.hosting.models import Endpoint, HostedModel, Replica
from shipyard.hosting.repository import hosting_repository as repo
from shipyard.hosting.routes import CaptureRoute, ReplicaRoute
from shipyard.hosting.schemas import (
    DeploymentPolicy,
    EndpointConfigCreate,
    EndpointStatus,
    ReplicaStatus,
    ScalingPolicy,
    VariantSpec,
)
from shipyard.hosting.service import NEVER_SERVED, config_spec, endpoint_event_data, model_label
from shipyard.jobs.catalog import Catalog
from shipyard.kit.files import ensure_private_dir
from shipyard.kit.ids import new_id, utcnow
from shipyard.kit.tls import client_ssl_context
from shipyard.registry.service import RegistryService
from shipyard.storage.service import ArtifactService

log = logging.getLogger("shipyard.hosting")

TICK_S = 0.25
PING_TIMEOUT_S = 1.0
UNHEALTHY_GRACE_S = 1.0  # a replica taken out for failing health gets little time to drain
CAPTURE_PREFIX = "capture"
# Reasons that describe a passing state: cleared once the fleet is whole again.
TRANSIENT_REASONS = ("replacing replicas", "the platform stopped")
_UNSET: Any = object()
_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="hosting-io")

Status = EndpointStatus


@dataclass
class HostingContext:
    """What a driver uses; built once by the controller."""

    settings: Settings
    db: Database
    registry: RegistryService
    artifacts: ArtifactService
    events: EventService
    catalog: Catalog
    backend: ReplicaBackend
    cache: ModelCache


class LeaseLost(Exception):
    """Another controller holds the endpoint now (or it is gone): let go without writing."""


class Gone(Exception):
    """The endpoint's row is gone (deleted behind the controller's back)."""


class Fatal(Exception):
    """A replica of this model can never start (its bytes failed verification, it is gone)."""


@dataclass
class Live:
    """A replica as the driver tracks it."""

    id: str
    config: str
    variant: str
    shadow: bool
    placed: Placed
    status: str
    started: float  # monotonic
    port: int = 0
    failures: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.config, self.variant)

    @property
    def ready(self) -> bool:
        return self.status == ReplicaStatus.READY.value


def _members(spec: EndpointConfigCreate) -> list[tuple[VariantSpec, bool]]:
    found = [(v, False) for v in spec.variants]
    if spec.shadow is not None:
        found.append((spec.shadow, True))
    return found


def _policy(entry: dict[str, Any] | None) -> ScalingPolicy | None:
    fields = {k: v for k, v in (entry or {}).items() if k != "set_count"}
    return ScalingPolicy.model_validate(fields) if fields else None


def _strip(routes: dict[str, Any] | None) -> dict[str, Any] | None:
    if routes is None:
        return None
    return {k: v for k, v in routes.items() if k != "generation"}


class EndpointDriver:
    def __init__(
        self,
        ctx: HostingContext,
        endpoint_id: str,
        owner: str,
        shutdown: threading.Event,
        wake: threading.Event,
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.endpoint_id = endpoint_id
        self.owner = owner
        self.shutdown = shutdown
        self.wake = wake
        self.replicas: dict[str, Live] = {}
        self.progress: dict[str, Any] = {}
        self._written: dict[str, Any] = {}
        self._published: dict[str, Any] | None = None
        self._configs: dict[str, EndpointConfigCreate] = {}
        self._models: dict[str, HostedModel] = {}
        self.start_failures: dict[tuple[str, str], int] = {}
        self.failure_reason: dict[tuple[str, str], str] = {}
        self.fatal: dict[tuple[str, str], str] = {}
        self.backoff: dict[tuple[str, str], float] = {}
        self.deploy_failure: str | None = None
        self.meters: dict[str, RateMeter] = {}
        self.cpu = CpuMeter()
        self.cooldowns: dict[str, Cooldowns] = {}
        self.activity: dict[str, float] = {}
        self.last_health = 0.0
        self.http = httpx.Client(timeout=PING_TIMEOUT_S, verify=client_ssl_context())

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._adopt()
            while True:
                try:
                    if self._tick():
                        return
                except (LeaseLost, Gone):
                    raise
                except Exception:  # the DB may be briefly away; a bug must not kill the fleet
                    log.exception("endpoint %s: a pass failed", self.endpoint_id)
                    time.sleep(1.0)
                self.wake.wait(TICK_S)
                self.wake.clear()
        except (LeaseLost, Gone):
            log.warning("endpoint %s: lease lost or endpoint gone; letting go", self.endpoint_id)
        finally:
            self.http.close()

    def _tick(self) -> bool:
        """One pass; True when the driver is done (deleted, or handed back)."""
        row = self._read()
        if self.shutdown.is_set():
            self._hand_back(row)
            return True
        if row.request == "delete":
            self._teardown(row)
            return True
        self._look(row)
        if row.current_config is None:
            self._create(row)
        elif row.current_config == row.config_name:
            self._steady(row)
        else:
            self._deploy(row)
        return False

    def _read(self) -> Endpoint:
        with self.ctx.db.read() as s:
            row = repo.endpoint_by_id(s, self.endpoint_id)
            if row is None:
                raise Gone(self.endpoint_id)
            if row.lease_owner != self.owner:
                raise LeaseLost(self.endpoint_id)
            s.expunge(row)
            return row

    # --- adopting what a previous controller left ---------------------------------------

    def _adopt(self) -> None:
        row = self._read()
        self.progress = copy.deepcopy(row.progress or {})
        self._written = copy.deepcopy(self.progress)
        self._published = _strip(row.routes)
        with self.ctx.db.read() as s:
            rows = repo.replicas(s, row.id)
        kept, ended = 0, []
        now = time.monotonic()
        for replica in rows:
            placed = Placed(replica.host, replica.pid, replica.cwd)
            alive = self.ctx.backend.alive(placed)
            ready = replica.status == ReplicaStatus.READY.value and replica.port > 0
            if alive and ready and self._ping(placed.host, replica.port):
                self._track(replica, placed, ReplicaStatus.READY.value, now)
                kept += 1
            elif alive and replica.status == ReplicaStatus.STARTING.value:
                age = (utcnow() - replica.started_at).total_seconds()
                self._track(replica, placed, ReplicaStatus.STARTING.value, now - age)
                kept += 1
            else:
                ended.append(
                    Live(
                        replica.id,
                        replica.config_name,
                        replica.variant,
                        replica.shadow,
                        placed,
                        ReplicaStatus.STOPPING.value,
                        now,
                    )
                )
        self._end(ended, UNHEALTHY_GRACE_S)
        now = time.monotonic()
        self.activity = dict.fromkeys(self._variant_names(row), now)
        if rows:
            log.info("endpoint %s: adopted %d replica(s), ended %d", row.name, kept, len(ended))

    def _track(self, replica: Replica, placed: Placed, status: str, started: float) -> None:
        self.replicas[replica.id] = Live(
            replica.id,
            replica.config_name,
            replica.variant,
            replica.shadow,
            placed,
            status,
            started,
            replica.port,
            replica.failures,
        )

    def _variant_names(self, row: Endpoint) -> list[str]:
        name = row.current_config or row.config_name
        with contextlib.suppress(ShipyardError):
            return [v.name for v in self._config(row, name).variants]
        return []

    # --- configs and models ------------------------------------------------------------

    def _config(self, row: Endpoint, name: str) -> EndpointConfigCreate:
        found = self._configs.get(name)
        if found is None:
            with self.ctx.db.read() as s:
                config = repo.config(s, row.project_id, name)
                if config is None:
                    raise NotFound(f"endpoint config {name!r} is gone", field="config_name")
                found = self._configs[name] = config_spec(config)
        return found

    def _model(self, row: Endpoint, name: str) -> HostedModel:
        found = self._models.get(name)
        if found is None:
            with self.ctx.db.read() as s:
                model = repo.model(s, row.project_id, name)
                if model is None:
                    raise Fatal(f"model {name!r} is gone")
                s.expunge(model)
                found = self._models[name] = model
        return found

    def _label(self, row: Endpoint, name: str) -> str:
        try:
            return model_label(self._model(row, name))
        except Fatal:
            return ""

    def _model_dir(self, row: Endpoint, model: HostedModel) -> Path:
        """The model's files, downloaded, verified and extracted once (the cache)."""
        source = model.source
        try:
            if source.get("kind") == "registry":
                with self.ctx.db.read() as s:
                    version = self.ctx.registry.version(
                        s, row.project_id, source["group"], int(source["version"])
                    )
                    s.expunge(version)
                if version.status in NEVER_SERVED:
                    raise Fatal(f"{source['group']} v{source['version']} is {version.status}")
                return self.ctx.cache.version(version).path
            with self.ctx.db.read() as s:
                artifact = self.ctx.artifacts.find(
                    s, row.project_id, source["path"], source.get("version")
                )
                s.expunge(artifact)
            return self.ctx.cache.artifact(artifact).path
        except VerificationFailed as exc:
            raise Fatal(f"verification failed: {exc.message}") from exc
        except UnsafeArchive as exc:
            raise Fatal(f"unsafe model archive: {exc}") from exc
        except NotFound as exc:
            raise Fatal(exc.message) from exc

    # --- replicas ----------------------------------------------------------------------------

    def _start(self, row: Endpoint, config: str, variant: VariantSpec, shadow: bool) -> None:
        key = (config, variant.name)
        try:
            model = self._model(row, variant.model)
            model_dir = self._model_dir(row, model)
            instance_type = self.ctx.catalog.get(variant.instance_type)
        except Fatal as exc:
            self.fatal[key] = str(exc)
            log.warning("endpoint %s: %s: %s", row.name, variant.name, exc)
            return
        except ValidationFailed as exc:  # the catalog changed under the config
            self.fatal[key] = exc.message
            return
        except (ShipyardError, OSError) as exc:  # the store is away: a failed start, retried
            self._start_failed(key, f"could not fetch the model: {exc}")
            return
        replica_id = new_id()
        ensure_private_dir(self.settings.endpoints_dir)
        ensure_private_dir(self.settings.endpoints_dir / row.id)
        launch = ReplicaLaunch(
            model_dir=model_dir,
            flavor=model.flavor,
            model_version=model_label(model),
            predict=model.predict,
            work_dir=self.settings.endpoints_dir / row.id / replica_id,
            cpus=instance_type.cpus,
            memory_mib=instance_type.memory_mib,
            environment=dict(model.environment or {}),
        )
        try:
            placed = self.ctx.backend.start(launch)
        except (ReplicaExited, OSError) as exc:
            self._start_failed(key, f"could not start a replica: {exc}")
            return
        with self.ctx.db.transaction() as s:
            repo.add_replica(
                s,
                Replica(
                    id=replica_id,
                    endpoint_id=row.id,
                    config_name=config,
                    variant=variant.name,
                    shadow=shadow,
                    status=ReplicaStatus.STARTING.value,
                    host=placed.host,
                    port=0,
                    pid=placed.pid,
                    cwd=placed.cwd,
                ),
            )
        self.replicas[replica_id] = Live(
            replica_id,
            config,
            variant.name,
            shadow,
            placed,
            ReplicaStatus.STARTING.value,
            time.monotonic(),
        )

    def _start_failed(self, key: tuple[str, str], reason: str) -> None:
        count = self.start_failures.get(key, 0) + 1
        self.start_failures[key] = count
        self.failure_reason[key] = reason
        self.backoff[key] = time.monotonic() + min(30.0, 0.5 * 2 ** (count - 1))
        log.warning("replica of %s/%s failed to start (%d): %s", *key, count, reason)

    def _ping(self, host: str, port: int) -> bool:
        try:
            return self.http.get(f"http://{host}:{port}/ping").status_code == 200
        except httpx.HTTPError:
            return False

    def _look(self, row: Endpoint) -> None:
        """Starting replicas: READY yet? Ready ones, every health interval: alive, answering?"""
        failed: list[tuple[Live, str]] = []
        now = time.monotonic()
        for live in [r for r in self.replicas.values() if r.status == ReplicaStatus.STARTING]:
            self._look_starting(live, now, failed)
        if now - self.last_health >= self.settings.hosting_health_interval_s:
            self.last_health = now
            self._look_ready(now, failed)
        if not failed:
            return
        deploy = self.progress.get("deploy") or {}
        for live, reason in failed:
            log.warning("endpoint %s: replica %s: %s", row.name, live.id[:8], reason)
            if live.ready and live.config == deploy.get("target"):
                self.deploy_failure = f"the new fleet failed its health checks: {reason}"
        self._remove(row, [live for live, _ in failed], UNHEALTHY_GRACE_S)

    def _look_starting(self, live: Live, now: float, failed: list[tuple[Live, str]]) -> None:
        try:
            port = self.ctx.backend.ready_port(live.placed)
        except ReplicaExited as exc:
            self._start_failed(live.key, str(exc))
            failed.append((live, f"failed to start: {exc}"))
            return
        if port is None or not self._ping(live.placed.host, port):
            if now - live.started > self.settings.hosting_start_timeout_s:
                reason = (
                    f"no READY within hosting_start_timeout_s="
                    f"{self.settings.hosting_start_timeout_s:g}s"
                )
                self._start_failed(live.key, reason)
                failed.append((live, reason))
            return
        live.status, live.port = ReplicaStatus.READY.value, port
        self.start_failures.pop(live.key, None)
        self.activity[live.variant] = now
        with self.ctx.db.transaction() as s:
            repo.update_replica(
                s, live.id, {"status": live.status, "port": port, "ready_at": utcnow()}
            )

    def _look_ready(self, now: float, failed: list[tuple[Live, str]]) -> None:
        ready = [r for r in self.replicas.values() if r.ready]
        answers = list(_pool.map(lambda r: self._ping(r.placed.host, r.port), ready))
        for live, ok in zip(ready, answers, strict=True):
            if not self.ctx.backend.alive(live.placed):
                tail = self.ctx.backend.log_tail(live.placed, 3)
                failed.append((live, f"its process exited ({tail or 'no output'})"))
                continue
            failures = 0 if ok else live.failures + 1
            if failures != live.failures:  # written only when it changes
                live.failures = failures
                with self.ctx.db.transaction() as s:
                    repo.update_replica(s, live.id, {"failures": failures})
            if live.failures >= self.settings.hosting_ping_failures:
                failed.append((live, f"failed {live.failures} pings in a row"))
                continue
            self.cpu.add(now, live.id, self.ctx.backend.cpu_seconds(live.placed))

    def _remove(self, row: Endpoint, victims: Sequence[Live], grace_s: float) -> None:
        """Out of the routes first, then ended and forgotten."""
        if not victims:
            return
        for live in victims:
            live.status = ReplicaStatus.STOPPING.value
        self._commit(row)
        self._end(victims, grace_s)

    def _end(self, victims: Sequence[Live], grace_s: float) -> None:
        list(_pool.map(lambda live: self.ctx.backend.stop(live.placed, grace_s), victims))
        with self.ctx.db.transaction() as s:
            repo.delete_replicas(s, [live.id for live in victims])
        root = self.settings.endpoints_dir.resolve()
        for live in victims:
            self.replicas.pop(live.id, None)
            self.cpu.forget(live.id)
            work_dir = Path(live.placed.cwd).resolve()
            if work_dir.is_relative_to(root) and work_dir != root:  # never what a row says
                shutil.rmtree(work_dir, ignore_errors=True)

    def _live(self, key: tuple[str, str]) -> list[Live]:
        return [
            r
            for r in self.replicas.values()
            if r.key == key and r.status != ReplicaStatus.STOPPING.value
        ]

    def _ready_count(self, key: tuple[str, str]) -> int:
        return sum(r.ready for r in self._live(key))

    # --- fleets ------------------------------------------------------------------------------

    def _counts(self, row: Endpoint, config: str) -> dict[str, int]:
        """The desired counts of a fleet, seeded from the config the first time."""
        fleets: dict[str, dict[str, int]] = self.progress.setdefault("fleets", {})
        if config not in fleets:
            spec = self._config(row, config)
            counts = {}
            for variant, _ in _members(spec):
                count = variant.initial_instance_count
                policy = _policy((row.autoscaling or {}).get(variant.name))
                if policy is not None:
                    count = max(policy.min_instance_count, min(policy.max_instance_count, count))
                counts[variant.name] = count
            fleets[config] = counts
        return fleets[config]

    def _ensure(self, row: Endpoint, config: str) -> None:
        """Start or stop replicas until each variant of the fleet has its desired count."""
        counts = self._counts(row, config)
        now = time.monotonic()
        for variant, shadow in _members(self._config(row, config)):
            key = (config, variant.name)
            want = counts.get(variant.name, 0)
            live = self._live(key)
            if len(live) < want:
                if key in self.fatal or now < self.backoff.get(key, 0.0):
                    continue
                for _ in range(want - len(live)):
                    self._start(row, config, variant, shadow)
            elif len(live) > want:
                # the starting ones first, then the newest: the oldest have the warmest caches
                extra = sorted(live, key=lambda r: (r.ready, -r.started))[: len(live) - want]
                self._remove(row, extra, self.settings.hosting_stop_grace_s)

    def _complete(self, row: Endpoint, config: str) -> bool:
        counts = self._counts(row, config)
        return all(
            self._ready_count((config, v.name)) >= counts.get(v.name, 0)
            for v, _ in _members(self._config(row, config))
        )

    def _problem(self, row: Endpoint, config: str) -> str | None:
        """Why the fleet cannot come up, if it cannot (fatal, or too many failed starts)."""
        for variant, _ in _members(self._config(row, config)):
            key = (config, variant.name)
            if key in self.fatal:
                return f"variant {variant.name}: {self.fatal[key]}"
            if self.start_failures.get(key, 0) >= self.settings.hosting_start_attempts:
                return (
                    f"variant {variant.name}: {self.start_failures[key]} failed starts; "
                    f"last: {self.failure_reason.get(key, '')}"
                )
        return None

    def _drop_fleet(self, row: Endpoint, config: str, grace_s: float) -> None:
        victims = [r for r in self.replicas.values() if r.config == config]
        self._remove(row, victims, grace_s)
        self.progress.get("fleets", {}).pop(config, None)
        for key in [k for k in {*self.fatal, *self.start_failures} if k[0] == config]:
            self.fatal.pop(key, None)
            self.start_failures.pop(key, None)
            self.backoff.pop(key, None)

    # --- creating ----------------------------------------------------------------------------

    def _create(self, row: Endpoint) -> None:
        config = row.config_name
        if self.progress.get("failed") == config and row.status == Status.FAILED.value:
            return  # stays Failed until a new config (or a retry) is asked for
        self.progress.pop("failed", None)
        if row.status != Status.CREATING.value:
            self._commit(row, status=Status.CREATING.value, reason="")
        self._ensure(row, config)
        problem = self._problem(row, config)
        if problem is not None:
            self._drop_fleet(row, config, UNHEALTHY_GRACE_S)
            self.progress["failed"] = config
            self._commit(row, status=Status.FAILED.value, reason=problem, event="failed")
            return
        if self._complete(row, config):
            self._commit(
                row, status=Status.IN_SERVICE.value, reason="", current=config, event="in_service"
            )
            return
        self._commit(row)

    # --- steady state ------------------------------------------------------------------------

    def _steady(self, row: Endpoint) -> None:
        config = row.config_name
        leftovers = [
            r
            for r in self.replicas.values()
            if r.config != config and r.status != ReplicaStatus.STOPPING.value
        ]
        if leftovers:  # a deployment interrupted by a restart left its fleet
            self._remove(row, leftovers, UNHEALTHY_GRACE_S)
            self.progress.pop("deploy", None)
            for name in [n for n in self.progress.get("fleets", {}) if n != config]:
                self.progress["fleets"].pop(name)
        self._scale(row, config)
        self._ensure(row, config)
        reason = None
        problem = self._problem(row, config)
        if problem is not None:
            reason = f"replacing replicas: {problem}"
        elif row.reason.startswith(TRANSIENT_REASONS) and self._complete(row, config):
            reason = ""
        if row.status != Status.IN_SERVICE.value:
            self._commit(row, status=Status.IN_SERVICE.value, reason=reason or "")
        else:
            self._commit(row, reason=reason)

    def _scale(self, row: Endpoint, config: str) -> None:
        """Manual counts, target tracking and serverless scale-to-zero, for the serving fleet."""
        counts = self._counts(row, config)
        scaling = row.autoscaling or {}
        applied: dict[str, str] = self.progress.setdefault("applied", {})
        spec = self._config(row, config)
        traffic: dict[str, tuple[int, int, int]] | None = None
        wanted: dict[str, Any] | None = None
        now = time.monotonic()
        for variant in spec.variants:
            name = variant.name
            entry = scaling.get(name) or {}
            policy = _policy(entry)
            request = entry.get("set_count")
            if request and applied.get(name) != request["id"]:
                applied[name] = request["id"]
                count = int(request["count"])
                if policy is not None:
                    count = max(policy.min_instance_count, min(policy.max_instance_count, count))
                counts[name] = count
                self.cooldowns.setdefault(name, Cooldowns()).last_out = now
                self.activity[name] = now
                continue
            if policy is None and variant.serverless is None:
                continue
            if traffic is None:
                with self.ctx.db.read() as s:
                    traffic = repo.traffic(s, row.id)
                    wanted = (
                        repo.wanted(s, row.id) if any(v.serverless for v in spec.variants) else {}
                    )
            meter = self.meters.setdefault(name, RateMeter(self.settings.hosting_metrics_window_s))
            meter.add(now, traffic.get(name, (0, 0, 0))[0])
            if meter.last_increase is not None:
                self.activity[name] = max(self.activity.get(name, now), meter.last_increase)
            if variant.serverless is not None:
                self._serverless(row, config, variant, policy, counts, meter, wanted or {}, now)
            elif policy is not None:
                self._target_tracking(config, name, policy, counts, meter, now)

    def _target_tracking(
        self,
        config: str,
        name: str,
        policy: ScalingPolicy,
        counts: dict[str, int],
        meter: RateMeter,
        now: float,
        floor: int = 0,
    ) -> None:
        current = counts.get(name, 0)
        ready = [r.id for r in self._live((config, name)) if r.ready]
        cpu = self.cpu.total(ready) if policy.target_cpu_percent is not None else None
        wanted = max(floor, wanted_count(policy, current, meter.per_minute(), cpu))
        decided = self.cooldowns.setdefault(name, Cooldowns()).decide(policy, current, wanted, now)
        if decided != current:
            log.info(
                "endpoint variant %s: %d -> %d replicas (%.1f invocations/min, cpu %s)",
                name,
                current,
                decided,
                meter.per_minute() or 0.0,
                f"{cpu:.0f}%" if cpu is not None else "-",
            )
            counts[name] = decided

    def _serverless(
        self,
        row: Endpoint,
        config: str,
        variant: VariantSpec,
        policy: ScalingPolicy | None,
        counts: dict[str, int],
        meter: RateMeter,
        wanted: dict[str, Any],
        now: float,
    ) -> None:
        assert variant.serverless is not None
        name = variant.name
        mark = wanted.get(name)
        if counts.get(name, 0) == 0:
            if mark is not None:  # a request waits: a cold start
                counts[name] = max(1, policy.min_instance_count if policy else 1)
                self.activity[name] = now
                log.info("endpoint %s: cold start of serverless variant %s", row.name, name)
            return
        if mark is not None and self._ready_count((config, name)) > 0:
            with self.ctx.db.transaction() as s:
                repo.clear_wanted(s, row.id, name, mark)
        idle = now - self.activity.get(name, now)
        if mark is None and idle >= variant.serverless.idle_timeout_s:
            log.info(
                "endpoint %s: serverless variant %s idle for %.0fs: to zero", row.name, name, idle
            )
            counts[name] = 0
            return
        if policy is not None:
            self._target_tracking(config, name, policy, counts, meter, now, floor=1)

    # --- deploying ---------------------------------------------------------------------------

    def _deploy(self, row: Endpoint) -> None:
        serving, target = row.current_config, row.config_name
        assert serving is not None
        deploy = self.progress.get("deploy")
        if not deploy or deploy.get("target") != target:
            deploy = self._begin(row, deploy)
        policy = DeploymentPolicy.model_validate(deploy["policy"])
        self._ensure(row, serving)
        self._ensure(row, target)
        if self.deploy_failure is not None:
            self._rollback(row, self.deploy_failure)
            return
        if deploy["phase"] == "starting":
            problem = self._problem(row, target)
            if problem is not None:
                self._rollback(row, f"the new fleet failed to start: {problem}")
            elif self._complete(row, target):
                self._shift(row, deploy, policy, 0)
            else:
                self._commit(row)
            return
        if plan.watches_errors(policy) and self._too_many_errors(row, deploy, policy):
            return
        steps = plan.traffic_steps(policy)
        _, wait = steps[deploy["step"]]
        if time.time() - deploy["step_at"] < wait:
            self._commit(row)
        elif deploy["step"] + 1 < len(steps):
            self._shift(row, deploy, policy, deploy["step"] + 1)
        else:
            self._finish(row, serving, target)

    def _begin(self, row: Endpoint, previous: dict[str, Any] | None) -> dict[str, Any]:
        """A new deployment (a newer config replaces one under way: its fleet goes)."""
        if previous and previous.get("target") not in (row.current_config, row.config_name):
            self._drop_fleet(row, previous["target"], UNHEALTHY_GRACE_S)
        policy = DeploymentPolicy.model_validate(row.deployment or {})
        deploy = {
            "target": row.config_name,
            "phase": "starting",
            "step": -1,
            "share": 0.0,
            "policy": policy.model_dump(mode="json"),
            "started_at": time.time(),
        }
        self.progress["deploy"] = deploy
        self.progress.get("fleets", {}).pop(row.config_name, None)
        self.deploy_failure = None
        self._commit(
            row,
            status=Status.UPDATING.value,
            reason=f"starting the fleet of {row.config_name} ({policy.strategy.value})",
        )
        return deploy

    def _shift(
        self, row: Endpoint, deploy: dict[str, Any], policy: DeploymentPolicy, step: int
    ) -> None:
        share, wait = plan.traffic_steps(policy)[step]
        if "baseline" not in deploy:
            with self.ctx.db.read() as s:
                deploy["baseline"] = {k: list(v) for k, v in repo.traffic(s, row.id).items()}
        deploy.update(phase="shifting", step=step, share=share, step_at=time.time())
        self._commit(
            row,
            status=Status.UPDATING.value,
            reason=f"{share:.0%} of traffic on {deploy['target']}; watching for {wait:g}s",
        )

    def _too_many_errors(
        self, row: Endpoint, deploy: dict[str, Any], policy: DeploymentPolicy
    ) -> bool:
        names = [v.name for v in self._config(row, deploy["target"]).variants]
        with self.ctx.db.read() as s:
            now = repo.traffic(s, row.id)
        rate, calls, errors = plan.error_rate(deploy.get("baseline", {}), now, names)
        if calls and rate > policy.max_error_rate:
            self._rollback(
                row,
                f"the new fleet's error rate {rate:.1%} ({errors} of {calls} invocations "
                f"answered 4xx/5xx) is above max_error_rate={policy.max_error_rate:g}",
            )
            return True
        return False

    def _finish(self, row: Endpoint, serving: str, target: str) -> None:
        self.progress.pop("deploy", None)
        self.progress.get("fleets", {}).pop(serving, None)  # gone from views with the switch
        self._commit(
            row, status=Status.IN_SERVICE.value, reason="", current=target, event="updated"
        )
        self._drop_fleet(row, serving, self.settings.hosting_stop_grace_s)
        self._commit(row)

    def _rollback(self, row: Endpoint, reason: str) -> None:
        serving, target = row.current_config, row.config_name
        log.warning("endpoint %s: rolling back to %s: %s", row.name, serving, reason)
        deploy = self.progress.get("deploy") or {}
        deploy.update(phase="rolling_back", share=0.0, reason=reason)
        self.progress["deploy"] = deploy
        self._commit(row, status=Status.ROLLING_BACK.value, reason=f"rolling back: {reason}")
        self._drop_fleet(row, target, UNHEALTHY_GRACE_S)
        self.progress.pop("deploy", None)
        self.deploy_failure = None
        done = self._commit(
            row,
            status=Status.IN_SERVICE.value,
            reason=f"rolled back to {serving}: {reason}",
            config_name=serving,
            event="rolled_back",
            conditions=(Endpoint.config_name == target,),
        )
        if not done:  # a newer config was asked for meanwhile: the next tick deploys it
            self._read()
            self._commit(row, reason=f"rolled back from {target}: {reason}")

    # --- writing -------------------------------------------------------------------------

    def _fleet_variants(self, row: Endpoint, config: str) -> list[plan.FleetVariant]:
        spec = self._config(row, config)
        found = []
        for variant, shadow in _members(spec):
            ready = tuple(
                ReplicaRoute(r.id, r.placed.host, r.port)
                for r in sorted(self._live((config, variant.name)), key=lambda r: r.id)
                if r.ready
            )
            found.append(
                plan.FleetVariant(
                    config=config,
                    name=variant.name,
                    weight=variant.initial_weight,
                    model=variant.model,
                    model_version=self._label(row, variant.model),
                    replicas=ready,
                    serverless=variant.serverless is not None,
                    max_concurrency=variant.serverless.max_concurrency if variant.serverless else 0,
                    shadow=shadow,
                )
            )
        return found

    def _route(
        self, row: Endpoint, status: str, current: str | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The route table (as JSON, without its generation) and the weights it gives."""
        serving = current or row.config_name
        deploy = self.progress.get("deploy") or {}
        target = deploy.get("target")
        share = float(deploy.get("share", 0.0)) if target and target != serving else 0.0
        spec = self._config(row, serving)
        capture = spec.data_capture
        inputs = plan.RouteInputs(
            name=row.name,
            team_id=row.team_id,
            project_id=row.project_id,
            environment=row.environment,
            status=status,
            capture=CaptureRoute(
                enabled=capture.enabled,
                sampling_percent=capture.sampling_percent,
                capture_input=capture.capture_input,
                capture_output=capture.capture_output,
                prefix=f"{CAPTURE_PREFIX}/{row.name}",
            ),
            shadow_percent=spec.shadow_percent,
        )
        old = self._fleet_variants(row, serving)
        new = self._fleet_variants(row, target) if share > 0 and target else []
        route = plan.build_route(inputs, old, new, share)
        weights: dict[str, dict[str, float]] = {}
        for fleet, part in ((old, 1.0 - share), (new, share)):
            production = [v for v in fleet if not v.shadow]
            total = sum(v.weight for v in production) or 1.0
            for v in production:
                weights.setdefault(v.config, {})[v.name] = round(v.weight / total * part, 6)
        return _strip(route.to_json()) or {}, weights

    def _commit(
        self,
        row: Endpoint,
        *,
        status: str | None = None,
        reason: str | None = None,
        current: str | None = _UNSET,
        config_name: str | None = None,
        event: str | None = None,
        conditions: Iterable[ColumnElement[bool]] = (),
    ) -> bool:
        """Write what changed (routes, status, reason, progress…) through the lease, with the
        event in the same transaction. False only when ``conditions`` did not hold."""
        values: dict[str, Any] = {}
        new_status = status or row.status
        new_current = row.current_config if current is _UNSET else current
        route, weights = self._route(row, new_status, new_current)
        if route != self._published:
            self.progress["generation"] = int(self.progress.get("generation", 0)) + 1
            self.progress["weights"] = weights
            values["routes"] = {**route, "generation": self.progress["generation"]}
        if new_status != row.status:
            values["status"] = new_status
        if reason is not None and reason != row.reason:
            values["reason"] = reason
        if new_current != row.current_config:
            values["current_config"] = new_current
        if config_name is not None and config_name != row.config_name:
            values["config_name"] = config_name
        if self.progress != self._written:
            values["progress"] = copy.deepcopy(self.progress)
        if not values and event is None:
            return True
        conditions = tuple(conditions)
        with self.ctx.db.transaction() as s:
            if not repo.write_held(s, row.id, self.owner, values, *conditions):
                if conditions:
                    return False
                raise LeaseLost(row.id)
            for name, value in values.items():
                setattr(row, name, value)
            if event is not None:
                self.ctx.events.emit(
                    s,
                    project_id=row.project_id,
                    type=f"endpoint.{event}",
                    subject=f"endpoint:{row.name}",
                    data=endpoint_event_data(row),
                    actor="system",
                )
        self._published = route
        self._written = copy.deepcopy(self.progress)
        return True

    # --- the end -------------------------------------------------------------------------

    def _hand_back(self, row: Endpoint) -> None:
        """The platform is stopping: stop the replicas (unless told to keep them) and let go
        of the lease; the next controller starts them again from the recorded counts."""
        if not self.settings.hosting_keep_replicas_on_stop:
            victims = list(self.replicas.values())
            for live in victims:
                live.status = ReplicaStatus.STOPPING.value
            reason = row.reason
            if victims and row.status == Status.IN_SERVICE.value:
                reason = "the platform stopped; its replicas start again when it does"
            self._commit(row, reason=reason)
            self._end(victims, min(self.settings.hosting_stop_grace_s, 5.0))
        with self.ctx.db.transaction() as s:
            repo.write_held(s, row.id, self.owner, {"lease_owner": None, "lease_until": None})

    def _teardown(self, row: Endpoint) -> None:
        victims = list(self.replicas.values())
        for live in victims:
            live.status = ReplicaStatus.STOPPING.value
        self._commit(row, status=Status.DELETING.value)
        self._end(victims, min(self.settings.hosting_stop_grace_s, 5.0))
        with self.ctx.db.transaction() as s:
            if not repo.delete_held(s, row.id, self.owner):
                raise LeaseLost(row.id)
            self.ctx.events.emit(
                s,
                project_id=row.project_id,
                type="endpoint.deleted",
                subject=f"endpoint:{row.name}",
                data=endpoint_event_data(row),
                actor="system",
            )
        shutil.rmtree(self.settings.endpoints_dir / row.id, ignore_errors=True)
        log.info("endpoint %s: deleted", row.name)
