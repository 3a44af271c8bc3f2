"""deployment lease (owner, heartbeat) and one active deployment per service

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = sa.text("status IN ('pending', 'resolving', 'starting')")


def upgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    # Deployments left active by an older version have no owner: end them before the index needs
    # them unique (an older version ran at most one per service anyway, but be safe).
    op.execute(
        sa.text(
            "UPDATE deployments SET status = 'failed', code = 'interrupted', "
            "message = 'guara was upgraded before this deployment finished; deploy again.' "
            "WHERE status IN ('pending', 'resolving', 'starting')"
        )
    )
    op.create_index(
        "uq_deployments_one_active",
        "deployments",
        ["service_id"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("uq_deployments_one_active", table_name="deployments")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("owner")
