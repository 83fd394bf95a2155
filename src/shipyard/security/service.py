"""Identity logic: users, teams, projects, memberships, login, API keys, authentication.

No HTTP and no commits here: callers own the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
)
from shipyard.kit.ids import new_secret, utcnow
from shipyard.kit.ratelimit import SlidingWindow
from shipyard.kit.ttlcache import TTLCache
from shipyard.security import schemas
from shipyard.security.keyring import MasterKey, seal_with, unseal_with
from shipyard.security.models import ApiKey, Membership, Project, RefreshToken, Team, User
from shipyard.security.passwords import hash_password, hash_token, tokens_equal, verify_password
from shipyard.security.permissions import Permission, Role, grants
from shipyard.security.principal import KeyScope, Principal
from shipyard.security.repository import identity_repository as repo
from shipyard.security.tokens import (
    AccessTokens,
    format_api_key,
    looks_like_jwt,
    new_api_key_id,
    new_api_key_secret,
    parse_api_key,
)


@dataclass(frozen=True)
class NewApiKey:
    row: ApiKey
    secret: str

    @property
    def token(self) -> str:
        return format_api_key(self.row.key_id, self.secret)


def missing_tags(required: Sequence[str], tags: dict[str, str]) -> list[str]:
    return [key for key in required if not tags.get(key)]


class IdentityService:
    def __init__(
        self,
        *,
        master_key: MasterKey,
        access_tokens: AccessTokens,
        refresh_ttl_s: int,
        default_key_ttl_days: int,
        login_throttle: SlidingWindow,
        cache_ttl_s: float = 5.0,
    ) -> None:
        self._master = master_key
        self.access_tokens = access_tokens
        self._refresh_ttl = timedelta(seconds=refresh_ttl_s)
        self._default_key_ttl = timedelta(days=default_key_ttl_days)
        self._throttle = login_throttle
        # Every request authenticates and resolves its project; both are cached briefly so
        # the hot paths (metric logging) skip those queries. A change made here clears both.
        self._principals: TTLCache[str, Principal] = TTLCache(cache_ttl_s)
        self._places: TTLCache[tuple[str, str], tuple[Team, Project]] = TTLCache(cache_ttl_s)

    def _changed(self, s: Session) -> None:
        """Forget cached principals now and again at commit, so no request that read the
        old rows meanwhile can put them back."""
        self._principals.clear()
        self._places.clear()
        event.listen(s, "after_commit", lambda _s: self._principals.clear(), once=True)

    # --- users -------------------------------------------------------------------------

    def create_user(self, s: Session, data: schemas.UserCreate) -> User:
        if repo.user_by_name(s, data.username):
            raise Conflict(f"user {data.username!r} already exists", field="username")
        user = User(
            username=data.username,
            password_hash=hash_password(data.password),
            is_admin=data.is_admin,
        )
        repo.add(s, user)
        return user

    def get_user(self, s: Session, username: str) -> User:
        user = repo.user_by_name(s, username)
        if user is None:
            raise NotFound(f"user {username!r} not found", field="username")
        return user

    def list_users(self, s: Session) -> Sequence[User]:
        return repo.users(s)

    # --- teams and projects ------------------------------------------------------------

    def create_team(self, s: Session, creator: Principal, data: schemas.TeamCreate) -> Team:
        if repo.team_by_name(s, data.name):
            raise Conflict(f"team {data.name!r} already exists", field="name")
        team = Team(
            name=data.name,
            description=data.description,
            required_tags=data.required_tags,
            tags=data.tags,
        )
        repo.add(s, team)
        if not creator.is_admin:
            repo.add(s, Membership(team_id=team.id, user_id=creator.user_id, role=Role.LEAD))
        return team

    def visible_teams(self, s: Session, principal: Principal) -> Sequence[Team]:
        if principal.is_platform_admin:
            return repo.teams(s)
        return [t for t in repo.teams(s, list(principal.team_roles)) if principal.sees_team(t.id)]

    def find_team(self, s: Session, principal: Principal, name: str) -> Team:
        """The team, or 404 when it does not exist *or* the caller may not know it exists."""
        team = repo.team_by_name(s, name)
        if team is None or not principal.sees_team(team.id):
            raise NotFound(f"team {name!r} not found", field="team")
        return team

    def update_team(self, s: Session, team: Team, data: schemas.TeamUpdate) -> Team:
        if data.description is not None:
            team.description = data.description
        if data.required_tags is not None:
            team.required_tags = data.required_tags
        if data.quotas is not None:
            team.quotas = data.quotas.model_dump(exclude_none=True)
        if data.policies is not None:
            team.policies = data.policies.model_dump()
        self._changed(s)  # cached places carry the team row
        s.flush()
        return team

    def create_project(self, s: Session, team: Team, data: schemas.ProjectCreate) -> Project:
        missing = missing_tags(team.required_tags, data.tags)
        if missing:
            raise ValidationFailed(
                f"team {team.name!r} requires tags: missing {', '.join(missing)}",
                field="tags",
                missing=missing,
            )
        if repo.project(s, team.id, data.name):
            raise Conflict(f"project {team.name}/{data.name} already exists", field="name")
        project = Project(
            team_id=team.id, name=data.name, description=data.description, tags=data.tags
        )
        try:
            repo.add(s, project)
        except IntegrityError as exc:
            raise Conflict(f"project {team.name}/{data.name} already exists") from exc
        return project

    def cached_place(
        self, principal: Principal, team: str, project: str
    ) -> tuple[Team, Project] | None:
        """Team and project from the cache, checked for this caller like ``find_project``."""
        found = self._places.get((team, project))
        if found is None or not principal.sees_project(found[0].id, found[1].id):
            return None
        return found

    def locate(
        self, s: Session, principal: Principal, team: str, project: str
    ) -> tuple[Team, Project]:
        """``find_team`` then ``find_project``, remembering the answer for ``cached_place``."""
        found_team = self.find_team(s, principal, team)
        found = self.find_project(s, principal, found_team, project)
        self._places.put((team, project), (found_team, found))
        return found_team, found

    def find_project(self, s: Session, principal: Principal, team: Team, name: str) -> Project:
        project = repo.project(s, team.id, name)
        if project is None or not principal.sees_project(team.id, project.id):
            raise NotFound(f"project {team.name}/{name} not found", field="project")
        return project

    def resolve_project(
        self, s: Session, team_name: str, project_name: str
    ) -> tuple[Team, Project]:
        """Team and project by name, for callers without a principal (presigned URLs)."""
        team = repo.team_by_name(s, team_name)
        project = repo.project(s, team.id, project_name) if team else None
        if team is None or project is None:
            raise NotFound(f"project {team_name}/{project_name} not found", field="project")
        return team, project

    def project_names(self, s: Session, project_id: str) -> tuple[str, str] | None:
        """(team, project) names of a project id, without an access check: for resolving
        what a project-scoped key points at; the caller still checks access by name."""
        project = repo.project_by_id(s, project_id)
        team = repo.team_by_id(s, project.team_id) if project else None
        return (team.name, project.name) if team and project else None

    def list_projects(self, s: Session, principal: Principal, team: Team) -> list[Project]:
        return [p for p in repo.projects(s, team.id) if principal.sees_project(team.id, p.id)]

    # --- memberships -------------------------------------------------------------------

    def add_member(
        self, s: Session, principal: Principal, team: Team, data: schemas.MemberAdd
    ) -> Membership:
        """Add a member or change their role; never to a role, or from one, above the caller's."""
        if not principal.may_grant(data.role, team.id):
            raise PermissionDenied(f"you may not grant role {data.role.value!r}", field="role")
        user = self.get_user(s, data.username)
        membership = repo.membership(s, team.id, user.id)
        if membership is None:
            membership = Membership(team_id=team.id, user_id=user.id, role=data.role)
            repo.add(s, membership)
        else:
            self._check_outranks(principal, team, data.username, membership)
            membership.role = data.role
            s.flush()
        self._changed(s)
        return membership

    def remove_member(self, s: Session, principal: Principal, team: Team, username: str) -> None:
        user = self.get_user(s, username)
        membership = repo.membership(s, team.id, user.id)
        if membership is None:
            raise NotFound(f"{username!r} is not a member of {team.name!r}", field="username")
        self._check_outranks(principal, team, username, membership)
        s.delete(membership)
        s.flush()
        self._changed(s)

    @staticmethod
    def _check_outranks(
        principal: Principal, team: Team, username: str, membership: Membership
    ) -> None:
        """A lead may not demote or remove a team admin: only who could grant a role revokes it."""
        if not principal.may_grant(Role(membership.role), team.id):
            raise PermissionDenied(
                f"you may not change the membership of {username!r}, "
                f"whose role {membership.role!r} is above yours",
                field="username",
            )

    def list_members(self, s: Session, team: Team) -> Sequence[tuple[Membership, User]]:
        return repo.members(s, team.id)

    # --- login -------------------------------------------------------------------------

    def login(self, s: Session, username: str, password: str, client: str) -> schemas.TokenPair:
        throttle_keys = (f"user:{username}", f"client:{client}")
        wait = max(self._throttle.retry_after(k) for k in throttle_keys)
        if wait:
            raise RateLimited("too many failed logins; try again later", retry_after_s=wait)
        user = repo.user_by_name(s, username)
        if not verify_password(user.password_hash if user else None, password) or not user:
            for key in throttle_keys:
                self._throttle.record(key)
            raise Unauthenticated("wrong username or password")
        if user.disabled:
            raise Unauthenticated("this user is disabled")
        self._throttle.reset(f"user:{username}")
        return self._token_pair(s, user)

    def refresh(self, s: Session, refresh_token: str) -> schemas.TokenPair:
        row = repo.refresh_token(s, hash_token(refresh_token))
        if row is None or row.revoked_at or row.expires_at <= utcnow():
            raise Unauthenticated("the refresh token is not valid")
        # One use only, so a stolen, replayed token stops working. A conditional UPDATE, not
        # a read-then-write: concurrent replays all read "unused" (PostgreSQL, read committed).
        if not repo.spend_refresh_token(s, row.id, utcnow()):
            raise Unauthenticated("the refresh token is not valid")
        user = repo.user_by_id(s, row.user_id)
        if user is None or user.disabled:
            raise Unauthenticated("the refresh token is not valid")
        return self._token_pair(s, user)

    def _token_pair(self, s: Session, user: User) -> schemas.TokenPair:
        refresh = new_secret(32)
        repo.add(
            s,
            RefreshToken(
                user_id=user.id,
                token_hash=hash_token(refresh),
                expires_at=utcnow() + self._refresh_ttl,
            ),
        )
        return schemas.TokenPair(
            access_token=self.access_tokens.issue(user.id),
            refresh_token=refresh,
            expires_in=self.access_tokens.ttl_s,
        )

    # --- API keys ----------------------------------------------------------------------

    def create_api_key(
        self, s: Session, principal: Principal, data: schemas.ApiKeyCreate
    ) -> NewApiKey:
        team_id, project_id = self._key_scope(s, principal, data)
        if team_id and not principal.can(
            Permission.KEY_MANAGE, team_id=team_id, project_id=project_id
        ):
            raise PermissionDenied("you may not create keys in this scope", field="team")
        allowed = (
            principal.may_grant(data.role, team_id) if team_id else principal.is_platform_admin
        )
        if not allowed:
            raise PermissionDenied(
                f"a key may not carry role {data.role.value!r}: it is higher than yours",
                field="role",
            )
        expiry = (
            timedelta(days=data.expires_in_days)
            if data.expires_in_days
            else (self._default_key_ttl)
        )
        return self._new_key(
            s, data.name, principal.user_id, team_id, project_id, data.role, utcnow() + expiry
        )

    def _new_key(
        self,
        s: Session,
        name: str,
        user_id: str,
        team_id: str | None,
        project_id: str | None,
        role: Role,
        expires_at: datetime,
    ) -> NewApiKey:
        key_id, secret = new_api_key_id(), new_api_key_secret()
        row = ApiKey(
            key_id=key_id,
            name=name,
            user_id=user_id,
            team_id=team_id,
            project_id=project_id,
            role=role,
            secret_hash=hash_token(secret),
            secret_encrypted=self._master.seal(secret.encode(), context=key_id.encode()),
            expires_at=expires_at,
        )
        repo.add(s, row)
        return NewApiKey(row=row, secret=secret)

    def _key_scope(
        self, s: Session, principal: Principal, data: schemas.ApiKeyCreate
    ) -> tuple[str | None, str | None]:
        if data.project:
            team_name, project_name = data.project.split("/", 1)
            team = self.find_team(s, principal, team_name)
            project = self.find_project(s, principal, team, project_name)
            return team.id, project.id
        if data.team:
            return self.find_team(s, principal, data.team).id, None
        if not principal.is_platform_admin:
            raise ValidationFailed("a key needs a scope: team or project", field="team")
        return None, None

    def list_api_keys(self, s: Session, principal: Principal) -> Sequence[ApiKey]:
        self._check_key_manager(principal)
        rows = repo.api_keys_of_user(s, None if principal.is_platform_admin else principal.user_id)
        return [row for row in rows if self._manages(principal, row)]

    def issue_workload_key(
        self,
        s: Session,
        *,
        username: str,
        team_id: str,
        project_id: str,
        role: Role,
        name: str,
        expires_at: datetime,
    ) -> NewApiKey:
        """A key the platform makes for code it runs on a user's behalf (a job's script).

        Scoped to one project, never above ``role``, on the submitter's account (so the audit
        trail names them), expiring at ``expires_at``; the platform revokes it when the
        workload ends. No principal check: the caller already authorised the workload.
        """
        user = repo.user_by_name(s, username)
        if user is None:
            raise NotFound(f"user {username!r} not found", field="created_by")
        return self._new_key(s, name[:128], user.id, team_id, project_id, role, expires_at)

    def revoke_workload_key(self, s: Session, key_id: str) -> None:
        row = repo.api_key(s, key_id)
        if row is not None and row.revoked_at is None:
            row.revoked_at = utcnow()
            self._changed(s)
            s.flush()

    def revoke_api_key(self, s: Session, principal: Principal, key_id: str) -> ApiKey:
        self._check_key_manager(principal)
        row = repo.api_key(s, key_id)
        if row is None or not self._manages(principal, row):
            raise NotFound(f"API key {key_id!r} not found", field="key_id")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            self._changed(s)
            s.flush()
        return row

    @staticmethod
    def _check_key_manager(principal: Principal) -> None:
        """A key whose role lacks key:manage (an invoker's) may not list or revoke keys.

        Without this, an application key made by an admin could revoke the admin's own keys.
        """
        if principal.key is not None and not grants(principal.key.role, Permission.KEY_MANAGE):
            raise PermissionDenied(f"{principal.username} lacks {Permission.KEY_MANAGE.value} here")

    @staticmethod
    def _manages(principal: Principal, row: ApiKey) -> bool:
        """One's own keys (platform admins: all); through a scoped key, only keys in its scope."""
        if principal.is_platform_admin:
            return True
        if row.user_id != principal.user_id:
            return False
        scope = principal.key
        if scope is None or scope.team_id is None:
            return True
        return row.team_id == scope.team_id and scope.project_id in (None, row.project_id)

    def api_key_secret(self, row: ApiKey) -> str:
        """The plaintext secret, for verifying AWS SigV4 signatures at the gateway."""
        return self._master.unseal(row.secret_encrypted, context=row.key_id.encode()).decode()

    def sigv4_credentials(self, s: Session, key_id: str) -> tuple[Principal, str]:
        """The caller behind an API key id and the key's secret, for verifying AWS SigV4
        signatures at the gateway. Every check of ``authenticate`` applies (revoked,
        expired, disabled user)."""
        row = repo.api_key(s, key_id)
        if row is None:
            raise Unauthenticated("the API key is not valid")
        secret = self.api_key_secret(row)
        return self.authenticate(s, format_api_key(key_id, secret)), secret

    def reseal_api_key_secrets(self, s: Session, old: bytes, new: bytes) -> int:
        """Re-seal every API key secret under a new master key (part of a rotation)."""
        rows = repo.api_keys_of_user(s, None)
        for row in rows:
            context = row.key_id.encode()
            secret = unseal_with(old, row.secret_encrypted, context=context)
            row.secret_encrypted = seal_with(new, secret, context=context)
        s.flush()
        return len(rows)

    # --- authentication ----------------------------------------------------------------

    def cached_principal(self, token: str) -> Principal | None:
        return self._principals.get(hash_token(token))

    def authenticate(self, s: Session, token: str) -> Principal:
        if looks_like_jwt(token):
            claims = self.access_tokens.decode(token)
            user = repo.user_by_id(s, claims.user_id)
            if user is None or user.disabled:
                raise Unauthenticated("the access token is not valid")
            principal = self._principal(s, user, None)
            until = claims.expires_at.timestamp()
            self._principals.put(hash_token(token), principal, until_unix=until)
            return principal
        key_id, secret = parse_api_key(token)
        row = repo.api_key(s, key_id)
        if row is None or not tokens_equal(row.secret_hash, hash_token(secret)):
            raise Unauthenticated("the API key is not valid")
        if row.revoked_at is not None:
            raise Unauthenticated("the API key has been revoked")
        if row.expires_at is not None and row.expires_at <= utcnow():
            raise Unauthenticated("the API key has expired")
        user = repo.user_by_id(s, row.user_id)
        if user is None or user.disabled:
            raise Unauthenticated("the API key's user is disabled")
        scope = KeyScope(row.key_id, Role(row.role), row.team_id, row.project_id)
        principal = self._principal(s, user, scope)
        deadline = row.expires_at.timestamp() if row.expires_at is not None else None
        self._principals.put(hash_token(token), principal, until_unix=deadline)
        return principal

    def _principal(self, s: Session, user: User, key: KeyScope | None) -> Principal:
        roles = {m.team_id: Role(m.role) for m in repo.memberships_of_user(s, user.id)}
        return Principal(user.id, user.username, user.is_admin, roles, key)

    def key_out(self, s: Session, row: ApiKey) -> schemas.ApiKeyOut:
        user = repo.user_by_id(s, row.user_id)
        return schemas.ApiKeyOut(
            key_id=row.key_id,
            name=row.name,
            username=user.username if user else "?",
            scope=self._scope_label(s, row),
            role=Role(row.role),
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            last_used_at=row.last_used_at,
        )

    def _scope_label(self, s: Session, row: ApiKey) -> str:
        if row.project_id:
            project = repo.project_by_id(s, row.project_id)
            team = repo.team_by_id(s, project.team_id) if project else None
            return f"project:{team.name if team else '?'}/{project.name if project else '?'}"
        if row.team_id:
            team = repo.team_by_id(s, row.team_id)
            return f"team:{team.name if team else '?'}"
        return "platform"

    def check(self, principal: Principal, permission: Permission, **scope: str | None) -> None:
        if not principal.can(permission, **scope):
            raise PermissionDenied(f"{principal.username} lacks {permission.value} here")
