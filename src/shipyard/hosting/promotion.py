"""Promotion (DESIGN §7): a model version into an environment, as a recorded pipeline.

``POST …/models/{group}/versions/{version}/promote`` checks what it can at once (approval for
staging and prod, a Succeeded staging promotion before prod, the engineer role) and records
the promotion as Running; a runner thread then goes through the steps, each recorded in
``promotions.steps`` with its outcome:

1. ``verify`` — re-hash the stored bytes against the approved manifest (a tampered file is
   named and the promotion fails here);
2. ``deploy`` — create the environment's endpoint (``<group>-<env>`` unless named), or update
   it with a blue/green deployment that bakes ``promotion_bake_s``, and wait for InService;
3. ``test`` — invoke the version's ``example`` payload on a replica of the new fleet: the
   answer must be a prediction shaped as the version's signature says, and the median
   latency must stay within ``promotion_latency_budget_ms``;
4. on failure after the deploy, ``rollback`` — an endpoint this promotion created is
   deleted; an updated one is put back on the config it served before.

A runner beats (``updated_at``) every few seconds; a Running promotion whose beat stopped —
its process died — is marked Failed by the next controller, so none stays Running forever.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import threading
import time
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.orm import Session

from shipyard.errors import ShipyardError
from shipyard.hosting import schemas
from shipyard.hosting.fleet import HostingContext
from shipyard.hosting.models import Endpoint, Promotion
from shipyard.hosting.repository import hosting_repository as repo
from shipyard.hosting.service import HostingService, config_spec, slug
from shipyard.kit.ids import utcnow
from shipyard.kit.tls import client_ssl_context
from shipyard.registry.models import ModelVersion

log = logging.getLogger("shipyard.hosting")

HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0
POLL_S = 0.2
TEST_CALLS = 5
Status = schemas.EndpointStatus


class StepFailed(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.recorded = False


def check_answer(example: Any, answer: Any, signature: dict[str, Any] | None) -> str | None:
    """Why ``answer`` is not a well-shaped prediction for ``example``, or None if it is."""
    if not isinstance(answer, dict):
        return f"the answer is not a JSON object: {str(answer)[:200]}"
    rows = _rows_of(example)
    if rows is not None:
        predictions = answer.get("predictions")
        if not isinstance(predictions, list) or len(predictions) != rows:
            return f"expected 'predictions' with {rows} item(s), got {str(answer)[:200]}"
        values = predictions
    else:
        if "prediction" not in answer:
            return f"expected a 'prediction' in the answer, got {str(answer)[:200]}"
        values = [answer["prediction"]]
    outputs = (signature or {}).get("outputs") or []
    for value in values:
        if len(outputs) > 1 and (not isinstance(value, list) or len(value) != len(outputs)):
            return f"the signature has {len(outputs)} outputs; a prediction is {value!r}"
        if len(outputs) == 1 and isinstance(value, list | dict):
            return f"the signature has one output; a prediction is {str(value)[:100]}"
    return None


def _rows_of(example: Any) -> int | None:
    """How many predictions a batch example asks for; None for a single row."""
    if isinstance(example, dict):
        for key in ("instances", "inputs"):
            if isinstance(example.get(key), list):
                return len(example[key])
        return None
    if isinstance(example, list) and example and isinstance(example[0], list):
        return len(example)
    return None


def fail_stale_promotions(ctx: HostingContext) -> int:
    """Mark Failed the Running promotions whose runner stopped beating."""
    before = utcnow() - timedelta(seconds=STALE_AFTER_S)
    with ctx.db.transaction() as s:
        stale = repo.stale_promotions(s, before)
        for row in stale:
            reason = (
                "interrupted: the process running the promotion stopped "
                f"(no heartbeat for {STALE_AFTER_S:g}s); promote again"
            )
            repo.update_promotion(
                s, row.id, {"status": "Failed", "reason": reason, "finished_at": utcnow()}
            )
        return len(stale)


class PromotionRunner:
    def __init__(
        self,
        ctx: HostingContext,
        hosting: HostingService,
        promotion_id: str,
        stopping: threading.Event,
    ) -> None:
        self.ctx = ctx
        self.hosting = hosting
        self.promotion_id = promotion_id
        self.stopping = stopping
        self._beat = threading.Event()
        with ctx.db.read() as s:
            row = repo.promotion_by_id(s, promotion_id)
            if row is None:
                raise LookupError(promotion_id)
            self.row: Promotion = row
            s.expunge(row)
        self.steps: list[dict[str, Any]] = list(self.row.steps or [])
        request = dict(self.steps[0].get("request", {})) if self.steps else {}
        self.team_id = str(request.get("team_id", ""))
        self.instance_type = str(request.get("instance_type", "cpu.small"))
        self.instance_count = int(request.get("instance_count", 1))
        self.predict = str(request.get("predict") or "predict")
        self.label = request.get("model_version_label") or None
        self.data_capture: dict[str, Any] | None = request.get("data_capture")
        self.env = schemas.Environment(self.row.environment)
        self.name = self.row.endpoint_name
        self.actor = self.row.requested_by
        self.config_name = slug(f"{self.name}-{promotion_id[:8]}")

    # --- the pipeline ----------------------------------------------------------------------

    def run(self) -> None:
        beat = threading.Thread(target=self._heartbeat, daemon=True, name="promotion-beat")
        beat.start()
        try:
            version = self._verify()
            created, previous = self._deploy()
            try:
                self._wait(self.config_name, "deploy")
                self._test(version)
            except StepFailed as exc:
                self._record(exc.step, "failed", str(exc))
                exc.recorded = True
                self._rollback(created, previous)
                raise
            self._end(schemas.PromotionStatus.SUCCEEDED, "")
        except StepFailed as exc:
            if not exc.recorded:
                self._record(exc.step, "failed", str(exc))
            self._end(schemas.PromotionStatus.FAILED, f"{exc.step}: {exc}")
        except Exception as exc:
            log.exception("promotion %s failed", self.promotion_id)
            self._end(schemas.PromotionStatus.FAILED, f"internal error: {exc}")
        finally:
            self._beat.set()

    def _verify(self) -> ModelVersion:
        with self.ctx.db.read() as s:
            version = self.ctx.registry.version(
                s, self.row.project_id, self.row.group_name, self.row.version
            )
            s.expunge(version)
        try:
            asyncio.run(self.ctx.registry.verify(self.ctx.db, version))
        except ShipyardError as exc:
            raise StepFailed("verify", exc.message) from exc
        files = len(version.manifest.get("files", {}))
        self._record("verify", "ok", f"{files} file(s) match manifest {version.manifest_digest}")
        return version

    def _capture(
        self, s: Session, project_id: str, existing: Endpoint | None
    ) -> schemas.DataCapture:
        """What the promotion was asked to capture, else what the endpoint captures now: a
        new version must not silently turn off the capture its monitors read."""
        if self.data_capture is not None:
            return schemas.DataCapture.model_validate(self.data_capture)
        if existing is None:
            return schemas.DataCapture()
        serving = existing.current_config or existing.config_name
        return config_spec(self.hosting.config(s, project_id, serving)).data_capture

    def _deploy(self) -> tuple[bool, str | None]:
        """Create the endpoint or update it to a new config; (created, previous config)."""
        group, number, project_id = self.row.group_name, self.row.version, self.row.project_id
        try:
            with self.ctx.db.transaction() as s:
                model = self.hosting.ensure_registry_model(
                    s,
                    project_id,
                    group,
                    number,
                    self.actor,
                    predict=self.predict,
                    label=self.label,
                )
                variant = schemas.VariantSpec(
                    name="AllTraffic",
                    model=model.name,
                    instance_type=self.instance_type,
                    initial_instance_count=self.instance_count,
                )
                existing = repo.endpoint(s, self.name)
                body = schemas.EndpointConfigCreate(
                    name=self.config_name,
                    variants=[variant],
                    data_capture=self._capture(s, project_id, existing),
                )
                self.hosting.create_config(s, project_id, body, self.actor)
                previous = existing.current_config if existing is not None else None
            if existing is None:
                create = schemas.EndpointCreate(
                    name=self.name, config_name=self.config_name, environment=self.env
                )
                asyncio.run(
                    self.hosting.create_endpoint(
                        self.ctx.db,
                        self.team_id,
                        project_id,
                        create,
                        self.actor,
                        may_promote=True,
                        verify=False,
                    )
                )
                self._record("deploy", "ok", f"created endpoint {self.name} ({self.env.value})")
                return True, None
            policy = schemas.DeploymentPolicy(
                strategy=schemas.Strategy.BLUE_GREEN, bake_s=self.ctx.settings.promotion_bake_s
            )
            update = schemas.EndpointUpdate(config_name=self.config_name, deployment=policy)
            asyncio.run(
                self.hosting.update_endpoint(
                    self.ctx.db,
                    project_id,
                    self.name,
                    update,
                    self.actor,
                    may_promote=True,
                    verify=False,
                )
            )
        except ShipyardError as exc:
            raise StepFailed("deploy", exc.message) from exc
        self._record(
            "deploy", "ok", f"updating endpoint {self.name} from {previous} to {self.config_name}"
        )
        return False, previous

    def _wait(self, config: str, step: str) -> Endpoint:
        """Until the endpoint is InService on ``config``; a failure or a rollback fails."""
        deadline = time.monotonic() + self.ctx.settings.promotion_timeout_s
        while time.monotonic() < deadline:
            if self.stopping.is_set():
                raise StepFailed(step, "the platform stopped during the promotion")
            with self.ctx.db.read() as s:
                endpoint = repo.endpoint(s, self.name)
                if endpoint is None:
                    raise StepFailed(step, f"endpoint {self.name} is gone")
                s.expunge(endpoint)
            if endpoint.status == Status.IN_SERVICE.value and endpoint.current_config == config:
                return endpoint
            if endpoint.status == Status.FAILED.value or (
                endpoint.status == Status.IN_SERVICE.value and endpoint.config_name != config
            ):
                raise StepFailed(
                    step, f"endpoint {self.name}: {endpoint.reason or endpoint.status}"
                )
            time.sleep(POLL_S)
        raise StepFailed(step, f"not InService after {self.ctx.settings.promotion_timeout_s:g}s")

    def _test(self, version: ModelVersion) -> None:
        if version.example is None:
            self._record("test", "skipped", "the version has no example payload to invoke")
            return
        url = self._replica_url()
        latencies: list[float] = []
        with httpx.Client(timeout=30, verify=client_ssl_context()) as client:
            for _ in range(TEST_CALLS):
                started = time.perf_counter()
                try:
                    response = client.post(url, json=version.example)
                except httpx.HTTPError as exc:
                    raise StepFailed("test", f"invoking {url} failed: {exc}") from exc
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise StepFailed(
                        "test",
                        f"the example was answered {response.status_code}: {response.text[:300]}",
                    )
        problem = check_answer(version.example, _json(response), version.signature)
        if problem is not None:
            raise StepFailed("test", problem)
        median = statistics.median(latencies)
        budget = self.ctx.settings.promotion_latency_budget_ms
        if median > budget:
            raise StepFailed(
                "test", f"median latency {median:.1f} ms is over the budget of {budget:g} ms"
            )
        self._record(
            "test", "ok", f"{TEST_CALLS} invocations of the example, median {median:.1f} ms"
        )

    def _replica_url(self) -> str:
        with self.ctx.db.read() as s:
            endpoint = repo.endpoint(s, self.name)
            replicas = repo.replicas(s, endpoint.id) if endpoint is not None else []
        ready = [r for r in replicas if r.config_name == self.config_name and r.status == "Ready"]
        if not ready:
            raise StepFailed("test", "no ready replica of the new fleet to invoke")
        return f"http://{ready[0].host}:{ready[0].port}/invocations"

    def _rollback(self, created: bool, previous: str | None) -> None:
        try:
            with self.ctx.db.read() as s:
                endpoint = repo.endpoint(s, self.name)
            if endpoint is None:
                self._record("rollback", "ok", "nothing to roll back")
            elif created:
                with self.ctx.db.transaction() as s:
                    self.hosting.delete_endpoint(
                        s,
                        self.row.project_id,
                        self.name,
                        self.actor,
                        force=True,
                        platform_admin=True,
                    )
                self.hosting.wake()
                self._record("rollback", "ok", f"deleted endpoint {self.name}, made by this run")
            elif endpoint.current_config != self.config_name:
                self._record(
                    "rollback", "ok", f"endpoint {self.name} serves {endpoint.current_config}"
                )
            elif previous is not None:
                self._restore(previous)
            else:
                self._record("rollback", "ok", f"endpoint {self.name} served nothing before")
        except (StepFailed, ShipyardError) as exc:
            self._record("rollback", "failed", str(exc))

    def _restore(self, previous: str) -> None:
        policy = schemas.DeploymentPolicy(strategy=schemas.Strategy.ALL_AT_ONCE, bake_s=0)
        update = schemas.EndpointUpdate(config_name=previous, deployment=policy)
        asyncio.run(
            self.hosting.update_endpoint(
                self.ctx.db,
                self.row.project_id,
                self.name,
                update,
                self.actor,
                may_promote=True,
                verify=False,
            )
        )
        self._wait(previous, "rollback")
        self._record("rollback", "ok", f"endpoint {self.name} serves {previous} again")

    # --- recording ---------------------------------------------------------------------

    def _record(self, step: str, status: str, detail: str) -> None:
        self.steps.append(
            {"step": step, "status": status, "detail": detail, "at": utcnow().isoformat()}
        )
        with self.ctx.db.transaction() as s:
            repo.update_promotion(
                s, self.promotion_id, {"steps": list(self.steps), "updated_at": utcnow()}
            )

    def _end(self, status: schemas.PromotionStatus, reason: str) -> None:
        with self.ctx.db.transaction() as s:
            values = {
                "status": status.value,
                "reason": reason,
                "finished_at": utcnow(),
                "updated_at": utcnow(),
            }
            if not repo.update_promotion(s, self.promotion_id, values):
                return
            self.ctx.events.emit(
                s,
                project_id=self.row.project_id,
                type=f"promotion.{status.value.lower()}",
                subject=f"model:{self.row.group_name}:{self.row.version}",
                data={
                    "id": self.promotion_id,
                    "group": self.row.group_name,
                    "version": self.row.version,
                    "environment": self.env.value,
                    "endpoint": self.name,
                    "status": status.value,
                    "reason": reason[:4000],
                },
                actor=self.actor,
            )
        log.info("promotion %s: %s %s", self.promotion_id, status.value, reason)

    def _heartbeat(self) -> None:
        while not self._beat.wait(HEARTBEAT_S):
            try:
                with self.ctx.db.transaction() as s:
                    repo.update_promotion(s, self.promotion_id, {"updated_at": utcnow()})
            except Exception:
                log.exception("promotion %s: heartbeat failed", self.promotion_id)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
