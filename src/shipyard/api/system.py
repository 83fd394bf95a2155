"""Liveness, readiness, Prometheus metrics and platform info."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from shipyard.api.deps import PlatformDep
from shipyard.errors import ShipyardError

router = APIRouter()


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


class Info(BaseModel):
    version: str
    api_url: str
    gateway_url: str
    database: str
    store: str


class NotReady(ShipyardError):
    status_code = 503
    code = "not_ready"


@router.get("/healthz", tags=["system"])
def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", tags=["system"])
def readyz(platform: PlatformDep) -> Health:
    """The metadata DB and the artifact store are reachable."""
    checks: dict[str, str] = {}
    for name, probe in platform.extras.get("readiness", {}).items():
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"failing: {type(exc).__name__}"
    try:
        platform.db.ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"failing: {type(exc).__name__}"
    if any(v != "ok" for v in checks.values()):
        raise NotReady("not ready: " + ", ".join(f"{k} {v}" for k, v in checks.items()))
    return Health(status="ok", checks=checks)


@router.get("/metrics", tags=["system"], response_class=Response)
def metrics(platform: PlatformDep) -> Response:
    """Prometheus metrics: the process's, then the platform's (monitoring)."""
    body = generate_latest() + generate_latest(platform.metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/api/v1/info", tags=["system"])
def info(platform: PlatformDep) -> Info:
    """The version and the URLs of the API and the gateway."""
    settings = platform.settings
    return Info(
        version=platform.version,
        api_url=settings.api_url,
        gateway_url=settings.gateway_url,
        database=platform.db.engine.dialect.name,
        store=str(platform.extras.get("store_description", settings.resolved_store_url)),
    )
