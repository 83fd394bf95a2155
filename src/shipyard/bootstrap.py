"""The composition root: builds every service once from ``Settings``, and first-start setup.

``shipyard up`` calls ``prepare_home`` then ``build_platform``; tests and offline CLI commands
(``shipyard audit verify --home``) build the same objects, so there is one wiring.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session

from shipyard import __version__
from shipyard.config import Settings
from shipyard.db.engine import Database
from shipyard.db.migrate import upgrade
from shipyard.events.dispatcher import WebhookDispatcher
from shipyard.events.service import EventService
from shipyard.hosting.controller import EndpointController
from shipyard.hosting.fleet import HostingContext
from shipyard.hosting.lineage import EndpointLinks
from shipyard.hosting.modelcache import ModelCache
from shipyard.hosting.service import HostingService
from shipyard.jobs.backends.base import Backend
from shipyard.jobs.catalog import Catalog
from shipyard.jobs.controller import JobController
from shipyard.jobs.environments import EnvironmentCache
from shipyard.jobs.execution import JobContext
from shipyard.jobs.service import JobService
from shipyard.kit.files import ensure_private_dir, write_private
from shipyard.kit.ratelimit import SlidingWindow
from shipyard.lineage.providers import standard_lineage
from shipyard.lineage.service import LineageService
from shipyard.monitoring.controller import MonitoringController
from shipyard.monitoring.metrics import MonitoringCollector
from shipyard.monitoring.runner import MonitoringRunner
from shipyard.monitoring.service import MonitoringService
from shipyard.registry.service import RegistryService
from shipyard.security import schemas
from shipyard.security.audit import AuditService
from shipyard.security.keyring import MasterKey, SigningKey
from shipyard.security.permissions import Role
from shipyard.security.principal import Principal
from shipyard.security.rotation import Rewrapper
from shipyard.security.service import IdentityService
from shipyard.security.tokens import AccessTokens
from shipyard.storage.backends import make_blob_store
from shipyard.storage.datakeys import DataKeys
from shipyard.storage.service import ArtifactService
from shipyard.tracking.datasets import DatasetService
from shipyard.tracking.service import TrackingService


@dataclass
class Platform:
    settings: Settings
    db: Database
    master_key: MasterKey
    signing_key: SigningKey
    identity: IdentityService
    audit: AuditService
    artifacts: ArtifactService
    tracking: TrackingService
    datasets: DatasetService
    jobs: JobService
    job_controller: JobController
    registry: RegistryService
    lineage: LineageService
    events: EventService
    webhook_dispatcher: WebhookDispatcher
    hosting: HostingService
    endpoint_controller: EndpointController
    monitoring: MonitoringService
    monitoring_controller: MonitoringController
    metrics: CollectorRegistry
    rewrappers: list[tuple[str, Rewrapper]]
    extras: dict[str, Any]

    @property
    def version(self) -> str:
        return __version__

    def wake_jobs(self) -> None:
        """Tell this process's job controller to look now (a submit, a stop)."""
        self.job_controller.wake()


def make_hosting(
    settings: Settings,
    db: Database,
    *,
    catalog: Catalog,
    registry: RegistryService,
    artifacts: ArtifactService,
    events: EventService,
) -> tuple[HostingService, EndpointController]:
    """The hosting service and its endpoint controller. Replicas run as local processes
    (``hosting/backends/local.py``) whatever ``SHIPYARD_COMPUTE`` says: a Ray backend for
    replicas is a later step behind the same interface (``hosting/backends/base.py``)."""
    from shipyard.hosting.backends.local import LocalReplicaBackend

    hosting = HostingService(
        catalog=catalog,
        registry=registry,
        artifacts=artifacts,
        events=events,
        gateway_url=settings.gateway_url,
    )
    context = HostingContext(
        settings=settings,
        db=db,
        registry=registry,
        artifacts=artifacts,
        events=events,
        catalog=catalog,
        backend=LocalReplicaBackend(),
        cache=ModelCache(settings.models_dir, db, artifacts, registry),
    )
    controller = EndpointController(context, hosting)
    hosting.add_waker(controller.wake)
    registry.set_deployments(hosting.deployments)
    return hosting, controller


def make_monitoring(
    settings: Settings,
    db: Database,
    *,
    artifacts: ArtifactService,
    datasets: DatasetService,
    hosting: HostingService,
    jobs: JobService,
    registry: RegistryService,
    events: EventService,
    wake_jobs: Callable[[], None],
) -> tuple[MonitoringService, MonitoringController]:
    """The monitoring service and the controller that fires schedules and runs executions."""
    service = MonitoringService(artifacts=artifacts, datasets=datasets, hosting=hosting)
    runner = MonitoringRunner(
        db=db, service=service, events=events, jobs=jobs, registry=registry, wake_jobs=wake_jobs
    )
    controller = MonitoringController(
        db=db, service=service, runner=runner, poll_s=settings.monitoring_poll_s
    )
    return service, controller


def make_backend(settings: Settings) -> Backend:
    """``SHIPYARD_COMPUTE``: ``local`` (default) or ``ray://HOST:PORT``."""
    if settings.compute.startswith("ray://"):
        from shipyard.jobs.backends.ray import RayBackend  # the optional extra

        return RayBackend(settings.compute)
    if settings.compute != "local":
        raise ValueError(f"SHIPYARD_COMPUTE={settings.compute!r}: use 'local' or 'ray://HOST:PORT'")
    from shipyard.jobs.backends.local import LocalBackend

    return LocalBackend(EnvironmentCache(settings.home / "envs").python_for)


def build_platform(settings: Settings, *, migrate: bool = True) -> Platform:
    ensure_private_dir(settings.home)
    db = Database(settings.resolved_db_url)
    if migrate:
        upgrade(db.engine)
    master_key = MasterKey(settings.master_key_path, settings.master_key)
    signing_key = SigningKey(settings.audit_key_path)
    identity = IdentityService(
        master_key=master_key,
        access_tokens=AccessTokens(
            lambda: master_key.derive("access-tokens"), settings.access_token_ttl_s
        ),
        refresh_ttl_s=settings.refresh_token_ttl_s,
        default_key_ttl_days=settings.api_key_default_ttl_days,
        login_throttle=SlidingWindow(settings.login_attempts_per_window, settings.login_window_s),
        cache_ttl_s=settings.auth_cache_ttl_s,
    )
    audit = AuditService(signing_key, settings.audit_digest_every)
    blobs = make_blob_store(settings.resolved_store_url, s3_endpoint_url=settings.s3_endpoint_url)
    artifacts = ArtifactService(
        blobs=blobs,
        data_keys=DataKeys(master_key),
        presign_secret=lambda: master_key.derive("presigned-urls"),
        max_upload_bytes=settings.max_upload_bytes,
    )
    datasets = DatasetService(artifacts)
    tracking = TrackingService()
    events = EventService(master_key=master_key, identity=identity)
    dispatcher = WebhookDispatcher(db=db, events=events, settings=settings)
    events.add_waker(dispatcher.wake)
    catalog = Catalog.from_config(settings.instance_types)
    backend = make_backend(settings)
    jobs = JobService(
        catalog=catalog,
        artifacts=artifacts,
        datasets=datasets,
        events=events,
        isolation_problem=backend.isolation_problem,
    )
    controller = JobController(
        JobContext(
            settings=settings,
            db=db,
            artifacts=artifacts,
            jobs=jobs,
            tracking=tracking,
            identity=identity,
            catalog=catalog,
            backend=backend,
            events=events,
        )
    )
    registry = RegistryService(artifacts=artifacts, tracking=tracking, jobs=jobs, events=events)
    hosting, endpoint_controller = make_hosting(
        settings, db, catalog=catalog, registry=registry, artifacts=artifacts, events=events
    )
    monitoring, monitoring_controller = make_monitoring(
        settings,
        db,
        artifacts=artifacts,
        datasets=datasets,
        hosting=hosting,
        jobs=jobs,
        registry=registry,
        events=events,
        wake_jobs=controller.wake,
    )
    metrics = CollectorRegistry(auto_describe=False)
    metrics.register(MonitoringCollector(db))
    lineage = standard_lineage(registry=registry, tracking=tracking, datasets=datasets, jobs=jobs)
    lineage.add(EndpointLinks(hosting))
    rewrappers: list[tuple[str, Rewrapper]] = [
        ("data_keys", artifacts.data_keys.rewrap_all),
        ("api_key_secrets", identity.reseal_api_key_secrets),
        ("webhook_secrets", events.reseal_webhook_secrets),
    ]
    extras: dict[str, Any] = {
        "readiness": {"store": blobs.ping},
        "store_description": blobs.describe(),
    }
    return Platform(
        settings,
        db,
        master_key,
        signing_key,
        identity,
        audit,
        artifacts,
        tracking,
        datasets,
        jobs,
        controller,
        registry,
        lineage,
        events,
        dispatcher,
        hosting,
        endpoint_controller,
        monitoring,
        monitoring_controller,
        metrics,
        rewrappers,
        extras,
    )


def ensure_admin(platform: Platform) -> dict[str, str] | None:
    """Create user ``admin`` and an admin API key on first start; write them once, 0600.

    Returns the credentials when they were created now, else None (later starts reuse them).
    """
    settings = platform.settings
    with platform.db.transaction() as s:
        if platform.identity.list_users(s):
            return None
        password = secrets.token_urlsafe(18)
        user = platform.identity.create_user(
            s, schemas.UserCreate(username="admin", password=password, is_admin=True)
        )
        key = _admin_key(s, platform, user.id)
    creds = {
        "url": settings.api_url,
        "gateway_url": settings.gateway_url,
        "username": "admin",
        "password": password,
        "api_key": key,
    }
    write_private(settings.credentials_path, json.dumps(creds, indent=2).encode())
    return creds


def _admin_key(s: Session, platform: Platform, user_id: str) -> str:
    admin = Principal(user_id=user_id, username="admin", is_admin=True)
    created = platform.identity.create_api_key(
        s,
        admin,
        schemas.ApiKeyCreate(name="admin (bootstrap)", role=Role.ADMIN, expires_in_days=3650),
    )
    return created.token


def verify_audit_offline(home: Path) -> dict[str, Any]:
    """Verify the audit trail straight from the DB of ``home`` (no server needed).

    Uses ``SHIPYARD_DB_URL`` when set, like the server; refuses to run without the signing
    key rather than create one, which would make every signature look forged.
    """
    settings = Settings(home=home)
    if not settings.audit_key_path.exists():
        raise FileNotFoundError(f"no audit signing key at {settings.audit_key_path}")
    db = Database(settings.resolved_db_url)
    try:
        audit = AuditService(SigningKey(settings.audit_key_path), settings.audit_digest_every)
        with db.read() as s:
            return asdict(audit.verify(s))
    finally:
        db.dispose()
