"""Who is calling, and the one policy check every route goes through."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shipyard.security.permissions import Permission, Role, grants, role_within


@dataclass(frozen=True)
class KeyScope:
    """The limits an API key puts on its owner: a role, and a team or project (or platform)."""

    key_id: str
    role: Role
    team_id: str | None
    project_id: str | None


@dataclass(frozen=True)
class Principal:
    user_id: str
    username: str
    is_admin: bool
    team_roles: Mapping[str, Role] = field(default_factory=dict)
    key: KeyScope | None = None

    @property
    def actor(self) -> str:
        return f"{self.username} (key {self.key.key_id})" if self.key else self.username

    @property
    def is_platform_admin(self) -> bool:
        if not self.is_admin:
            return False
        return self.key is None or (self.key.team_id is None and self.key.role == Role.ADMIN)

    def sees_team(self, team_id: str) -> bool:
        """Whether the team's existence may be revealed (else: 404, never 403)."""
        if self.is_platform_admin:
            return True
        if self.key and self.key.team_id not in (None, team_id):
            return False
        return team_id in self.team_roles or (self.is_admin and self.key is not None)

    def sees_project(self, team_id: str, project_id: str) -> bool:
        if not self.sees_team(team_id):
            return False
        return not (self.key and self.key.project_id not in (None, project_id))

    def can(
        self, permission: Permission, *, team_id: str | None = None, project_id: str | None = None
    ) -> bool:
        if self.is_platform_admin:
            return True
        if permission is Permission.PLATFORM_ADMIN or team_id is None:
            return False
        scoped_to_project = bool(self.key and self.key.project_id)
        if project_id is None and scoped_to_project and permission is not Permission.TEAM_READ:
            # A project-scoped key may look at its team, never act on it; and it looks only
            # if its role may (the checks below), so a project-scoped invoker key may not.
            return False
        if project_id is not None and not self.sees_project(team_id, project_id):
            return False
        if not self.sees_team(team_id):
            return False
        role = self.team_roles.get(team_id) or (Role.ADMIN if self.is_admin else None)
        if role is None or not grants(role, permission):
            return False
        return self.key is None or grants(self.key.role, permission)

    def may_grant(self, role: Role, team_id: str) -> bool:
        """Whether the caller may hand ``role`` on in a team (a membership or an API key).

        Bounded by the caller's role in the team and, when calling with a key, by the key's.
        """
        held = self.role_in(team_id)
        if held is None or not role_within(role, held):
            return False
        return self.key is None or role_within(role, self.key.role)

    def role_in(self, team_id: str) -> Role | None:
        if self.is_admin:
            return Role.ADMIN
        return self.team_roles.get(team_id)
