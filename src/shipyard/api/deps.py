"""Dependencies shared by routers: the platform, the caller, and scoped permission checks.

Every route depends on one of ``platform_access``, ``team_access``, ``project_access`` or
``authenticated``, each naming the permission it needs; validation happens once here
(404 for what the caller may not see, 403 for what they see but may not do) and routes get
the resolved objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shipyard.bootstrap import Platform
from shipyard.errors import NotFound, Unauthenticated
from shipyard.security.models import Project, Team
from shipyard.security.permissions import Permission
from shipyard.security.principal import Principal

bearer_scheme = HTTPBearer(auto_error=False, description="An access token or an API key")


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


def authenticate_now(
    request: Request, platform: Platform, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    """The caller, from the cache or the database (blocking: call from a worker thread)."""
    token = _bearer_token(credentials)
    principal = platform.identity.cached_principal(token)
    if principal is None:
        with platform.db.read() as s:
            principal = platform.identity.authenticate(s, token)
    request.state.principal = principal
    return principal


def _bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("authentication required: send 'Authorization: Bearer <token>'")
    return credentials.credentials


async def authenticated(
    request: Request,
    platform: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """Async so a cached caller costs no hop to a worker thread (most requests)."""
    principal = platform.identity.cached_principal(_bearer_token(credentials))
    if principal is not None:
        request.state.principal = principal
        return principal
    return await anyio.to_thread.run_sync(authenticate_now, request, platform, credentials)


PrincipalDep = Annotated[Principal, Depends(authenticated)]


@dataclass(frozen=True)
class TeamAccess:
    principal: Principal
    team: Team


@dataclass(frozen=True)
class ProjectAccess:
    principal: Principal
    team: Team
    project: Project

    @property
    def label(self) -> str:
        return f"{self.team.name}/{self.project.name}"


def platform_access(permission: Permission) -> Callable[..., Principal]:
    def check(platform: PlatformDep, principal: PrincipalDep) -> Principal:
        platform.identity.check(principal, permission)
        return principal

    return check


def team_access(permission: Permission) -> Callable[..., TeamAccess]:
    def check(
        request: Request,
        platform: PlatformDep,
        principal: PrincipalDep,
        team: Annotated[str, Path(max_length=64)],
    ) -> TeamAccess:
        with platform.db.read() as s:
            found = platform.identity.find_team(s, principal, team)
        request.state.audit_team = found.id
        platform.identity.check(principal, permission, team_id=found.id)
        return TeamAccess(principal, found)

    return check


def resolve_project_access(
    request: Request,
    platform: Platform,
    principal: Principal,
    team: str,
    project: str,
    permission: Permission,
) -> ProjectAccess:
    """404 for a project the caller may not know of, 403 for one they may not act on."""
    found = platform.identity.cached_place(principal, team, project)
    if found is None:
        try:
            with platform.db.read() as s:
                found = platform.identity.locate(s, principal, team, project)
        except NotFound as exc:
            if exc.field == "project":  # the team was found: audit under it
                with platform.db.read() as s:
                    request.state.audit_team = platform.identity.find_team(s, principal, team).id
            raise
    found_team, found_project = found
    request.state.audit_team = found_team.id
    platform.identity.check(
        principal, permission, team_id=found_team.id, project_id=found_project.id
    )
    return ProjectAccess(principal, found_team, found_project)


def project_access(permission: Permission) -> Callable[..., Any]:
    async def check(
        request: Request,
        platform: PlatformDep,
        principal: PrincipalDep,
        team: Annotated[str, Path(max_length=64)],
        project: Annotated[str, Path(max_length=64)],
    ) -> ProjectAccess:
        if platform.identity.cached_place(principal, team, project) is not None:
            return resolve_project_access(request, platform, principal, team, project, permission)
        return await anyio.to_thread.run_sync(
            resolve_project_access, request, platform, principal, team, project, permission
        )

    return check
