"""Hosting logic: models, endpoint configs and endpoints as specs; the rules of environments.

The service stores what users want and checks it; the endpoint controller (``controller.py``)
makes the fleets follow. The environment gate (DESIGN §5) is here, once, for every way in —
the API, promotions, the SDK's ``deploy``:

- ``dev`` takes any registry version that is not Blocked or Rejected, and artifact models;
- ``staging`` and ``prod`` take only Approved registry versions whose stored bytes still
  match the approved manifest (``registry.verify``), and only from an engineer, lead or admin.

Deleting a ``prod`` endpoint is refused unless a platform admin forces it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.db.engine import Database
from shipyard.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from shipyard.events.service import EventService
from shipyard.hosting import schemas
from shipyard.hosting.async_repository import async_repository
from shipyard.hosting.models import (
    AsyncInvocation,
    Endpoint,
    EndpointConfig,
    HostedModel,
    Promotion,
    Replica,
)
from shipyard.hosting.repository import hosting_repository as repo
from shipyard.jobs.catalog import Catalog
from shipyard.kit.ids import new_id, utcnow
from shipyard.registry.models import ModelVersion
from shipyard.registry.schemas import VersionStatus
from shipyard.registry.service import RegistryService
from shipyard.storage.models import ArtifactVersion
from shipyard.storage.service import ArtifactService

Status = schemas.EndpointStatus
Env = schemas.Environment
RULE_APPROVED = "approved-versions-only"
RULE_REGISTRY = "registry-versions-only"
RULE_ROLE = "engineer-role-for-staging-and-prod"
RULE_PROD_DELETE = "prod-delete-needs-admin-force"
RULE_STAGING_FIRST = "prod-after-staging"
NEVER_SERVED = (VersionStatus.BLOCKED.value, VersionStatus.REJECTED.value)
# Statuses in which an endpoint may take a new config: not while a deployment runs.
UPDATABLE = (Status.IN_SERVICE.value, Status.FAILED.value)
_SLUG = re.compile(r"[^a-z0-9-]+")


def slug(text: str, limit: int = 63) -> str:
    """A resource name made of ``text`` (``Churn_Model`` → ``churn-model``)."""
    cleaned = _SLUG.sub("-", text.lower()).strip("-") or "model"
    return cleaned[:limit].rstrip("-")


def model_label(model: HostedModel) -> str:
    """What answers carry as ``model_version``: the label it was given, else ``v23`` for a
    registry version, or ``dev`` for an artifact model."""
    if model.source.get("label"):
        return str(model.source["label"])
    if model.source.get("kind") == "registry":
        return f"v{model.source['version']}"
    return "dev"


def config_spec(row: EndpointConfig) -> schemas.EndpointConfigCreate:
    return schemas.EndpointConfigCreate.model_validate({**row.spec, "name": row.name})


class HostingService:
    def __init__(
        self,
        *,
        catalog: Catalog,
        registry: RegistryService,
        artifacts: ArtifactService,
        events: EventService,
        gateway_url: str,
    ) -> None:
        self.catalog = catalog
        self.registry = registry
        self.artifacts = artifacts
        self.events = events
        self.gateway_url = gateway_url
        self._wakers: list[Callable[[], None]] = []

    def add_waker(self, wake: Callable[[], None]) -> None:
        """Called after a user's change, so the controller looks now (the controller's)."""
        self._wakers.append(wake)

    def wake(self) -> None:
        for wake in self._wakers:
            wake()

    # --- hosted models ---------------------------------------------------------------------

    def create_model(
        self, s: Session, project_id: str, body: schemas.HostedModelCreate, actor: str
    ) -> HostedModel:
        if repo.model(s, project_id, body.name) is not None:
            raise Conflict(f"model {body.name!r} already exists", field="name")
        if body.group is not None and body.version is not None:
            version = self._servable(s, project_id, body.group, body.version)
            source: dict[str, Any] = {
                "kind": "registry",
                "group": body.group,
                "version": version.version,
            }
            flavor = body.flavor or version.flavor
        else:
            assert body.artifact_path is not None  # the schema requires one source
            try:
                artifact = self.artifacts.find(
                    s, project_id, body.artifact_path, body.artifact_version
                )
            except NotFound as exc:
                raise ValidationFailed(exc.message, field="artifact_path") from exc
            # pinned: a replica started next month serves what was named today
            source = {"kind": "artifact", "path": artifact.path, "version": artifact.version}
            flavor = body.flavor or "sklearn"
        if body.model_version_label:
            source["label"] = body.model_version_label
        row = HostedModel(
            project_id=project_id,
            name=body.name,
            source=source,
            flavor=flavor,
            predict=body.predict,
            environment=dict(body.environment),
            tags=dict(body.tags),
            created_by=actor,
        )
        repo.add(s, row)
        return row

    def _servable(self, s: Session, project_id: str, group: str, number: int) -> ModelVersion:
        version = self.registry.version(s, project_id, group, number)
        if version.status in NEVER_SERVED:
            raise Conflict(
                f"{group} v{number} is {version.status}: it may not be deployed anywhere",
                field="version",
            )
        return version

    def model(self, s: Session, project_id: str, name: str) -> HostedModel:
        row = repo.model(s, project_id, name)
        if row is None:
            raise NotFound(f"model {name!r} not found", field="name")
        return row

    def models(self, s: Session, project_id: str) -> Sequence[HostedModel]:
        return repo.models(s, project_id)

    def delete_model(self, s: Session, project_id: str, name: str) -> None:
        row = self.model(s, project_id, name)
        users = [c.name for c in repo.configs(s, project_id) if name in _models_of(c.spec)]
        if users:
            raise Conflict(
                f"model {name!r} is used by endpoint config(s) {', '.join(users)}", field="name"
            )
        repo.remove(s, row)

    def ensure_registry_model(
        self,
        s: Session,
        project_id: str,
        group: str,
        number: int,
        actor: str,
        *,
        predict: str = "predict",
        label: str | None = None,
    ) -> HostedModel:
        """The hosted model of a registry version (``<group>-v<n>``) served this way (its
        ``predict`` and ``model_version`` label), made on first use."""
        base = slug(f"{group}-v{number}")
        wanted = {"kind": "registry", "group": group, "version": number}
        if label:
            wanted["label"] = label
        for attempt in range(20):
            name = base if attempt == 0 else slug(f"{base[:56]}-{attempt}")
            row = repo.model(s, project_id, name)
            if row is None:
                body = schemas.HostedModelCreate.model_validate(
                    {
                        "name": name,
                        "group": group,
                        "version": number,
                        "predict": predict,
                        "model_version_label": label,
                    }
                )
                return self.create_model(s, project_id, body, actor)
            if row.source == wanted and row.predict == predict:
                return row
        raise Conflict(f"no free model name for {group} v{number}", field="name")

    # --- endpoint configs ------------------------------------------------------------------

    def create_config(
        self, s: Session, project_id: str, body: schemas.EndpointConfigCreate, actor: str
    ) -> EndpointConfig:
        if repo.config(s, project_id, body.name) is not None:
            raise Conflict(f"endpoint config {body.name!r} already exists", field="name")
        named = [("variants", i, v) for i, v in enumerate(body.variants)]
        if body.shadow is not None:
            named.append(("shadow", -1, body.shadow))
        for where, index, variant in named:
            prefix = f"{where}.{index}" if index >= 0 else where
            try:
                self.catalog.get(variant.instance_type)
            except ValidationFailed as exc:
                raise ValidationFailed(
                    exc.message, field=f"{prefix}.instance_type", valid=self.catalog.names
                ) from exc
            if repo.model(s, project_id, variant.model) is None:
                raise ValidationFailed(
                    f"model {variant.model!r} not found in this project", field=f"{prefix}.model"
                )
        row = EndpointConfig(
            project_id=project_id,
            name=body.name,
            spec=body.spec(),
            tags=dict(body.tags),
            created_by=actor,
        )
        repo.add(s, row)
        return row

    def config(self, s: Session, project_id: str, name: str) -> EndpointConfig:
        row = repo.config(s, project_id, name)
        if row is None:
            raise NotFound(f"endpoint config {name!r} not found", field="name")
        return row

    def configs(self, s: Session, project_id: str) -> Sequence[EndpointConfig]:
        return repo.configs(s, project_id)

    def delete_config(self, s: Session, project_id: str, name: str) -> None:
        row = self.config(s, project_id, name)
        users = repo.endpoints_using_configs(s, project_id, [name])
        if users:
            raise Conflict(
                f"endpoint config {name!r} is used by endpoint(s) {', '.join(users)}", field="name"
            )
        repo.remove(s, row)

    # --- the environment gate --------------------------------------------------------------

    def _gate(
        self,
        s: Session,
        project_id: str,
        environment: Env,
        config: EndpointConfig,
        may_promote: bool,
    ) -> list[ModelVersion]:
        """Raise unless every model of ``config`` may serve in ``environment``; the registry
        versions whose bytes must be verified before they do."""
        _check_role(environment, may_promote, "deploying")
        to_verify: list[ModelVersion] = []
        for name in _models_of(config.spec):
            model = self.model(s, project_id, name)
            if model.source.get("kind") != "registry":
                if environment.gated:
                    raise PermissionDenied(
                        f"model {name!r} is an artifact, not a registry version: artifact "
                        f"models deploy to dev only (rule {RULE_REGISTRY})",
                        field="config_name",
                        rule=RULE_REGISTRY,
                    )
                continue
            group, number = model.source["group"], int(model.source["version"])
            version = self._may_serve(s, project_id, environment, group, number, "config_name")
            if environment.gated:
                to_verify.append(version)
        return to_verify

    def _may_serve(
        self, s: Session, project_id: str, env: Env, group: str, number: int, field: str
    ) -> ModelVersion:
        """The version, if it may serve in ``env``: never Blocked or Rejected; Approved for
        staging and prod; and for prod, only after a Succeeded promotion to staging — the
        same gate whether it arrives by a promotion or by creating or updating an endpoint."""
        version = self._servable(s, project_id, group, number)
        if env.gated and version.status != VersionStatus.APPROVED.value:
            raise PermissionDenied(
                f"only Approved model versions may go to {env.value} "
                f"(rule {RULE_APPROVED}): {group} v{number} is {version.status}",
                field=field,
                rule=RULE_APPROVED,
            )
        if (
            env == Env.PROD
            and repo.succeeded_promotion(s, project_id, group, number, "staging") is None
        ):
            raise Conflict(
                f"{group} v{number} has no Succeeded promotion to staging: prod takes only "
                f"what passed staging (rule {RULE_STAGING_FIRST})",
                field=field,
                rule=RULE_STAGING_FIRST,
            )
        return version

    async def _verify(self, db: Database, versions: Sequence[ModelVersion]) -> None:
        for version in versions:
            await self.registry.verify(db, version)  # 409 naming every changed file

    # --- endpoints -------------------------------------------------------------------------

    async def create_endpoint(
        self,
        db: Database,
        team_id: str,
        project_id: str,
        body: schemas.EndpointCreate,
        actor: str,
        *,
        may_promote: bool,
        verify: bool = True,
    ) -> Endpoint:
        with db.read() as s:
            self._check_free(s, body.name)
            config = self._config_for(s, project_id, body.config_name)
            _check_variants(config, body.autoscaling, "autoscaling")
            versions = self._gate(s, project_id, body.environment, config, may_promote)
        if verify:
            await self._verify(db, versions)
        try:
            with db.transaction() as s:
                self._check_free(s, body.name)
                row = Endpoint(
                    project_id=project_id,
                    team_id=team_id,
                    name=body.name,
                    environment=body.environment.value,
                    config_name=body.config_name,
                    status=Status.CREATING.value,
                    deployment={},
                    autoscaling={k: v.model_dump(mode="json") for k, v in body.autoscaling.items()},
                    progress={},
                    tags=dict(body.tags),
                    created_by=actor,
                )
                repo.add(s, row)
                self._emit(s, row, "created", actor)
        except IntegrityError as exc:  # another create of the same name won the race
            raise _taken(body.name) from exc
        self.wake()
        return row

    @staticmethod
    def _check_free(s: Session, name: str) -> None:
        if repo.endpoint(s, name) is not None:
            raise _taken(name)

    def _config_for(self, s: Session, project_id: str, name: str) -> EndpointConfig:
        row = repo.config(s, project_id, name)
        if row is None:
            raise ValidationFailed(f"endpoint config {name!r} not found", field="config_name")
        return row

    def endpoint(self, s: Session, project_id: str, name: str) -> Endpoint:
        """An endpoint of this project (another project's is the same 404)."""
        row = repo.endpoint(s, name)
        if row is None or row.project_id != project_id:
            raise NotFound(f"endpoint {name!r} not found", field="name")
        return row

    def endpoints(self, s: Session, project_id: str) -> Sequence[Endpoint]:
        return repo.endpoints(s, project_id)

    async def update_endpoint(
        self,
        db: Database,
        project_id: str,
        name: str,
        body: schemas.EndpointUpdate,
        actor: str,
        *,
        may_promote: bool,
        verify: bool = True,
    ) -> Endpoint:
        with db.read() as s:
            row = self.endpoint(s, project_id, name)
            target_name = body.config_name or row.config_name
            target = self._config_for(s, project_id, target_name)
            versions: list[ModelVersion] = []
            if body.config_name is not None:
                env = Env(row.environment)
                versions = self._gate(s, project_id, env, target, may_promote)
            values = self._changes(row, target, body)
        if verify:
            await self._verify(db, versions)
        with db.transaction() as s:
            statuses = None
            if "config_name" in values:
                statuses = UPDATABLE
            if not repo.change(s, row.id, values, statuses=statuses):
                current = self.endpoint(s, project_id, name)
                raise Conflict(
                    f"endpoint {name!r} is {current.status}"
                    + (" (being deleted)" if current.request else "")
                    + "; a new config waits until it is InService (or Failed)",
                    field="name",
                    status=current.status,
                )
            row = self.endpoint(s, project_id, name)
            s.refresh(row)
        self.wake()
        return row

    def _changes(
        self, row: Endpoint, target: EndpointConfig, body: schemas.EndpointUpdate
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if body.config_name is not None:
            if body.config_name == row.config_name and row.status != Status.FAILED.value:
                raise Conflict(
                    f"endpoint {row.name!r} already uses config {row.config_name!r}",
                    field="config_name",
                )
            values["config_name"] = body.config_name
            values["status"] = (
                Status.UPDATING.value if row.current_config else Status.CREATING.value
            )
            values["reason"] = ""
            policy = body.deployment or schemas.DeploymentPolicy()
            values["deployment"] = policy.model_dump(mode="json")
        scaling = dict(row.autoscaling or {})
        if body.autoscaling is not None:
            _check_variants(target, body.autoscaling, "autoscaling")
            for variant, policy_or_none in body.autoscaling.items():
                kept = {k: v for k, v in scaling.get(variant, {}).items() if k == "set_count"}
                if policy_or_none is None:
                    scaling[variant] = kept
                else:
                    scaling[variant] = {**policy_or_none.model_dump(mode="json"), **kept}
        if body.instance_counts is not None:
            _check_variants(target, body.instance_counts, "instance_counts")
            for variant, count in body.instance_counts.items():
                entry = dict(scaling.get(variant, {}))
                entry["set_count"] = {"count": count, "id": new_id()}
                scaling[variant] = entry
        if body.autoscaling is not None or body.instance_counts is not None:
            values["autoscaling"] = {k: v for k, v in scaling.items() if v}
        if body.tags is not None:
            values["tags"] = dict(body.tags)
        if not values:
            raise ValidationFailed("nothing to change", field="config_name")
        return values

    def delete_endpoint(
        self,
        s: Session,
        project_id: str,
        name: str,
        actor: str,
        *,
        force: bool,
        platform_admin: bool,
    ) -> Endpoint:
        row = self.endpoint(s, project_id, name)
        if row.environment == Env.PROD.value and not (force and platform_admin):
            raise PermissionDenied(
                f"endpoint {name!r} serves prod: deleting it needs a platform admin and "
                f"?force=true (rule {RULE_PROD_DELETE})",
                field="name",
                rule=RULE_PROD_DELETE,
            )
        if row.request == "delete":
            return row
        if not repo.change(s, row.id, {"request": "delete", "status": Status.DELETING.value}):
            raise Conflict(f"endpoint {name!r} changed meanwhile; look again", field="name")
        s.refresh(row)
        return row

    def _emit(self, s: Session, row: Endpoint, change: str, actor: str) -> None:
        self.events.emit(
            s,
            project_id=row.project_id,
            type=f"endpoint.{change}",
            subject=f"endpoint:{row.name}",
            data=endpoint_event_data(row),
            actor=actor,
        )

    # --- views -----------------------------------------------------------------------------

    def view(self, s: Session, row: Endpoint) -> schemas.EndpointOut:
        """The endpoint with its variants: counts wanted and running, replicas, weights."""
        progress = dict(row.progress or {})
        fleets: dict[str, dict[str, int]] = progress.get("fleets", {})
        names = [n for n in dict.fromkeys([row.current_config, row.config_name, *fleets]) if n]
        configs = {c.name: c for c in repo.configs_named(s, row.project_id, names)}
        specs = {name: config_spec(c) for name, c in configs.items()}
        models = {
            m.name: m
            for m in repo.models_named(
                s, row.project_id, sorted({n for c in configs.values() for n in _models_of(c.spec)})
            )
        }
        replicas = repo.replicas(s, row.id)
        weights = progress.get("weights", {})
        variants: list[schemas.VariantOut] = []
        for name in names:
            spec = specs.get(name)
            if spec is None:
                continue
            members = [(v, False) for v in spec.variants]
            if spec.shadow is not None:
                members.append((spec.shadow, True))
            for variant, shadow in members:
                variants.append(
                    self._variant_out(row, name, variant, shadow, fleets, models, replicas, weights)
                )
        return schemas.EndpointOut(
            name=row.name,
            environment=Env(row.environment),
            status=Status(row.status),
            reason=row.reason,
            config_name=row.config_name,
            current_config=row.current_config,
            deployment=dict(row.deployment or {}),
            autoscaling=_policies(row.autoscaling),
            progress={k: v for k, v in progress.items() if k == "deploy" and v},
            variants=variants,
            invocation_url=f"{self.gateway_url}/endpoints/{row.name}/invocations",
            tags=dict(row.tags or {}),
            created_by=row.created_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
            row_version=row.row_version,
        )

    def _variant_out(
        self,
        row: Endpoint,
        config: str,
        variant: schemas.VariantSpec,
        shadow: bool,
        fleets: dict[str, dict[str, int]],
        models: dict[str, HostedModel],
        replicas: list[Replica],
        weights: dict[str, dict[str, float]],
    ) -> schemas.VariantOut:
        mine = [r for r in replicas if r.config_name == config and r.variant == variant.name]
        model = models.get(variant.model)
        policy = _policies(row.autoscaling).get(variant.name)
        desired = fleets.get(config, {}).get(variant.name)
        if desired is None:
            desired = variant.initial_instance_count if config == row.config_name else 0
        return schemas.VariantOut(
            name=variant.name,
            config_name=config,
            model=variant.model,
            model_version=model_label(model) if model else "?",
            instance_type=variant.instance_type,
            weight=weights.get(config, {}).get(variant.name, 0.0),
            shadow=shadow,
            serverless=variant.serverless,
            current_instance_count=sum(r.status == "Ready" for r in mine),
            desired_instance_count=desired,
            autoscaling=schemas.ScalingPolicy.model_validate(policy) if policy else None,
            replicas=[schemas.ReplicaOut.model_validate(r) for r in mine],
        )

    # --- what other domains ask ------------------------------------------------------------

    def served_versions(self, s: Session, project_id: str) -> list[tuple[Endpoint, str, int]]:
        """(endpoint, group, version) for every registry version an endpoint of the project
        serves or is being updated to."""
        endpoints = repo.endpoints(s, project_id)
        names = {n for e in endpoints for n in (e.config_name, e.current_config) if n}
        configs = {c.name: c for c in repo.configs_named(s, project_id, sorted(names))}
        model_names = sorted({m for c in configs.values() for m in _models_of(c.spec)})
        models = {m.name: m for m in repo.models_named(s, project_id, model_names)}
        found: list[tuple[Endpoint, str, int]] = []
        for endpoint in endpoints:
            seen: set[tuple[str, int]] = set()
            for config_name in dict.fromkeys((endpoint.current_config, endpoint.config_name)):
                config = configs.get(config_name or "")
                for model_name in _models_of(config.spec) if config else []:
                    model = models.get(model_name)
                    if model is None or model.source.get("kind") != "registry":
                        continue
                    key = (str(model.source["group"]), int(model.source["version"]))
                    if key not in seen:
                        seen.add(key)
                        found.append((endpoint, *key))
        return found

    def deployments(self, s: Session, project_id: str) -> dict[str, list[dict[str, Any]]]:
        """For the registry's dashboard: per group, the endpoints serving its versions."""
        by_group: dict[str, list[dict[str, Any]]] = {}
        for endpoint, group, version in self.served_versions(s, project_id):
            by_group.setdefault(group, []).append(
                {
                    "endpoint": endpoint.name,
                    "environment": endpoint.environment,
                    "version": version,
                    "status": endpoint.status,
                }
            )
        return by_group

    # --- promotions ------------------------------------------------------------------------

    def start_promotion(
        self,
        s: Session,
        project_id: str,
        group: str,
        number: int,
        body: schemas.PromotionCreate,
        actor: str,
        *,
        team_id: str,
        may_promote: bool,
    ) -> Promotion:
        """Check what can be checked now and record the promotion as Running; the
        controller's runner does the rest (verify, deploy, test, roll back on failure)."""
        env = body.environment
        _check_role(env, may_promote, "promoting")
        version = self._may_serve(s, project_id, env, group, number, "version")
        self.catalog.get(body.instance_type)
        name = body.endpoint_name or slug(f"{group}-{env.value}")
        existing = repo.endpoint(s, name)
        if existing is not None and existing.project_id != project_id:
            raise _taken(name)
        if existing is not None and existing.environment != env.value:
            raise Conflict(
                f"endpoint {name!r} serves {existing.environment}, not {env.value}",
                field="endpoint_name",
            )
        if repo.running_promotion(s, name) is not None:
            raise Conflict(f"a promotion to endpoint {name!r} is running", field="endpoint_name")
        row = Promotion(
            project_id=project_id,
            group_name=group,
            version=number,
            environment=env.value,
            endpoint_name=name,
            status=schemas.PromotionStatus.RUNNING.value,
            steps=[_step("check", "ok", f"{group} v{number} is {version.status}")],
            reason="",
            requested_by=actor,
            # the runner reads what was asked from here: instance type and count
        )
        row.steps[0]["request"] = {
            "team_id": team_id,
            "instance_type": body.instance_type,
            "instance_count": body.instance_count,
            "predict": body.predict,
            "model_version_label": body.model_version_label,
            "data_capture": (
                body.data_capture.model_dump(mode="json") if body.data_capture else None
            ),
        }
        repo.add(s, row)
        return row

    def promotion(self, s: Session, project_id: str, promotion_id: str) -> Promotion:
        row = repo.promotion(s, project_id, promotion_id)
        if row is None:
            raise NotFound(f"promotion {promotion_id!r} not found", field="promotion_id")
        return row

    def promotions(
        self, s: Session, project_id: str, group: str | None, version: int | None, limit: int
    ) -> Sequence[Promotion]:
        return repo.promotions(s, project_id, group=group, version=version, limit=limit)

    # --- asynchronous inference (queued by the gateway; see gateway/asyncinvoke.py) -------

    def async_invocation(
        self, s: Session, project_id: str, endpoint: str, inference_id: str
    ) -> AsyncInvocation:
        row = async_repository.find(s, self.endpoint(s, project_id, endpoint).id, inference_id)
        if row is None:
            raise NotFound(
                f"no async invocation {inference_id!r} on endpoint {endpoint!r}",
                field="inference_id",
            )
        return row

    def async_invocations(
        self, s: Session, project_id: str, endpoint: str, status: str | None, limit: int
    ) -> Sequence[AsyncInvocation]:
        row = self.endpoint(s, project_id, endpoint)
        return async_repository.listing(s, row.id, status, limit)

    def async_result(
        self, s: Session, project_id: str, endpoint: str, inference_id: str
    ) -> ArtifactVersion:
        """The stored answer (or, for a failed request, the error document)."""
        row = self.async_invocation(s, project_id, endpoint, inference_id)
        if row.status not in (
            schemas.AsyncInvocationStatus.COMPLETED,
            schemas.AsyncInvocationStatus.FAILED,
        ):
            raise Conflict(
                f"async invocation {inference_id!r} is {row.status}; its result is not there yet",
                field="inference_id",
                status=row.status,
            )
        path = (
            row.output_path
            if row.status == schemas.AsyncInvocationStatus.COMPLETED
            else row.failure_path
        )
        return self.artifacts.find(s, project_id, path, None)


def _check_role(env: Env, may_promote: bool, doing: str) -> None:
    if env.gated and not may_promote:
        raise PermissionDenied(
            f"{doing} to {env.value} requires the engineer role (or lead or admin): "
            f"prod requires the engineer role (rule {RULE_ROLE})",
            field="environment",
            rule=RULE_ROLE,
        )


def _step(name: str, status: str, detail: str) -> dict[str, Any]:
    return {"step": name, "status": status, "detail": detail, "at": utcnow().isoformat()}


def _taken(name: str) -> Conflict:
    return Conflict(
        f"endpoint name {name!r} is taken (names are unique on the platform)", field="name"
    )


def _models_of(spec: dict[str, Any]) -> list[str]:
    names = [v["model"] for v in spec.get("variants", [])]
    if spec.get("shadow"):
        names.append(spec["shadow"]["model"])
    return list(dict.fromkeys(names))


def _check_variants(config: EndpointConfig, given: dict[str, Any], field: str) -> None:
    spec = config_spec(config)
    known = {v.name for v in spec.variants}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValidationFailed(
            f"config {config.name!r} has no variant {', '.join(map(repr, unknown))} "
            f"(its variants: {', '.join(sorted(known))})",
            field=field,
        )


def _policies(autoscaling: dict[str, Any] | None) -> dict[str, Any]:
    """The users' scaling policies (without the manual-count requests kept beside them)."""
    found = {}
    for variant, entry in (autoscaling or {}).items():
        policy = {k: v for k, v in entry.items() if k != "set_count"}
        if policy:
            found[variant] = policy
    return found


def endpoint_event_data(row: Endpoint) -> dict[str, Any]:
    return {
        "name": row.name,
        "environment": row.environment,
        "status": row.status,
        "config_name": row.config_name,
        "current_config": row.current_config,
        "reason": row.reason[:4000],
    }
