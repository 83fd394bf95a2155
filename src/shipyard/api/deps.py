"""Dependencies shared by routers: the platform, the caller, and scoped permission checks.

Every route depends on one of ``platform_access``, ``team_access``, ``project_access`` or
``authenticated``, each naming the permission it needs; validation happens once here
(404 for what the caller may not see, 403 for what they see but may not do) and routes get
the resolved objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shipyard.bootstrap import Platform
from shipyard.errors import Unauthenticated
from shipyard.security.models import Project, Team
from shipyard.security.permissions import Permission
from shipyard.security.principal import Principal

bearer_scheme = HTTPBearer(auto_error=False, description="An access token or an API key")


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


def authenticated(
    request: Request,
    platform: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("authentication required: send 'Authorization: Bearer <token>'")
    with platform.db.read() as s:
        principal = platform.identity.authenticate(s, credentials.credentials)
    request.state.principal = principal
    return principal


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


def project_access(permission: Permission) -> Callable[..., ProjectAccess]:
    def check(
        request: Request,
        platform: PlatformDep,
        principal: PrincipalDep,
        team: Annotated[str, Path(max_length=64)],
        project: Annotated[str, Path(max_length=64)],
    ) -> ProjectAccess:
        with platform.db.read() as s:
            found_team = platform.identity.find_team(s, principal, team)
            request.state.audit_team = found_team.id
            found = platform.identity.find_project(s, principal, found_team, project)
        platform.identity.check(principal, permission, team_id=found_team.id, project_id=found.id)
        return ProjectAccess(principal, found_team, found)

    return check
