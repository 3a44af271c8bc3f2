"""API schemas: one per direction. Secrets only ever appear in input schemas, as SecretStr."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from guara.core.credentials import CredentialsChange
from guara.core.validation import MAX_REGISTRY_SECRET
from guara.deploy import DEFAULT_PLATFORM


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ProjectCreate(Input):
    name: str = Field(max_length=1000)


class Output(BaseModel):
    """Built from the use cases' plain data objects by attribute."""

    model_config = ConfigDict(from_attributes=True)


class ProjectPublic(Output):
    id: uuid.UUID
    name: str
    role: str
    created_at: datetime


class RegistryCredentialsCreate(Input):
    registry: str = Field(min_length=1, max_length=255)
    username: str | None = Field(default=None, max_length=255)
    password: SecretStr | None = Field(default=None, max_length=MAX_REGISTRY_SECRET)

    def change(self) -> CredentialsChange:
        return CredentialsChange(self.registry, self.username, self.password)


class ServiceCreate(Input):
    name: str = Field(max_length=1000)
    image: str = Field(max_length=1000)
    platform: str = Field(default=DEFAULT_PLATFORM, max_length=100)
    registry_credentials: RegistryCredentialsCreate | None = None
    skip_verification: bool = False


class ServiceUpdate(Input):
    platform: str = Field(max_length=100)


class RegistryCredentialsUpdate(RegistryCredentialsCreate):
    """Omitted username or password: keep the stored one."""

    skip_verification: bool = False


class RegistryTest(Input):
    image: str = Field(max_length=1000)
    registry: str | None = Field(default=None, max_length=255)
    username: str | None = Field(default=None, max_length=255)
    password: SecretStr | None = Field(default=None, max_length=MAX_REGISTRY_SECRET)
    service_id: uuid.UUID | None = None


class RegistryCredentialsPublic(Output):
    registry: str
    username_masked: str
    has_password: bool
    verified_at: datetime | None
    verification: Literal["passed", "overridden"]


class ServicePublic(Output):
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    build_method: str
    image: str
    platform: str
    registry_credentials: RegistryCredentialsPublic | None
    created_at: datetime
    updated_at: datetime


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
    created_at: datetime
    updated_at: datetime
