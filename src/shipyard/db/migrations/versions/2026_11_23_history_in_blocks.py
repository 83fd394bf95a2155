"""history in blocks: metric history lives only in metric_blocks

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 23:30:00

Series logged before 0003 have rows in metric_points and no blocks: they are packed into one
block each (in arrival order) before the row table goes.
"""

from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


BLOCKS = sa.table(
    "metric_blocks",
    sa.column("series_id"),
    sa.column("count"),
    sa.column("steps"),
    sa.column("timestamps"),
    sa.column("values"),
)


def _backfill(conn: sa.Connection) -> None:
    unblocked = conn.execute(
        sa.text(
            "SELECT DISTINCT p.series_id FROM metric_points p WHERE NOT EXISTS "
            "(SELECT 1 FROM metric_blocks b WHERE b.series_id = p.series_id)"
        )
    ).scalars()
    for series_id in list(unblocked):
        rows = conn.execute(
            sa.text(
                "SELECT step, timestamp, value, is_nan FROM metric_points "
                "WHERE series_id = :sid ORDER BY id"
            ),
            {"sid": series_id},
        ).all()
        values = [float("nan") if nan else value for _, _, value, nan in rows]
        conn.execute(
            BLOCKS.insert(),
            {
                "series_id": series_id,
                "count": len(rows),
                "steps": np.asarray([r[0] for r in rows], dtype="<i8").tobytes(),
                "timestamps": np.asarray([r[1] for r in rows], dtype="<i8").tobytes(),
                "values": np.asarray(values, dtype="<f8").tobytes(),
            },
        )


def upgrade() -> None:
    _backfill(op.get_bind())
    with op.batch_alter_table("metric_points", schema=None) as batch_op:
        batch_op.drop_index("ix_metric_points_series_step")
    op.drop_table("metric_points")


def downgrade() -> None:
    op.create_table(
        "metric_points",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "series_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("is_nan", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["metric_series.id"],
            name=op.f("fk_metric_points_series_id_metric_series"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_points")),
    )
    with op.batch_alter_table("metric_points", schema=None) as batch_op:
        batch_op.create_index(
            "ix_metric_points_series_step", ["series_id", "step", "timestamp"], unique=False
        )
