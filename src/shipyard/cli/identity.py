"""``shipyard teams``, ``projects``, ``users`` and ``members``."""

from __future__ import annotations

from typing import Annotated

import typer

from shipyard.cli._common import JsonOption, emit, emit_one, err, parse_tags, session

teams = typer.Typer(help="Teams: the unit of isolation.", no_args_is_help=True)
projects = typer.Typer(
    help="Projects (TEAM/PROJECT) group work inside a team.", no_args_is_help=True
)
users = typer.Typer(help="Users (platform admins only).", no_args_is_help=True)
members = typer.Typer(help="Who belongs to a team, and with which role.", no_args_is_help=True)

TEAM_COLUMNS = ("name", "description", "required_tags", "quotas", "policies", "created_at")
PROJECT_COLUMNS = ("team", "name", "description", "tags", "created_at")


@teams.command("create")
def create_team(
    name: str,
    description: Annotated[str, typer.Option(help="What the team works on")] = "",
    required_tag: Annotated[
        list[str] | None, typer.Option(help="A tag key every project must carry (repeatable)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a team, optionally with a tag policy."""
    with session() as client:
        team = client.create_team(name, description=description, required_tags=required_tag or [])
    emit_one(team, as_json)


@teams.command("ls")
def list_teams(as_json: JsonOption = False) -> None:
    """List the teams you belong to (every team for platform admins)."""
    with session() as client:
        emit(client.list_teams(), TEAM_COLUMNS, as_json)


@teams.command("show")
def show_team(name: str, as_json: JsonOption = False) -> None:
    """Show a team and its tag policy."""
    with session() as client:
        emit_one(client.get_team(name), as_json)


@teams.command("update")
def update_team(
    name: str,
    description: Annotated[str | None, typer.Option(help="What the team works on")] = None,
    max_instance_count: Annotated[
        int | None,
        typer.Option(min=0, help="Most instances one job may ask for; 0 removes the limit"),
    ] = None,
    require_network_isolation: Annotated[
        bool | None,
        typer.Option(
            "--require-network-isolation/--no-require-network-isolation",
            help="Whether every job of the team must run network-isolated",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a team's description, job quota or job policy (team admins and leads)."""
    with session() as client:
        quotas = policies = None
        if max_instance_count is not None or require_network_isolation is not None:
            team = client.get_team(name)  # quotas and policies are replaced whole: merge
            if max_instance_count is not None:
                quotas = {**team.get("quotas", {}), "max_instance_count": max_instance_count}
                if max_instance_count == 0:
                    del quotas["max_instance_count"]
            if require_network_isolation is not None:
                policies = {
                    **(team.get("policies") or {}),
                    "require_network_isolation": require_network_isolation,
                }
        updated = client.update_team(
            name, description=description, quotas=quotas, policies=policies
        )
    emit_one(updated, as_json)


@projects.command("create")
def create_project(
    project: Annotated[str, typer.Argument(help="TEAM/PROJECT")],
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE (repeatable)")] = None,
    description: Annotated[str, typer.Option(help="What the project is for")] = "",
    as_json: JsonOption = False,
) -> None:
    """Create a project; the team's required tags must be given with --tag."""
    tags = parse_tags(tag or [])
    with session() as client:
        emit_one(client.create_project(project, description=description, tags=tags), as_json)


@projects.command("ls")
def list_projects(team: str, as_json: JsonOption = False) -> None:
    """List a team's projects."""
    with session() as client:
        emit(client.list_projects(team), PROJECT_COLUMNS, as_json)


@projects.command("show")
def show_project(
    project: Annotated[str, typer.Argument(help="TEAM/PROJECT")], as_json: JsonOption = False
) -> None:
    """Show a project and its tags."""
    with session() as client:
        emit_one(client.get_project(project), as_json)


@users.command("create")
def create_user(
    username: str,
    password: Annotated[
        str | None,
        typer.Option(help="Prompted when omitted", envvar="SHIPYARD_NEW_PASSWORD"),
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make a platform admin")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a user with a password (at least 8 characters)."""
    secret = password or typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with session() as client:
        emit_one(client.create_user(username, secret, admin=admin), as_json)


@users.command("ls")
def list_users(as_json: JsonOption = False) -> None:
    """List users."""
    with session() as client:
        emit(client.list_users(), ("username", "is_admin", "disabled", "created_at"), as_json)


@members.command("add")
def add_member(
    team: str,
    username: str,
    role: Annotated[str, typer.Option(help="admin, lead, scientist, engineer, viewer or invoker")],
    as_json: JsonOption = False,
) -> None:
    """Add a user to a team with a role, or change their role."""
    with session() as client:
        emit_one(client.add_member(team, username, role), as_json)


@members.command("ls")
def list_members(team: str, as_json: JsonOption = False) -> None:
    """List a team's members and roles."""
    with session() as client:
        emit(client.list_members(team), ("username", "role", "since"), as_json)


@members.command("rm")
def remove_member(team: str, username: str) -> None:
    """Remove a user from a team."""
    with session() as client:
        client.remove_member(team, username)
    err.print(f"Removed {username} from {team}")


def register(app: typer.Typer) -> None:
    app.add_typer(teams, name="teams")
    app.add_typer(projects, name="projects")
    app.add_typer(users, name="users")
    app.add_typer(members, name="members")
