"""Read-only routes of the audit trail; there is deliberately no route that changes it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from shipyard.api.deps import PlatformDep, PrincipalDep, platform_access
from shipyard.errors import PermissionDenied
from shipyard.security import schemas
from shipyard.security.permissions import Permission
from shipyard.security.principal import Principal

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("")
def tail(
    principal: PrincipalDep,
    platform: PlatformDep,
    n: Annotated[int, Query(ge=1, le=10_000)] = 20,
) -> list[schemas.AuditEventOut]:
    """The newest audit entries: all for platform admins, else those of teams you lead."""
    team_ids = None
    if not principal.is_platform_admin:
        team_ids = [
            t for t in principal.team_roles if principal.can(Permission.AUDIT_READ, team_id=t)
        ]
        if not team_ids:
            raise PermissionDenied(f"{principal.username} lacks audit:read in every team")
    with platform.db.read() as s:
        rows = platform.audit.tail(s, n, team_ids)
        return [schemas.AuditEventOut.model_validate(r) for r in rows]


@router.get("/verify")
def verify(
    _: Annotated[Principal, Depends(platform_access(Permission.PLATFORM_ADMIN))],
    platform: PlatformDep,
) -> schemas.AuditVerifyOut:
    """Recompute the hash chain and check every signed digest (platform admins only)."""
    with platform.db.read() as s:
        return schemas.AuditVerifyOut(**asdict(platform.audit.verify(s)))
