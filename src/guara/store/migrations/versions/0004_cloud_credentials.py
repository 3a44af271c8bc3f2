"""cloud registries: a credential kind (password, aws_ecr, google) and the AWS region and role

Existing rows become "password". The cloud secrets (an AWS secret access key, a Google JSON key) are
sealed in ``password_sealed`` like passwords, bound to a field name of their own.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("registry_credentials", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="password")
        )
        batch_op.add_column(sa.Column("aws_region", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("aws_role_arn", sa.String(length=600), nullable=True))


def downgrade() -> None:
    # Cloud credentials cannot be expressed without a kind: they go (their services pull anonymously).
    op.execute("DELETE FROM registry_credentials WHERE kind <> 'password'")
    with op.batch_alter_table("registry_credentials", schema=None) as batch_op:
        batch_op.drop_column("aws_role_arn")
        batch_op.drop_column("aws_region")
        batch_op.drop_column("kind")
