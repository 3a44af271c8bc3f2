"""teams: admin accounts and invitations; member roles (owner, developer, viewer); API token expiry,
last use and revocation; deleted projects and services keep their rows (for audit and deployments)

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Before roles there were owners (each project's creator) and plain members, who could do what a
    # developer does now. A project left without an owner makes its members owners.
    op.execute("UPDATE memberships SET role = 'developer' WHERE role NOT IN ('owner', 'developer', 'viewer')")
    op.execute(
        "UPDATE memberships SET role = 'owner' WHERE project_id NOT IN "
        "(SELECT project_id FROM memberships WHERE role = 'owner')"
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        # A constant default, kept: any other default (or removing it) makes Alembic rebuild the table
        # on SQLite, whose foreign keys then cascade the DROP TABLE into every membership, token and
        # session (tests/store/test_migration_0005.py).
        batch_op.add_column(sa.Column("is_admin", sa.Boolean(), nullable=False, server_default="0"))
    # The account that set the installation up is its admin.
    op.execute("UPDATE users SET is_admin = true WHERE id IN (SELECT user_id FROM setup_claims)")
    op.create_table(
        "invitations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_audit_logs_project_actor_id", "audit_logs", ["project_id", "actor_email", "id"], unique=False
    )


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+, PostgreSQL): a batch rebuild of these tables would cascade into
    # their children on SQLite.
    op.drop_index("ix_audit_logs_project_actor_id", table_name="audit_logs")
    for table, column in (
        ("services", "deleted_at"),
        ("projects", "deleted_at"),
        ("api_tokens", "revoked_at"),
        ("api_tokens", "last_used_at"),
        ("api_tokens", "expires_at"),
        ("users", "is_admin"),
    ):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    op.drop_table("invitations")
    op.execute("UPDATE memberships SET role = 'member' WHERE role IN ('developer', 'viewer')")
