"""All SQL of the model registry."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shipyard.registry.models import ModelGroup, ModelVersion


class RegistryRepository:
    def group(self, s: Session, project_id: str, name: str) -> ModelGroup | None:
        return s.scalar(
            select(ModelGroup).where(ModelGroup.project_id == project_id, ModelGroup.name == name)
        )

    def groups(self, s: Session, project_id: str) -> Sequence[ModelGroup]:
        query = select(ModelGroup).where(ModelGroup.project_id == project_id)
        return s.scalars(query.order_by(ModelGroup.name)).all()

    def add(self, s: Session, row: ModelGroup | ModelVersion) -> None:
        s.add(row)
        s.flush()

    def next_number(self, s: Session, group_id: str) -> int:
        """Bump the group's counter and return the new value, in one statement: concurrent
        registrations each get their own number (the row lock on PostgreSQL, the single
        writer on SQLite), and a number is never handed out twice, even after deletes."""
        number = s.execute(
            update(ModelGroup)
            .where(ModelGroup.id == group_id)
            .values(last_version=ModelGroup.last_version + 1)
            .returning(ModelGroup.last_version)
            .execution_options(synchronize_session=False)
        ).scalar_one()
        return int(number)

    def version(self, s: Session, group_id: str, number: int) -> ModelVersion | None:
        return s.scalar(
            select(ModelVersion).where(
                ModelVersion.group_id == group_id,
                ModelVersion.version == number,
                ModelVersion.deleted.is_(False),
            )
        )

    def versions(self, s: Session, group_id: str) -> Sequence[ModelVersion]:
        query = select(ModelVersion).where(
            ModelVersion.group_id == group_id, ModelVersion.deleted.is_(False)
        )
        return s.scalars(query.order_by(ModelVersion.version.desc())).all()

    def decide(
        self,
        s: Session,
        version_id: str,
        *,
        status: str,
        actor: str,
        comment: str,
        at: datetime,
        expected_digest: str,
    ) -> bool:
        """Move a pending version to its outcome in one conditional update: of concurrent
        approve/reject calls exactly one wins, and a decision binds to the digest it saw."""
        result = s.execute(
            update(ModelVersion)
            .where(
                ModelVersion.id == version_id,
                ModelVersion.status == "PendingManualApproval",
                ModelVersion.manifest_digest == expected_digest,
            )
            .values(
                status=status,
                decided_by=actor,
                decided_at=at,
                decision_comment=comment,
                row_version=ModelVersion.row_version + 1,
            )
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


registry_repository = RegistryRepository()
