"""API schemas: one per direction. Secrets only ever appear in input schemas, as SecretStr."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from guara.core.accounts import DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS
from guara.core.credentials import CredentialKind, CredentialsChange
from guara.core.invitations import DEFAULT_INVITATION_HOURS, MAX_INVITATION_HOURS
from guara.core.services import KEEP, ServiceChange
from guara.core.validation import (
    DEFAULT_PORT,
    EMAIL_PATTERN,
    HEALTH_PATH_PATTERN,
    MAX_PASSWORD,
    MAX_PROJECT_NAME,
    MAX_REGISTRY_SECRET,
    PROJECT_NAME_PATTERN,
)
from guara.deploy import DEFAULT_PLATFORM
from guara.deploy.platforms import PLATFORM_PATTERN
from guara.registry.cloud import MAX_JSON_KEY_CHARS


def documented(*, pattern: str, min_length: int = 0, max_length: int | None = None) -> dict[str, Any]:
    """Schema keywords for a rule the use case enforces itself (with its own precise error code): the
    document states the rule exactly, and one place checks it."""
    keywords: dict[str, Any] = {"pattern": pattern}
    if min_length:
        keywords["minLength"] = min_length
    if max_length is not None:
        keywords["maxLength"] = max_length
    return keywords


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


# What validation.service_name accepts (a Kubernetes object name); the schema says it exactly.
SERVICE_NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
# What credentials.username accepts: no control characters, no ':' (HTTP Basic), 1 to 255.
USERNAME_PATTERN = r"^[^\x00-\x1f\x7f:]{1,255}$"
# Printable ASCII without spaces: every image reference is; the grammar itself is checked by the API.
IMAGE_PATTERN = r"^[\x21-\x7e]+$"


class ProjectCreate(Input):
    name: str = Field(
        json_schema_extra=documented(pattern=PROJECT_NAME_PATTERN, min_length=1, max_length=MAX_PROJECT_NAME)
    )


class ErrorPublic(BaseModel):
    """Every error answer: a stable machine ``code`` and a message for people."""

    code: str
    message: str
    field: str | None = Field(default=None, description="the input field at fault, when one is")
    retry_after: int | None = Field(default=None, description="with 429: seconds until allowed again")
    elapsed_ms: int | None = Field(default=None, description="with a failed preflight: how long it took")
    errors: list[dict[str, Any]] | None = Field(default=None, description="with malformed requests")


_ERRORS = {
    400: "The body could not be read as JSON text (e.g. not UTF-8)",
    401: "Not authenticated: no valid API token (or session cookie and CSRF token); an expired or "
    "revoked token answers code token_expired or token_revoked",
    403: "Forbidden (code forbidden): your role in the project does not allow this action",
    404: "Not found, or not yours: other users' objects answer exactly like missing ones",
    409: "Conflict with the current state (a racing save, a name taken, a deploy in progress)",
    413: "The request body is over 256 KiB",
    422: "Invalid input, or (saving with verification) the preflight failed: its code and message",
    429: "Rate limited: see Retry-After",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers a route gives."""
    return {status: {"model": ErrorPublic, "description": _ERRORS[status]} for status in statuses}


class Output(BaseModel):
    """Built from the use cases' plain data objects by attribute."""

    model_config = ConfigDict(from_attributes=True)


RoleName = Literal["owner", "developer", "viewer"]


class MemberCreate(Input):
    """Add an existing account to the project by its email."""

    email: str = Field(json_schema_extra=documented(pattern=EMAIL_PATTERN, max_length=254))
    role: RoleName


class MemberUpdate(Input):
    role: RoleName


class MemberPublic(Output):
    user_id: uuid.UUID
    email: str
    role: RoleName


class TokenCreate(Input):
    name: str = Field(
        json_schema_extra=documented(pattern=PROJECT_NAME_PATTERN, min_length=1, max_length=MAX_PROJECT_NAME)
    )
    expires_in_days: int | None = Field(
        default=DEFAULT_TOKEN_DAYS,
        ge=1,
        le=MAX_TOKEN_DAYS,
        description=f"days until the token stops working; left out: {DEFAULT_TOKEN_DAYS}; null: never "
        "(a token that never expires works until revoked, however it leaks)",
    )


class TokenCreated(Output):
    """The new token: the only time ``token`` is shown."""

    id: uuid.UUID
    name: str
    token: str
    expires_at: datetime | None = Field(description="null: never expires")


class TokenPublic(Output):
    """A token as listed: never the token itself."""

    id: uuid.UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None = Field(description="null: never expires")


class AccountPublic(Output):
    id: uuid.UUID
    email: str
    is_admin: bool


class AccountCreate(Input):
    email: str = Field(json_schema_extra=documented(pattern=EMAIL_PATTERN, max_length=254))
    password: SecretStr = Field(min_length=8, max_length=MAX_PASSWORD)


class PasswordChange(Input):
    current_password: SecretStr = Field(max_length=MAX_PASSWORD)
    new_password: SecretStr = Field(min_length=8, max_length=MAX_PASSWORD)


class InvitationCreate(Input):
    email: str | None = Field(
        default=None,
        description="only this email may accept it",
        json_schema_extra=documented(pattern=EMAIL_PATTERN, max_length=254),
    )
    expires_in_hours: int = Field(default=DEFAULT_INVITATION_HOURS, ge=1, le=MAX_INVITATION_HOURS)


class InvitationCreated(Output):
    """The invitation link: shown this once."""

    id: uuid.UUID
    email: str | None
    expires_at: datetime
    url: str


class ProjectPublic(Output):
    id: uuid.UUID
    name: str
    role: str
    created_at: datetime


class CloudKeyFields(Input):
    """The fields of the cloud kinds (``aws_ecr``, ``google``); only the chosen kind's may be given."""

    kind: CredentialKind = Field(
        default="password",
        description="password (username + password, the default), aws_ecr (an AWS access key exchanged "
        "for an ECR login at each use) or google (a service account JSON key exchanged for an access token)",
    )
    aws_access_key_id: str | None = Field(default=None, max_length=128)
    aws_secret_access_key: SecretStr | None = Field(default=None, min_length=1, max_length=256)
    aws_region: str | None = Field(
        default=None, max_length=32, description="required when the registry host names no region"
    )
    aws_role_arn: str | None = Field(
        default=None, max_length=600, description="a role to assume with STS first"
    )
    google_json_key: SecretStr | None = Field(
        default=None, min_length=1, max_length=MAX_JSON_KEY_CHARS, description="the key file's JSON text"
    )

    def change_for(
        self, registry: str, username: str | None, password: SecretStr | None
    ) -> CredentialsChange:
        return CredentialsChange(
            registry,
            username,
            password,
            kind=self.kind,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_region=self.aws_region,
            aws_role_arn=self.aws_role_arn,
            google_json_key=self.google_json_key,
        )


class RegistryCredentialsCreate(CloudKeyFields):
    """New credentials: the registry and every required field of the kind (username and password by
    default)."""

    registry: str = Field(min_length=1, max_length=255)
    username: str | None = Field(default=None, json_schema_extra=documented(pattern=USERNAME_PATTERN))
    password: SecretStr | None = Field(default=None, min_length=1, max_length=MAX_REGISTRY_SECRET)

    def change(self) -> CredentialsChange:
        return self.change_for(self.registry, self.username, self.password)


class ServiceCreate(Input):
    name: str = Field(json_schema_extra=documented(pattern=SERVICE_NAME_PATTERN, min_length=1, max_length=63))
    image: str = Field(json_schema_extra=documented(pattern=IMAGE_PATTERN, min_length=1, max_length=512))
    platform: str = Field(default=DEFAULT_PLATFORM, json_schema_extra=documented(pattern=PLATFORM_PATTERN))
    port: int = Field(default=DEFAULT_PORT, json_schema_extra={"minimum": 1, "maximum": 65535})
    health_path: str | None = Field(default=None, json_schema_extra=documented(pattern=HEALTH_PATH_PATTERN))
    registry_credentials: RegistryCredentialsCreate | None = None
    skip_verification: bool = False


class ServiceUpdate(Input):
    image: str | None = Field(
        default=None, json_schema_extra=documented(pattern=IMAGE_PATTERN, min_length=1, max_length=512)
    )
    platform: str | None = Field(default=None, json_schema_extra=documented(pattern=PLATFORM_PATTERN))
    port: int | None = Field(default=None, json_schema_extra={"minimum": 1, "maximum": 65535})
    health_path: str | None = Field(default=None, json_schema_extra=documented(pattern=HEALTH_PATH_PATTERN))
    auto_deploy_on_tag_move: bool | None = Field(
        default=None, description="deploy by itself when a credentials check sees the tag moved"
    )

    def change(self) -> ServiceChange:
        """Fields left out keep their value; an explicit ``health_path: null`` clears it."""
        given = self.model_fields_set
        return ServiceChange(
            image=self.image if self.image is not None else KEEP,
            platform=self.platform if self.platform is not None else KEEP,
            port=self.port if self.port is not None else KEEP,
            health_path=self.health_path if "health_path" in given else KEEP,
            auto_deploy_on_tag_move=(
                self.auto_deploy_on_tag_move if self.auto_deploy_on_tag_move is not None else KEEP
            ),
        )


class RegistryCredentialsUpdate(CloudKeyFields):
    """An omitted secret (password, aws_secret_access_key, google_json_key) keeps the stored one of the
    same kind, as does an omitted username, access key id, region or role (an empty region or role
    clears it)."""

    registry: str = Field(min_length=1, max_length=255)
    username: str | None = Field(default=None, json_schema_extra=documented(pattern=USERNAME_PATTERN))
    password: SecretStr | None = Field(default=None, min_length=1, max_length=MAX_REGISTRY_SECRET)
    skip_verification: bool = False
    expires_on: date | None = Field(
        default=None, description="when the credentials expire (warned 14 days before); null clears it"
    )

    def change(self) -> CredentialsChange:
        """Left out, ``expires_on`` keeps the stored date; ``null`` clears it."""
        change = self.change_for(self.registry, self.username, self.password)
        if "expires_on" not in self.model_fields_set:
            return change
        return dataclasses.replace(change, expires_on=self.expires_on)


class RegistryTest(CloudKeyFields):
    image: str = Field(json_schema_extra=documented(pattern=IMAGE_PATTERN, min_length=1, max_length=512))
    registry: str | None = Field(default=None, max_length=255)
    username: str | None = Field(default=None, json_schema_extra=documented(pattern=USERNAME_PATTERN))
    password: SecretStr | None = Field(default=None, min_length=1, max_length=MAX_REGISTRY_SECRET)
    service_id: uuid.UUID | None = None


class CredentialHealthPublic(Output):
    status: Literal["passing", "failing", "unknown"]
    last_checked_at: datetime | None
    last_passed_at: datetime | None
    failing_since: datetime | None
    code: str | None = Field(
        description="a failing check's preflight code, or expires_soon / expired near the expiry date"
    )
    message: str
    expires_on: date | None


class RegistryCredentialsPublic(Output):
    registry: str
    kind: CredentialKind = "password"
    username_masked: str | None = Field(description="kind password: the user name, masked")
    has_password: bool = Field(description="a secret is stored (password, secret access key or JSON key)")
    aws_access_key_id_masked: str | None = Field(default=None, description="kind aws_ecr: AKIA••••WXYZ")
    aws_region: str | None = None
    aws_role_arn: str | None = None
    google_client_email: str | None = Field(default=None, description="kind google: the service account")
    verified_at: datetime | None
    verification: Literal["passed", "overridden"]
    health: CredentialHealthPublic


class ServicePublic(Output):
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    build_method: str
    image: str
    platform: str
    port: int
    health_path: str | None
    registry_credentials: RegistryCredentialsPublic | None
    url: str | None = Field(description="the running container's published address (engine runtime)")
    created_at: datetime
    updated_at: datetime
    tag_moved: TagMovedPublic | None = Field(
        description="the tag points to another digest than the deployed one (seen by the last check)"
    )
    auto_deploy_on_tag_move: bool


class TagMovedPublic(Output):
    tag: str
    digest: str
    deployed_digest: str


class PreflightPublic(Output):
    ok: bool
    code: str | None
    message: str
    digest: str | None
    elapsed_ms: int


class RegistryCredentialsRemoved(Output):
    removed: bool
    message: str


class AuditEntryPublic(Output):
    id: int
    action: str
    actor_email: str
    target_type: str
    target_id: str
    target_name: str
    details: dict[str, Any]
    created_at: datetime


class AuditPagePublic(Output):
    entries: list[AuditEntryPublic]
    next_cursor: str | None


class DeploymentPublic(Output):
    id: uuid.UUID
    service_id: uuid.UUID
    status: str
    image: str
    platform: str
    digest: str | None
    code: str | None
    message: str
    with_credentials: bool
    manifests: list[dict[str, Any]] | None
    url: str | None = Field(description="where the container answers while it runs (engine runtime)")
    started_at: datetime | None = Field(description="when the container started serving (engine runtime)")
    created_at: datetime
    updated_at: datetime


class WebhookSet(Input):
    url: str = Field(min_length=1, max_length=2048, description="an http:// or https:// URL")
    secret: SecretStr = Field(min_length=16, max_length=512, description="signs each delivery; never shown")


class WebhookDeliveryPublic(Output):
    id: int
    event: str
    service_id: uuid.UUID | None
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    response_status: int | None
    error: str = Field(description="why the last attempt failed: code, then a message")
    created_at: datetime
    finished_at: datetime | None


class WebhookPublic(Output):
    url: str
    has_secret: bool
    updated_at: datetime
    deliveries: list[WebhookDeliveryPublic]


class ServiceLogsPublic(Output):
    deployment_id: uuid.UUID
    lines: list[str] = Field(description="the running container's last log lines, oldest first, redacted")


class ServiceStopped(BaseModel):
    stopped: int = Field(description="how many containers were removed")
