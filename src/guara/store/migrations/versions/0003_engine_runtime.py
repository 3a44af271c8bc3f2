"""engine runtime: a service's port and health path; a deployment's container, address, start time

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.add_column(sa.Column("port", sa.Integer(), nullable=False, server_default="8080"))
        batch_op.add_column(sa.Column("health_path", sa.String(length=255), nullable=True))
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.alter_column("port", server_default=None)
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("container_id", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("url", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("started_at")
        batch_op.drop_column("url")
        batch_op.drop_column("container_id")
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.drop_column("health_path")
        batch_op.drop_column("port")
