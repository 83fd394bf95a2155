"""All SQL of the model registry."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session

from shipyard.registry.models import ModelCard, ModelGroup, ModelVersion


class RegistryRepository:
    def group(self, s: Session, project_id: str, name: str) -> ModelGroup | None:
        return s.scalar(
            select(ModelGroup).where(ModelGroup.project_id == project_id, ModelGroup.name == name)
        )

    def groups(self, s: Session, project_id: str) -> Sequence[ModelGroup]:
        query = select(ModelGroup).where(ModelGroup.project_id == project_id)
        return s.scalars(query.order_by(ModelGroup.name)).all()

    def add(self, s: Session, row: ModelGroup | ModelVersion | ModelCard) -> None:
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
        expected_row_version: int,
    ) -> bool:
        """Move a pending version to its outcome in one conditional update: of concurrent
        approve/reject calls exactly one wins, and a decision binds to what the decider saw
        (the digest, and the row version, which every card edit bumps)."""
        result = s.execute(
            update(ModelVersion)
            .where(
                ModelVersion.id == version_id,
                ModelVersion.status == "PendingManualApproval",
                ModelVersion.manifest_digest == expected_digest,
                ModelVersion.row_version == expected_row_version,
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

    def latest_versions(
        self, s: Session, group_ids: Sequence[str], per_group: int
    ) -> dict[str, list[ModelVersion]]:
        """The newest ``per_group`` live versions of each group, in one query."""
        rank = (
            func.row_number()
            .over(partition_by=ModelVersion.group_id, order_by=ModelVersion.version.desc())
            .label("rank")
        )
        ranked = (
            select(ModelVersion.id, rank)
            .where(ModelVersion.group_id.in_(group_ids), ModelVersion.deleted.is_(False))
            .subquery()
        )
        query = (
            select(ModelVersion)
            .join(ranked, ranked.c.id == ModelVersion.id)
            .where(ranked.c.rank <= per_group)
            .order_by(ModelVersion.version.desc())
        )
        found: dict[str, list[ModelVersion]] = {group_id: [] for group_id in group_ids}
        for row in s.scalars(query):
            found[row.group_id].append(row)
        return found

    def status_summary(self, s: Session, group_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Per group: the newest approved number and how many versions wait for a decision."""
        approved = func.max(
            case((ModelVersion.status == "Approved", ModelVersion.version), else_=None)
        )
        pending = func.sum(case((ModelVersion.status == "PendingManualApproval", 1), else_=0))
        query = (
            select(ModelVersion.group_id, approved, pending)
            .where(ModelVersion.group_id.in_(group_ids), ModelVersion.deleted.is_(False))
            .group_by(ModelVersion.group_id)
        )
        return {
            group_id: {"latest_approved": top, "pending": int(waiting or 0)}
            for group_id, top, waiting in s.execute(query)
        }

    def claim_pending_edit(self, s: Session, version_id: str, expected_row_version: int) -> bool:
        """Bump a pending version's row version before a card edit: it locks the row until
        the edit commits, so an edit and a decision serialize, and a concurrent edit or a
        decision taken meanwhile makes this one fail instead of writing over it."""
        result = s.execute(
            update(ModelVersion)
            .where(
                ModelVersion.id == version_id,
                ModelVersion.status == "PendingManualApproval",
                ModelVersion.row_version == expected_row_version,
            )
            .values(row_version=ModelVersion.row_version + 1)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def mark_deleted(self, s: Session, version_id: str) -> bool:
        result = s.execute(
            update(ModelVersion)
            .where(ModelVersion.id == version_id, ModelVersion.deleted.is_(False))
            .values(deleted=True, row_version=ModelVersion.row_version + 1)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def versions_from(
        self, s: Session, project_id: str, *, run_ids: Sequence[str], job_names: Sequence[str]
    ) -> Sequence[ModelVersion]:
        """Live versions registered from any of these runs or jobs (lineage, downstream)."""
        query = select(ModelVersion).where(
            ModelVersion.project_id == project_id,
            ModelVersion.deleted.is_(False),
            or_(ModelVersion.run_id.in_(run_ids), ModelVersion.job_name.in_(job_names)),
        )
        return s.scalars(query.order_by(ModelVersion.version)).all()

    def group_names(self, s: Session, group_ids: Sequence[str]) -> dict[str, str]:
        query = select(ModelGroup.id, ModelGroup.name).where(ModelGroup.id.in_(group_ids))
        return {str(group_id): str(name) for group_id, name in s.execute(query)}

    # --- model cards -------------------------------------------------------------------------

    def card(self, s: Session, version_id: str, revision: int | None = None) -> ModelCard | None:
        query = select(ModelCard).where(ModelCard.version_id == version_id)
        if revision is not None:
            return s.scalar(query.where(ModelCard.revision == revision))
        return s.scalar(query.order_by(ModelCard.revision.desc()).limit(1))

    def card_revisions(self, s: Session, version_id: str) -> Sequence[ModelCard]:
        query = select(ModelCard).where(ModelCard.version_id == version_id)
        return s.scalars(query.order_by(ModelCard.revision)).all()


registry_repository = RegistryRepository()
