"""Private registry credentials of a service: the input rules, save (verified or overridden), masked
reads, opening them for one operation, and removal.

The plaintext password lives only in one request's call stack as a ``SecretStr``: request body →
preflight Authorization header → ``secrets.seal`` → row. Database work runs in worker threads; the
preflight runs on the event loop, between two short transactions, never inside one.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import SecretStr
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from guara.core import audit, credential_health, validation
from guara.core.access import mark_changed, service_of
from guara.core.accounts import Principal
from guara.core.errors import CredentialsUnreadable, InvalidInput, PreflightFailed
from guara.core.preflights import RegistryLogin, count_preflight, run_preflight
from guara.registry import InvalidRegistry, parse_registry, same_registry
from guara.secrets import (
    ProjectKeys,
    UnreadableSecret,
    envelope_key_version,
    open_secret,
    register_secret,
    seal,
)
from guara.store.models import CredentialHealth, RegistryCredential, Service, utcnow

if TYPE_CHECKING:
    from guara.context import AppContext

PASSWORD_FIELD = "registry_password"  # noqa: S105  (a field name bound into the AAD)
ANONYMOUS_NOTE = (
    "The service now pulls its image anonymously. If the image is private, its next deploy will fail "
    "until credentials are added back."
)
PAIR_NEEDED = "enter both a username and a password, or leave both empty to pull anonymously"

Verification = audit.Verification


@dataclass(frozen=True)
class CredentialsChange:
    """What a user typed; a ``None`` username or password means "keep the stored one"."""

    registry: str
    username: str | None = None
    password: SecretStr | None = None
    # The date the credentials expire (warned about 14 days before); None clears it, "keep" keeps it.
    expires_on: date | Literal["keep"] | None = "keep"


@dataclass(frozen=True)
class CredentialsView:
    """Stored credentials as anyone may see them: masked, never the password."""

    registry: str
    username_masked: str
    has_password: bool
    verified_at: datetime | None
    verification: Verification
    updated_at: datetime
    health: credential_health.HealthView


@dataclass(frozen=True)
class Withdrawal:
    removed: bool
    message: str


def mask_username(username: str) -> str:
    """Enough to recognise a name, not to learn it: at most a third of it and never more than 4
    characters, split between its start and end; names of 3 characters or fewer show nothing."""
    shown = 0 if len(username) <= 3 else min(4, len(username) // 3)
    head, tail = shown - shown // 2, shown // 2
    return username[:head] + "•••" + (username[-tail:] if tail else "")


def view_of(row: RegistryCredential, health: CredentialHealth | None = None) -> CredentialsView:
    return CredentialsView(
        registry=row.registry_host,
        username_masked=mask_username(row.username),
        has_password=bool(row.password_sealed),
        verified_at=row.verified_at,
        verification="passed" if row.verification == "passed" else "overridden",
        updated_at=row.updated_at,
        health=credential_health.health_of(row, health, today=utcnow().date()),
    )


def views_in_project(session: Session, *, project_id: uuid.UUID) -> dict[uuid.UUID, CredentialsView]:
    """Masked credentials of every service of an authorised project, by service id, in one query."""
    rows = session.scalars(select(RegistryCredential).where(RegistryCredential.project_id == project_id))
    health = session.scalars(select(CredentialHealth).where(CredentialHealth.project_id == project_id))
    by_service = {row.service_id: row for row in health}
    return {row.service_id: view_of(row, by_service.get(row.service_id)) for row in rows}


# --- input rules (the one place for each) -----------------------------------------------------------


def _no_controls(value: str, field: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidInput(f"{field} must not contain control characters", field=field)
    return value


def registry_for_image(ctx: AppContext, image_registry: str, value: str) -> str:
    """The Registry URL field, checked against the image's registry; canonical text to store."""
    text = _no_controls(value.strip(), "registry")
    if not text:
        raise InvalidInput("registry is required", field="registry")
    try:
        location = parse_registry(text, allow_http=ctx.registry.allow_http)
    except InvalidRegistry as exc:
        raise InvalidInput(f"invalid registry: {exc}", code="invalid_registry", field="registry") from None
    if not same_registry(location, image_registry):
        raise InvalidInput(
            f"the registry {location.host} does not match the image's registry {image_registry}",
            code="registry_mismatch",
            field="registry",
        )
    return str(location)


def username(value: str) -> str:
    name = _no_controls(value, "username")
    if not name or len(name) > 255:
        raise InvalidInput("username must be 1 to 255 characters", field="username")
    if ":" in name:
        raise InvalidInput(
            "username must not contain ':' (registries use Basic authentication)", field="username"
        )
    return name


def password(value: SecretStr) -> SecretStr:
    register_secret(value)  # scrubbed from any log line of this request, whatever happens next
    raw = value.get_secret_value()
    if not raw:
        raise InvalidInput("password must not be empty", field="password")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from JSON escapes: not text a registry can receive
        raise InvalidInput("password must be valid Unicode text", field="password") from None
    if any(ch in raw for ch in "\x00\r\n"):
        raise InvalidInput("password must not contain NUL or line breaks", field="password")
    return value


def require_pair(username: str | None, password: SecretStr | None) -> None:
    """A username and a password go together: both, or (where anonymous makes sense) neither."""
    if (username is None) != (password is None):
        raise InvalidInput(PAIR_NEEDED, field="username" if username is None else "password")


def stored_password_stays_home(stored_registry: str, requested_registry: str) -> None:
    """A stored password is only ever sent to the registry it was saved for, over the same scheme.

    Otherwise Test Connection (or a "leave as-is" save) could aim it at any host, or at plain HTTP.
    """
    stored = parse_registry(stored_registry, allow_http=True)
    requested = parse_registry(requested_registry, allow_http=True)
    if not (same_registry(stored, requested) and stored.scheme == requested.scheme):
        raise InvalidInput(
            f"the stored password is only sent to {stored}, the registry it was saved for; "
            f"to use {requested}, type the password again",
            code="registry_mismatch",
            field="password",
        )


# --- opening what is stored -------------------------------------------------------------------------


def _open_password(ctx: AppContext, row: RegistryCredential) -> SecretStr:
    try:
        secret = open_secret(
            ProjectKeys(ctx.keyring),
            row.password_sealed,
            project_id=str(row.project_id),
            service_id=str(row.service_id),
            field=PASSWORD_FIELD,
        )
    except UnreadableSecret as exc:
        raise CredentialsUnreadable(
            f"the stored registry password cannot be read ({exc}); enter the credentials again"
        ) from None
    register_secret(secret)
    return secret


def open_stored(ctx: AppContext, session: Session, *, service_id: uuid.UUID) -> RegistryLogin | None:
    """The stored login of an authorised service, opened for one preflight or deploy."""
    row = session.get(RegistryCredential, service_id)
    if row is None:
        return None
    return RegistryLogin(row.registry_host, row.username, _open_password(ctx, row))


def fingerprint(session: Session, *, service_id: uuid.UUID) -> str | None:
    """Identifies the stored credentials of a service (None without any): any save or removal changes it.
    A digest, so it can be compared and kept without holding the secret's envelope."""
    row = session.get(RegistryCredential, service_id)
    if row is None:
        return None
    material = "\n".join((row.registry_host, row.username, row.password_sealed)).encode()
    return hashlib.sha256(material).hexdigest()


def open_stored_quietly(ctx: AppContext, session: Session, *, service_id: uuid.UUID) -> None:
    """Register the service's stored password for scrubbing from this request's output, if it opens."""
    with contextlib.suppress(CredentialsUnreadable):  # nothing readable to scrub
        open_stored(ctx, session, service_id=service_id)


# --- saving ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedSave:
    """Validated values for one save: what the preflight and the row will use."""

    registry: str
    username: str
    password: SecretStr | None  # None: keep the stored envelope as it is
    stored_password: SecretStr | None
    changed: tuple[str, ...]

    @property
    def login(self) -> RegistryLogin:
        secret = self.password or self.stored_password
        if secret is None:  # a PreparedSave always has one of them
            raise InvalidInput("a password is required", field="password")
        return RegistryLogin(self.registry, self.username, secret)


def prepare_new(ctx: AppContext, *, image_registry: str, change: CredentialsChange) -> PreparedSave:
    """New credentials (no stored ones to keep): both fields are required."""
    if change.username is None or change.password is None:
        raise InvalidInput(PAIR_NEEDED, field="username" if change.username is None else "password")
    return PreparedSave(
        registry=registry_for_image(ctx, image_registry, change.registry),
        username=username(change.username),
        password=password(change.password),
        stored_password=None,
        changed=("registry", "username", "password"),
    )


async def verify(
    ctx: AppContext, principal: Principal, *, image: str, prepared: PreparedSave, skip_verification: bool
) -> Verification:
    """The preflight of a verified save (counted like Test Connection), or the override."""
    if skip_verification:
        return "overridden"
    await count_preflight(ctx, principal)
    result = await run_preflight(ctx, image=image, login=prepared.login)
    if not result.ok:
        code = result.code.value if result.code else "network_error"
        raise PreflightFailed(
            f"{result.message} Nothing was saved; fix the credentials or choose 'Save without verifying'.",
            code=code,
            elapsed_ms=result.elapsed_ms,
        )
    return "passed"


def write(
    ctx: AppContext,
    session: Session,
    *,
    service: Service,
    prepared: PreparedSave,
    verification: Verification,
) -> RegistryCredential:
    """Store the credentials of ``service`` in the caller's transaction (sealing a new password)."""
    row = session.get(RegistryCredential, service.id)
    now = utcnow()
    if row is None:
        row = RegistryCredential(service_id=service.id, project_id=service.project_id)
        session.add(row)
    row.registry_host = prepared.registry
    row.username = prepared.username
    if prepared.password is not None:
        row.password_sealed = seal(
            ProjectKeys(ctx.keyring),
            prepared.password,
            project_id=str(service.project_id),
            service_id=str(service.id),
            field=PASSWORD_FIELD,
        )
        row.key_version = envelope_key_version(row.password_sealed)
    row.verification = verification
    row.verified_at = now if verification == "passed" else None
    row.updated_at = now
    credential_health.reset_after_save(session, service, passed_at=row.verified_at)
    return row


async def save_credentials(
    ctx: AppContext,
    principal: Principal,
    *,
    service_id: uuid.UUID,
    change: CredentialsChange,
    skip_verification: bool = False,
) -> CredentialsView:
    """Set or replace a service's credentials; an omitted username or password keeps the stored one."""

    def load(session: Session) -> tuple[Service, PreparedSave, str | None]:
        service = service_of(session, principal=principal, service_id=service_id)
        if change.expires_on != "keep":
            credential_health.valid_expiry(change.expires_on)
        reference = validation.image_reference(service.image)
        row = session.get(RegistryCredential, service.id)
        if row is None:
            return service, prepare_new(ctx, image_registry=reference.registry, change=change), None
        registry = registry_for_image(ctx, reference.registry, change.registry)
        name = username(change.username) if change.username is not None else row.username
        secret = password(change.password) if change.password is not None else None
        stored = None
        if secret is None:
            stored_password_stays_home(row.registry_host, registry)
            stored = _open_password(ctx, row)
        changed = tuple(
            field
            for field, differs in (
                ("registry", row.registry_host != registry),
                ("username", row.username != name),
                ("password", secret is not None),
            )
            if differs
        )
        return service, PreparedSave(registry, name, secret, stored, changed), row.registry_host

    service, prepared, previous_registry = await ctx.db.run(load)
    verification = await verify(
        ctx, principal, image=service.image, prepared=prepared, skip_verification=skip_verification
    )

    def save(session: Session) -> CredentialsView:
        mark_changed(session, service)
        row = write(ctx, session, service=service, prepared=prepared, verification=verification)
        if change.expires_on != "keep":
            credential_health.set_expiry(session, service, change.expires_on)
        event = audit.CredentialsSaved(
            registry=prepared.registry,
            added=previous_registry is None,
            changed=prepared.changed,
            preflight=verification,
        )
        audit.record(session, principal=principal, service=service, event=event)
        return view_of(row, session.get(CredentialHealth, service.id))

    return await ctx.db.run(save)


async def remove_credentials(ctx: AppContext, principal: Principal, *, service_id: uuid.UUID) -> Withdrawal:
    """Delete a service's credentials: it pulls anonymously from now on. Whatever the runtime holds of
    them (a pull Secret in the cluster) goes too: removed credentials must not live on until some
    later deploy."""

    def remove(session: Session) -> Service | None:
        service = service_of(session, principal=principal, service_id=service_id)
        row = session.get(RegistryCredential, service.id)
        if row is None:
            return None
        registry = row.registry_host
        mark_changed(session, service)
        session.execute(delete(RegistryCredential).where(RegistryCredential.service_id == service.id))
        audit.record(session, principal=principal, service=service, event=audit.CredentialsRemoved(registry))
        return service

    service = await ctx.db.run(remove)
    if service is None:
        return Withdrawal(False, "The service had no registry credentials.")
    note = await ctx.deployments.runtime.withdraw_credentials(service.project_id, service.name)
    return Withdrawal(True, f"{ANONYMOUS_NOTE} {note}".strip())
