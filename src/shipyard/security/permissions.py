"""Roles and the permissions they grant (DESIGN §5). The default is deny.

Every route declares one ``Permission`` and a scope (platform, team or project); the policy
check is ``permission in ROLE_PERMISSIONS[role]`` for the caller's role in that scope. Later
domains add permissions here and give them to roles in one place.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    LEAD = "lead"
    ENGINEER = "engineer"
    SCIENTIST = "scientist"
    VIEWER = "viewer"
    INVOKER = "invoker"


class Permission(StrEnum):
    PLATFORM_ADMIN = "platform:admin"  # users, master key, everything (global admins only)
    TEAM_READ = "team:read"
    TEAM_MANAGE = "team:manage"  # members, tag policy, quotas
    PROJECT_READ = "project:read"
    PROJECT_CREATE = "project:create"
    ARTIFACT_READ = "artifact:read"
    ARTIFACT_WRITE = "artifact:write"
    ARTIFACT_DELETE = "artifact:delete"
    TRACKING_READ = "tracking:read"  # experiments, runs, metrics, datasets
    TRACKING_WRITE = "tracking:write"
    JOB_READ = "job:read"  # jobs, their logs
    JOB_RUN = "job:run"  # submit, stop, interrupt
    MODEL_READ = "model:read"  # groups, versions, cards, scan results
    MODEL_REGISTER = "model:register"  # groups, new versions, cards while pending
    MODEL_APPROVE = "model:approve"  # approve or reject (never one's own registration)
    AUDIT_READ = "audit:read"
    EVENT_READ = "event:read"  # the project's event log
    WEBHOOK_MANAGE = "webhook:manage"  # webhooks (their URLs may embed tokens), deliveries
    KEY_MANAGE = "key:manage"  # create/revoke one's own API keys within one's role
    ENDPOINT_INVOKE = "endpoint:invoke"
    ENDPOINT_READ = "endpoint:read"  # hosted models, endpoint configs, endpoints, promotions
    ENDPOINT_DEPLOY = "endpoint:deploy"  # create, update, scale, delete; dev only on its own
    ENDPOINT_PROMOTE = "endpoint:promote"  # deploy to staging and prod (never scientists)
    MONITOR_READ = "monitor:read"  # baselines, monitors, executions, reports
    MONITOR_MANAGE = "monitor:manage"  # baselines, monitors and their rules and actions, runs


_VIEWER = {
    Permission.TEAM_READ,
    Permission.PROJECT_READ,
    Permission.ARTIFACT_READ,
    Permission.TRACKING_READ,
    Permission.JOB_READ,
    Permission.MODEL_READ,
    Permission.EVENT_READ,
    Permission.KEY_MANAGE,
    Permission.ENDPOINT_READ,
    Permission.MONITOR_READ,
}
_BUILDER = _VIEWER | {
    Permission.ARTIFACT_WRITE,
    Permission.ARTIFACT_DELETE,
    Permission.TRACKING_WRITE,
    Permission.JOB_RUN,
    Permission.MODEL_REGISTER,
    Permission.ENDPOINT_INVOKE,
    Permission.ENDPOINT_DEPLOY,
    Permission.MONITOR_MANAGE,
}
# Engineers take what was approved to staging and prod; scientists deploy to dev only.
_ENGINEER = _BUILDER | {Permission.ENDPOINT_PROMOTE}
_LEAD = _ENGINEER | {
    Permission.PROJECT_CREATE,
    Permission.TEAM_MANAGE,
    Permission.AUDIT_READ,
    Permission.MODEL_APPROVE,
    Permission.WEBHOOK_MANAGE,
}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.INVOKER: frozenset({Permission.ENDPOINT_INVOKE}),
    Role.VIEWER: frozenset(_VIEWER),
    Role.SCIENTIST: frozenset(_BUILDER),
    Role.ENGINEER: frozenset(_ENGINEER),
    Role.LEAD: frozenset(_LEAD),
    Role.ADMIN: frozenset(set(Permission) - {Permission.PLATFORM_ADMIN}),
}


def grants(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


# Which roles a holder may hand on (memberships, API keys). Explicit, because permission sets
# alone do not rank roles: today ``lead`` holds every permission ``admin`` does, which made
# ``admin`` look "within" ``lead`` and let a lead grant admin.
_DELEGABLE: dict[Role, frozenset[Role]] = {
    Role.ADMIN: frozenset(Role),
    Role.LEAD: frozenset(Role) - {Role.ADMIN},
    Role.ENGINEER: frozenset({Role.ENGINEER, Role.VIEWER, Role.INVOKER}),
    Role.SCIENTIST: frozenset({Role.SCIENTIST, Role.VIEWER, Role.INVOKER}),
    Role.VIEWER: frozenset({Role.VIEWER}),
    Role.INVOKER: frozenset({Role.INVOKER}),
}


def role_within(candidate: Role, holder: Role) -> bool:
    """True when ``holder`` may delegate ``candidate``: ranked no higher, granting no more."""
    return (
        candidate in _DELEGABLE[holder] and ROLE_PERMISSIONS[candidate] <= ROLE_PERMISSIONS[holder]
    )
