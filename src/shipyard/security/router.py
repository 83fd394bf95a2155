"""Routes of the identity domain: login, users, teams, projects, members, API keys, audit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from shipyard.api.deps import (
    PlatformDep,
    PrincipalDep,
    ProjectAccess,
    TeamAccess,
    platform_access,
    project_access,
    team_access,
)
from shipyard.security import schemas
from shipyard.security.models import Project, Team
from shipyard.security.permissions import Permission
from shipyard.security.principal import Principal

router = APIRouter(prefix="/api/v1")

AdminDep = Annotated[Principal, Depends(platform_access(Permission.PLATFORM_ADMIN))]


def _team_out(team: Team) -> schemas.TeamOut:
    return schemas.TeamOut.model_validate(team)


def _project_out(team: Team, project: Project) -> schemas.ProjectOut:
    return schemas.ProjectOut(
        id=project.id,
        team=team.name,
        name=project.name,
        description=project.description,
        tags=project.tags,
        created_at=project.created_at,
    )


# --- auth ------------------------------------------------------------------------------


@router.post("/auth/token", tags=["auth"])
def login(data: schemas.TokenRequest, request: Request, platform: PlatformDep) -> schemas.TokenPair:
    """Exchange a username and password for a 1-hour access token and a refresh token."""
    request.state.actor_hint = data.username
    client = request.client.host if request.client else ""
    with platform.db.transaction() as s:
        return platform.identity.login(s, data.username, data.password, client)


@router.post("/auth/refresh", tags=["auth"])
def refresh(data: schemas.RefreshRequest, platform: PlatformDep) -> schemas.TokenPair:
    """Exchange a refresh token (single use) for a new token pair."""
    with platform.db.transaction() as s:
        return platform.identity.refresh(s, data.refresh_token)


@router.get("/auth/whoami", tags=["auth"])
def whoami(principal: PrincipalDep, platform: PlatformDep) -> schemas.WhoAmI:
    """Who the bearer token belongs to, and their roles per team."""
    with platform.db.read() as s:
        names = {t.id: t.name for t in platform.identity.visible_teams(s, principal)}
    return schemas.WhoAmI(
        username=principal.username,
        is_admin=principal.is_platform_admin,
        teams={names[t]: r for t, r in principal.team_roles.items() if t in names},
        key_id=principal.key.key_id if principal.key else None,
    )


# --- users -----------------------------------------------------------------------------


@router.post("/users", status_code=status.HTTP_201_CREATED, tags=["users"])
def create_user(data: schemas.UserCreate, _: AdminDep, platform: PlatformDep) -> schemas.UserOut:
    """Create a user (platform admins only)."""
    with platform.db.transaction() as s:
        return schemas.UserOut.model_validate(platform.identity.create_user(s, data))


@router.get("/users", tags=["users"])
def list_users(_: AdminDep, platform: PlatformDep) -> list[schemas.UserOut]:
    """List users (platform admins only)."""
    with platform.db.read() as s:
        return [schemas.UserOut.model_validate(u) for u in platform.identity.list_users(s)]


# --- teams -----------------------------------------------------------------------------


@router.post("/teams", status_code=status.HTTP_201_CREATED, tags=["teams"])
def create_team(
    data: schemas.TeamCreate, admin: AdminDep, platform: PlatformDep
) -> schemas.TeamOut:
    """Create a team, optionally with required tag keys (platform admins only)."""
    with platform.db.transaction() as s:
        return _team_out(platform.identity.create_team(s, admin, data))


@router.get("/teams", tags=["teams"])
def list_teams(principal: PrincipalDep, platform: PlatformDep) -> list[schemas.TeamOut]:
    """List the teams the caller belongs to (all teams for platform admins)."""
    with platform.db.read() as s:
        return [_team_out(t) for t in platform.identity.visible_teams(s, principal)]


@router.get("/teams/{team}", tags=["teams"])
def get_team(
    access: Annotated[TeamAccess, Depends(team_access(Permission.TEAM_READ))],
) -> schemas.TeamOut:
    """Show a team."""
    return _team_out(access.team)


@router.patch("/teams/{team}", tags=["teams"])
def update_team(
    data: schemas.TeamUpdate,
    access: Annotated[TeamAccess, Depends(team_access(Permission.TEAM_MANAGE))],
    platform: PlatformDep,
) -> schemas.TeamOut:
    """Change a team's description or its tag policy (required tag keys)."""
    with platform.db.transaction() as s:
        team = s.merge(access.team)
        return _team_out(platform.identity.update_team(s, team, data))


# --- projects --------------------------------------------------------------------------


@router.post("/teams/{team}/projects", status_code=status.HTTP_201_CREATED, tags=["projects"])
def create_project(
    data: schemas.ProjectCreate,
    access: Annotated[TeamAccess, Depends(team_access(Permission.PROJECT_CREATE))],
    platform: PlatformDep,
) -> schemas.ProjectOut:
    """Create a project in a team; the team's required tags must be present."""
    with platform.db.transaction() as s:
        return _project_out(access.team, platform.identity.create_project(s, access.team, data))


@router.get("/teams/{team}/projects", tags=["projects"])
def list_projects(
    access: Annotated[TeamAccess, Depends(team_access(Permission.TEAM_READ))],
    platform: PlatformDep,
) -> list[schemas.ProjectOut]:
    """List a team's projects visible to the caller."""
    with platform.db.read() as s:
        projects = platform.identity.list_projects(s, access.principal, access.team)
    return [_project_out(access.team, p) for p in projects]


@router.get("/projects/{team}/{project}", tags=["projects"])
def get_project(
    access: Annotated[ProjectAccess, Depends(project_access(Permission.PROJECT_READ))],
) -> schemas.ProjectOut:
    """Show a project."""
    return _project_out(access.team, access.project)


# --- members ---------------------------------------------------------------------------


@router.get("/teams/{team}/members", tags=["teams"])
def list_members(
    access: Annotated[TeamAccess, Depends(team_access(Permission.TEAM_READ))],
    platform: PlatformDep,
) -> list[schemas.MemberOut]:
    """List a team's members and their roles."""
    with platform.db.read() as s:
        rows = platform.identity.list_members(s, access.team)
    return [
        schemas.MemberOut(username=u.username, role=m.role, since=m.created_at) for m, u in rows
    ]


@router.post("/teams/{team}/members", status_code=status.HTTP_201_CREATED, tags=["teams"])
def add_member(
    data: schemas.MemberAdd,
    access: Annotated[TeamAccess, Depends(team_access(Permission.TEAM_MANAGE))],
    platform: PlatformDep,
) -> schemas.MemberOut:
    """Add a user to a team with a role (or change their role); never above your own."""
    with platform.db.transaction() as s:
        membership = platform.identity.add_member(s, access.principal, access.team, data)
        return schemas.MemberOut(
            username=data.username, role=membership.role, since=membership.created_at
        )


@router.delete("/teams/{team}/members/{username}", status_code=204, tags=["teams"])
def remove_member(
    username: str,
    access: Annotated[TeamAccess, Depends(team_access(Permission.TEAM_MANAGE))],
    platform: PlatformDep,
) -> None:
    """Remove a user from a team."""
    with platform.db.transaction() as s:
        platform.identity.remove_member(s, access.principal, access.team, username)


# --- API keys --------------------------------------------------------------------------


@router.post("/keys", status_code=status.HTTP_201_CREATED, tags=["keys"])
def create_key(
    data: schemas.ApiKeyCreate, principal: PrincipalDep, platform: PlatformDep
) -> schemas.ApiKeyCreated:
    """Create an API key for yourself, scoped to a team or project, with a role ≤ yours."""
    with platform.db.transaction() as s:
        created = platform.identity.create_api_key(s, principal, data)
        out = platform.identity.key_out(s, created.row)
    return schemas.ApiKeyCreated(
        **out.model_dump(),
        api_key=created.token,
        access_key_id=created.row.key_id,
        secret_access_key=created.secret,
    )


@router.get("/keys", tags=["keys"])
def list_keys(principal: PrincipalDep, platform: PlatformDep) -> list[schemas.ApiKeyOut]:
    """List your API keys (all keys for platform admins); secrets are never shown again."""
    with platform.db.read() as s:
        keys = platform.identity.list_api_keys(s, principal)
        return [platform.identity.key_out(s, k) for k in keys]


@router.delete("/keys/{key_id}", tags=["keys"])
def revoke_key(
    key_id: str,
    principal: PrincipalDep,
    platform: PlatformDep,
) -> schemas.ApiKeyOut:
    """Revoke an API key; it stops working at once."""
    with platform.db.transaction() as s:
        row = platform.identity.revoke_api_key(s, principal, key_id)
        return platform.identity.key_out(s, row)
