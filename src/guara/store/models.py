"""SQLAlchemy models. Schema changes go through a new Alembic revision, never an edit of an old one."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


# SQLite only auto-increments an INTEGER PRIMARY KEY.
AutoIncrementId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class SetupClaim(Base):
    """One row, ever: its primary key makes 'create the first account' happen once."""

    __tablename__ = "setup_claims"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The first account is the admin: it creates further accounts and invitations.
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)


class Invitation(Base):
    """A link that lets one person create an account until it expires or is used."""

    __tablename__ = "invitations"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # When set, only this email may accept it.
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # None: never expires. A revoked token keeps its row, so using it says "revoked", not "invalid".
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WebSession(Base):
    __tablename__ = "web_sessions"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A deleted project keeps its row so its audit entries stay; nobody can reach it any more.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Membership(Base):
    __tablename__ = "memberships"
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16))  # guara.core.roles.Role: owner | developer | viewer


class Service(Base):
    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_services_project_name"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    build_method: Mapped[str] = mapped_column(String(32), default="docker_image")
    image: Mapped[str] = mapped_column(String(512))
    platform: Mapped[str] = mapped_column(String(64), default="linux/amd64")
    # The container port the service listens on, and the HTTP path that says it is ready (None: the
    # port accepting connections is enough).
    port: Mapped[int] = mapped_column(Integer, default=8080)
    health_path: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Optimistic lock (SQLAlchemy's version counter): an update of a row read at version N only lands
    # while the row is still at N. Changes to a service's credentials update the service row too.
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A deleted service keeps its row (renamed, freeing its name) so that its deployment history and
    # audit entries stay readable; its credentials rows are deleted.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __mapper_args__ = {"version_id_col": version}


class RegistryCredential(Base):
    __tablename__ = "registry_credentials"
    service_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("services.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    registry_host: Mapped[str] = mapped_column("registry", String(255))
    # password | aws_ecr | google. What the two columns below hold depends on it: the user name and
    # the password; the access key id and the secret access key; the client email and the JSON key.
    kind: Mapped[str] = mapped_column(String(16), default="password", server_default="password")
    username: Mapped[str] = mapped_column(String(255))
    # A guara.secrets envelope: key version, nonce, AES-256-GCM ciphertext. Never plaintext.
    password_sealed: Mapped[str] = mapped_column(Text)
    aws_region: Mapped[str | None] = mapped_column(String(32), nullable=True)
    aws_role_arn: Mapped[str | None] = mapped_column(String(600), nullable=True)
    key_version: Mapped[int] = mapped_column(Integer, index=True)
    verification: Mapped[str] = mapped_column(String(16))  # passed | overridden
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CredentialHealth(Base):
    """What the last scheduled (or Check now) preflight of a service's stored credentials found, the
    expiry date the user gave, and the scheduler's lease. Kept beside the credentials row: a save
    resets the results, a removal leaves them unread until credentials come back."""

    __tablename__ = "credential_health"
    service_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("services.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_passed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    expires_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    # The expires_on date whose 14-day window was already announced (audited once per date).
    expiry_warned_for: Mapped[date | None] = mapped_column(Date, nullable=True)
    # The lease: a scheduler claims a due service by moving next_check_at forward in one conditional
    # UPDATE; whoever's UPDATE matched checks it, so each interval has exactly one check.
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    checked_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # The digest the service's tag pointed to (for its platform) at the last passing check, and the
    # one whose move was already announced (audited, notified, auto-deployed once per digest).
    tag_digest: Mapped[str | None] = mapped_column(String(100), nullable=True)
    tag_image: Mapped[str | None] = mapped_column(String(512), nullable=True)  # the image it is of
    tag_moved_to: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # Opt-in: deploy by itself when the tag moves (an audited deploy like any other).
    auto_deploy: Mapped[bool] = mapped_column(Boolean, default=False)


class ProjectWebhook(Base):
    """Where a project's health notifications go, and the secret they are signed with (sealed like a
    registry password: a guara.secrets envelope, never plaintext)."""

    __tablename__ = "project_webhooks"
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    secret_sealed: Mapped[str] = mapped_column(Text)
    key_version: Mapped[int] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One notification sent (or being sent) to a project's webhook: the delivery log."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_project_id_id", "project_id", "id"),)
    id: Mapped[int] = mapped_column(AutoIncrementId, primary_key=True, autoincrement=True)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(64))
    service_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Why the last attempt failed, for people (a guard refusal names the host and the kind of address).
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditLog(Base):
    """Append-only: nothing in guara updates or deletes an entry (a deleted project or service keeps
    its row, so its entries stay)."""

    __tablename__ = "audit_logs"
    __table_args__ = (
        Index("ix_audit_logs_project_id_id", "project_id", "id"),
        Index("ix_audit_logs_project_action_id", "project_id", "action", "id"),
        Index("ix_audit_logs_project_actor_id", "project_id", "actor_email", "id"),
    )
    id: Mapped[int] = mapped_column(AutoIncrementId, primary_key=True, autoincrement=True)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    actor_email: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(64))
    target_name: Mapped[str] = mapped_column(String(100), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Deployments still on their way (the runner works on them); at most one per service.
ACTIVE_DEPLOYMENT_STATUSES = ("pending", "resolving", "starting")
_ACTIVE_WHERE = text("status IN ('pending', 'resolving', 'starting')")


class Deployment(Base):
    __tablename__ = "deployments"
    __table_args__ = (
        Index("ix_deployments_service_created", "service_id", "created_at"),
        # The database, not a check-then-insert, keeps one deployment in progress per service.
        Index(
            "uq_deployments_one_active",
            "service_id",
            unique=True,
            sqlite_where=_ACTIVE_WHERE,
            postgresql_where=_ACTIVE_WHERE,
        ),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))  # see guara.core.deploy_runner
    image: Mapped[str] = mapped_column(String(512))
    platform: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str | None] = mapped_column(String(100), nullable=True)
    code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    with_credentials: Mapped[bool] = mapped_column(Boolean, default=False)
    manifests: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The process working on it (its runner's lease) and when that process last said it is alive: an
    # active deployment whose owner stopped renewing is ended as interrupted by any other process.
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # On a container engine: the container, its published address, and when it started serving.
    container_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    url: Mapped[str | None] = mapped_column(String(255), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
