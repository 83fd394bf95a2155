"""Roles, permissions and the one policy check (``Principal.can``), without a server."""

from __future__ import annotations

import itertools

import pytest

from shipyard.security.permissions import ROLE_PERMISSIONS, Permission, Role, grants, role_within
from shipyard.security.principal import KeyScope, Principal

TEAM, OTHER, PROJECT, SIBLING = "team-a", "team-b", "proj-1", "proj-2"


def member(role: Role, key: KeyScope | None = None, *, is_admin: bool = False) -> Principal:
    return Principal("u1", "ana", is_admin, {TEAM: role}, key)


def key(role: Role, team: str | None = TEAM, project: str | None = None) -> KeyScope:
    return KeyScope("SHKTEST", role, team, project)


def test_platform_admin_is_held_by_no_role() -> None:
    assert not any(grants(role, Permission.PLATFORM_ADMIN) for role in Role)


def test_an_invoker_may_only_invoke() -> None:
    assert ROLE_PERMISSIONS[Role.INVOKER] == {Permission.ENDPOINT_INVOKE}


def test_a_viewer_may_not_change_anything() -> None:
    writes = {p for p in Permission if p.value.split(":")[1] in {"write", "delete", "create"}}
    assert writes and not writes & ROLE_PERMISSIONS[Role.VIEWER]


@pytest.mark.parametrize(
    ("holder", "candidate", "allowed"),
    [
        (Role.ADMIN, Role.ADMIN, True),
        (Role.LEAD, Role.ADMIN, False),  # lead and admin hold the same permissions today
        (Role.LEAD, Role.LEAD, True),
        (Role.LEAD, Role.ENGINEER, True),
        (Role.SCIENTIST, Role.ENGINEER, False),
        (Role.ENGINEER, Role.SCIENTIST, False),
        (Role.ENGINEER, Role.INVOKER, True),
        (Role.VIEWER, Role.INVOKER, False),
        (Role.VIEWER, Role.ENGINEER, False),
        (Role.INVOKER, Role.VIEWER, False),
    ],
)
def test_role_within(holder: Role, candidate: Role, allowed: bool) -> None:
    assert role_within(candidate, holder) is allowed


@pytest.mark.parametrize(("holder", "candidate"), list(itertools.product(Role, Role)))
def test_no_role_delegates_more_than_it_holds(holder: Role, candidate: Role) -> None:
    if role_within(candidate, holder):
        assert ROLE_PERMISSIONS[candidate] <= ROLE_PERMISSIONS[holder]
    if candidate == holder:
        assert role_within(candidate, holder)


def test_the_default_is_deny() -> None:
    nobody = Principal("u2", "bob", False)
    assert not any(nobody.can(p, team_id=TEAM) for p in Permission)
    assert not member(Role.ADMIN).can(Permission.TEAM_READ)  # no scope named: no answer


def test_a_team_role_acts_only_in_its_team() -> None:
    lead = member(Role.LEAD)
    assert lead.can(Permission.PROJECT_CREATE, team_id=TEAM)
    assert not lead.can(Permission.TEAM_READ, team_id=OTHER)
    assert not lead.sees_team(OTHER)


def test_a_key_caps_its_users_role() -> None:
    viewer_key = member(Role.LEAD, key(Role.VIEWER))
    assert viewer_key.can(Permission.ARTIFACT_READ, team_id=TEAM, project_id=PROJECT)
    assert not viewer_key.can(Permission.ARTIFACT_WRITE, team_id=TEAM, project_id=PROJECT)


def test_a_key_scoped_to_a_team_hides_the_users_other_teams() -> None:
    both = Principal("u1", "ana", False, {TEAM: Role.LEAD, OTHER: Role.LEAD}, key(Role.LEAD))
    assert both.sees_team(TEAM) and not both.sees_team(OTHER)
    assert not both.can(Permission.TEAM_READ, team_id=OTHER)


def test_a_project_scoped_key_looks_at_its_team_and_acts_in_its_project() -> None:
    scoped = member(Role.LEAD, key(Role.LEAD, project=PROJECT))
    assert scoped.can(Permission.TEAM_READ, team_id=TEAM)
    assert not scoped.can(Permission.PROJECT_CREATE, team_id=TEAM)
    assert not scoped.can(Permission.TEAM_MANAGE, team_id=TEAM)
    assert scoped.can(Permission.ARTIFACT_WRITE, team_id=TEAM, project_id=PROJECT)
    assert not scoped.can(Permission.ARTIFACT_READ, team_id=TEAM, project_id=SIBLING)
    assert not scoped.sees_project(TEAM, SIBLING)


def test_a_project_scoped_invoker_key_may_not_read_its_team() -> None:
    invoker = member(Role.SCIENTIST, key(Role.INVOKER, project=PROJECT))
    assert not invoker.can(Permission.TEAM_READ, team_id=TEAM)
    assert invoker.can(Permission.ENDPOINT_INVOKE, team_id=TEAM, project_id=PROJECT)


def test_platform_admin_only_without_a_key_or_with_a_platform_admin_key() -> None:
    admin = Principal("u0", "admin", True)
    assert admin.is_platform_admin
    assert admin.can(Permission.PLATFORM_ADMIN)
    assert Principal("u0", "admin", True, {}, key(Role.ADMIN, team=None)).is_platform_admin
    team_key = Principal("u0", "admin", True, {}, key(Role.ADMIN))
    assert not team_key.is_platform_admin
    assert not team_key.can(Permission.PLATFORM_ADMIN)
    assert not team_key.sees_team(OTHER)
    viewer_key = Principal("u0", "admin", True, {}, key(Role.VIEWER, team=None))
    assert not viewer_key.is_platform_admin
    assert not viewer_key.can(Permission.ARTIFACT_WRITE, team_id=TEAM, project_id=PROJECT)


@pytest.mark.parametrize(
    ("principal", "role", "allowed"),
    [
        (member(Role.LEAD), Role.ADMIN, False),
        (member(Role.LEAD), Role.LEAD, True),
        (member(Role.ADMIN), Role.ADMIN, True),
        (member(Role.ADMIN, key(Role.LEAD)), Role.ADMIN, False),  # bounded by the key
        (Principal("u0", "admin", True, {}, key(Role.VIEWER)), Role.ENGINEER, False),
        (Principal("u0", "admin", True), Role.ADMIN, True),
        (member(Role.VIEWER), Role.INVOKER, False),
        (Principal("u2", "bob", False), Role.VIEWER, False),  # not a member
    ],
)
def test_may_grant(principal: Principal, role: Role, allowed: bool) -> None:
    assert principal.may_grant(role, TEAM) is allowed
