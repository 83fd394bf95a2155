"""The app factory: mounts every domain's router behind one error mapping and middleware."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from shipyard import __version__
from shipyard.api import system
from shipyard.api.errors import install_error_handlers
from shipyard.api.middleware import RequestContextMiddleware
from shipyard.bootstrap import Platform
from shipyard.events import router as events_router
from shipyard.hosting import router as hosting_router
from shipyard.hosting.transform import router as transform_router
from shipyard.jobs import router as jobs_router
from shipyard.kit.gcpause import freeze_startup_heap
from shipyard.lineage import router as lineage_router
from shipyard.monitoring import router as monitoring_router
from shipyard.registry import router as registry_router
from shipyard.security import admin_router, audit_router
from shipyard.security import router as security_router
from shipyard.storage import router as storage_router
from shipyard.tracking import datasets_router, mlflow_router
from shipyard.tracking import router as tracking_router

ROUTERS = (
    system.router,
    security_router.router,
    audit_router.router,
    admin_router.router,
    storage_router.router,
    tracking_router.router,
    datasets_router.router,
    mlflow_router.router,
    jobs_router.router,
    events_router.router,
    events_router.admin_router,
    registry_router.router,
    registry_router.dashboard_router,
    lineage_router.router,
    hosting_router.router,
    transform_router.router,
    monitoring_router.router,
)
log = logging.getLogger("shipyard")


def _seal_audit(platform: Platform) -> None:
    """Sign the audit head at shutdown, so truncating the tail later is detectable."""
    try:
        with platform.db.transaction() as s:
            platform.audit.seal(s)
    except Exception:
        log.exception("could not seal the audit log at shutdown")


def _lifespan(platform: Platform):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        freeze_startup_heap()
        if platform.settings.controllers:
            platform.job_controller.start()
            platform.endpoint_controller.start()
            platform.webhook_dispatcher.start()
            platform.monitoring_controller.start()
        yield
        await anyio.to_thread.run_sync(platform.monitoring_controller.stop)
        await anyio.to_thread.run_sync(platform.job_controller.stop)
        await anyio.to_thread.run_sync(platform.endpoint_controller.stop)
        # after the jobs: their last events are stored by then, and delivered if they can be
        await anyio.to_thread.run_sync(platform.webhook_dispatcher.stop)
        for hook in platform.extras.get("shutdown_hooks", ()):
            await anyio.to_thread.run_sync(hook)
        await anyio.to_thread.run_sync(_seal_audit, platform)

    return lifespan


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(
        title="Shipyard",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=_lifespan(platform),
    )
    app.state.platform = platform
    for router in ROUTERS:
        app.include_router(router)
    for extra in platform.extras.get("routers", ()):
        app.include_router(extra)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, platform=platform)
    return app
