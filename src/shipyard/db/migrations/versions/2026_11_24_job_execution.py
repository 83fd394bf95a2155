"""job execution: requests, instances, job token; team policies

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("instances", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("token_key_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("output_artifacts", sa.JSON(), nullable=True))
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("policies", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_column("policies")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("output_artifacts")
        batch_op.drop_column("token_key_id")
        batch_op.drop_column("instances")
        batch_op.drop_column("request")
