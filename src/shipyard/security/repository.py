"""All SQL of the identity domain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shipyard.security.models import ApiKey, Membership, Project, RefreshToken, Team, User


def _storable(*values: str) -> bool:
    """Whether strings from a request can be compared in SQL: PostgreSQL refuses NUL in text
    (an error, i.e. a 500), and no stored name, id or key can contain one anyway."""
    return not any("\x00" in v for v in values)


class IdentityRepository:
    def user_by_name(self, s: Session, username: str) -> User | None:
        if not _storable(username):
            return None
        return s.scalar(select(User).where(User.username == username))

    def user_by_id(self, s: Session, user_id: str) -> User | None:
        return s.get(User, user_id)

    def users(self, s: Session) -> Sequence[User]:
        return s.scalars(select(User).order_by(User.username)).all()

    def team_by_name(self, s: Session, name: str) -> Team | None:
        if not _storable(name):
            return None
        return s.scalar(select(Team).where(Team.name == name))

    def team_by_id(self, s: Session, team_id: str) -> Team | None:
        return s.get(Team, team_id)

    def teams(self, s: Session, team_ids: Sequence[str] | None = None) -> Sequence[Team]:
        query = select(Team).order_by(Team.name)
        if team_ids is not None:
            query = query.where(Team.id.in_(team_ids))
        return s.scalars(query).all()

    def project(self, s: Session, team_id: str, name: str) -> Project | None:
        if not _storable(team_id, name):
            return None
        return s.scalar(select(Project).where(Project.team_id == team_id, Project.name == name))

    def project_by_id(self, s: Session, project_id: str) -> Project | None:
        return s.get(Project, project_id)

    def projects(self, s: Session, team_id: str) -> Sequence[Project]:
        return s.scalars(
            select(Project).where(Project.team_id == team_id).order_by(Project.name)
        ).all()

    def memberships_of_user(self, s: Session, user_id: str) -> Sequence[Membership]:
        return s.scalars(select(Membership).where(Membership.user_id == user_id)).all()

    def membership(self, s: Session, team_id: str, user_id: str) -> Membership | None:
        return s.get(Membership, (team_id, user_id))

    def members(self, s: Session, team_id: str) -> Sequence[tuple[Membership, User]]:
        rows = s.execute(
            select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.team_id == team_id)
            .order_by(User.username)
        )
        return [(m, u) for m, u in rows.tuples()]

    def api_key(self, s: Session, key_id: str) -> ApiKey | None:
        if not _storable(key_id):
            return None
        return s.scalar(select(ApiKey).where(ApiKey.key_id == key_id))

    def api_keys_of_user(self, s: Session, user_id: str | None) -> Sequence[ApiKey]:
        query = select(ApiKey).order_by(ApiKey.created_at)
        if user_id is not None:
            query = query.where(ApiKey.user_id == user_id)
        return s.scalars(query).all()

    def touch_api_key(self, s: Session, key_pk: str, at: datetime) -> None:
        s.execute(update(ApiKey).where(ApiKey.id == key_pk).values(last_used_at=at))

    def refresh_token(self, s: Session, token_hash: str) -> RefreshToken | None:
        return s.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))

    def spend_refresh_token(self, s: Session, token_id: str, at: datetime) -> bool:
        """Mark a refresh token used, atomically: of concurrent spenders exactly one wins."""
        result = s.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=at)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    def add(self, s: Session, row: object) -> None:
        s.add(row)
        s.flush()


identity_repository = IdentityRepository()
