"""Private registry credentials on services: test, save (verified or overridden), read masked, remove.

The plaintext password lives only in this request's call stack as a ``SecretStr``: request body →
preflight Authorization header → ``secrets.seal`` → row. Database work runs in worker threads; the
preflight runs on the event loop, between two short transactions, never inside one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import SecretStr
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from guara.core import audit, projects, services, validation
from guara.core.accounts import Principal
from guara.core.errors import Conflict, CredentialsUnreadable, InvalidInput, PreflightFailed, RateLimited
from guara.core.platform import Platform
from guara.deploy import DEFAULT_PLATFORM
from guara.registry import (
    InvalidRegistry,
    PreflightResult,
    parse_registry,
    preflight,
    same_registry,
)
from guara.secrets import (
    ProjectKeys,
    UnreadableSecret,
    envelope_key_version,
    open_secret,
    register_secret,
    seal,
)
from guara.store.models import RegistryCredential, Service, utcnow

PASSWORD_FIELD = "registry_password"  # noqa: S105  (a field name bound into the AAD)


@dataclass(frozen=True)
class CredentialsInput:
    """What a user typed; ``None`` username or password means "keep the stored one"."""

    registry: str
    username: str | None = None
    password: SecretStr | None = None


@dataclass(frozen=True)
class CredentialsView:
    registry: str
    username_masked: str
    has_password: bool
    verified_at: datetime | None
    verification: Literal["passed", "overridden"]
    updated_at: datetime


@dataclass(frozen=True)
class _Resolved:
    """Validated values for one save: what the preflight and the row will use."""

    registry: str
    username: str
    password: SecretStr | None  # None: keep the stored envelope as it is
    stored_password: SecretStr | None
    changed: tuple[str, ...]

    @property
    def effective_password(self) -> SecretStr:
        password = self.password or self.stored_password
        if password is None:  # _resolve guarantees one of them
            raise InvalidInput("a password is required", field="password")
        return password


def mask_username(username: str) -> str:
    if len(username) <= 3:
        return username[:1] + "•••"
    return username[:2] + "•••" + username[-1]


def _view(row: RegistryCredential) -> CredentialsView:
    return CredentialsView(
        registry=row.registry_host,
        username_masked=mask_username(row.username),
        has_password=bool(row.password_sealed),
        verified_at=row.verified_at,
        verification="passed" if row.verification == "passed" else "overridden",
        updated_at=row.updated_at,
    )


def get_view(session: Session, *, service_id: uuid.UUID) -> CredentialsView | None:
    """Masked credentials of a service the caller has already been authorised for."""
    row = session.get(RegistryCredential, service_id)
    return _view(row) if row else None


def views_in_project(session: Session, *, project_id: uuid.UUID) -> dict[uuid.UUID, CredentialsView]:
    """Masked credentials of every service of an authorised project, by service id, in one query."""
    rows = session.scalars(select(RegistryCredential).where(RegistryCredential.project_id == project_id))
    return {row.service_id: _view(row) for row in rows}


# --- input rules -------------------------------------------------------------------------------


def _no_controls(value: str, field: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidInput(f"{field} must not contain control characters", field=field)
    return value


def _registry_for(platform: Platform, image_registry: str, value: str) -> str:
    """The Registry URL field, checked against the image's registry; canonical text to store."""
    text = _no_controls(value.strip(), "registry")
    if not text:
        raise InvalidInput("registry is required", field="registry")
    try:
        location = parse_registry(text, allow_http=platform.settings.allow_http_registries)
    except InvalidRegistry as exc:
        raise InvalidInput(f"invalid registry: {exc}", code="invalid_registry", field="registry") from None
    if not same_registry(location, image_registry):
        raise InvalidInput(
            f"the registry {location.host} does not match the image's registry {image_registry}",
            code="registry_mismatch",
            field="registry",
        )
    return str(location)


def _stored_password_stays_home(stored_registry: str, requested_registry: str) -> None:
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


def _username(value: str) -> str:
    name = _no_controls(value, "username")
    if not name or len(name) > 255:
        raise InvalidInput("username must be 1 to 255 characters", field="username")
    if ":" in name:
        raise InvalidInput(
            "username must not contain ':' (registries use Basic authentication)", field="username"
        )
    return name


def _password(value: SecretStr) -> SecretStr:
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


# --- running the preflight -------------------------------------------------------------------------


async def count_preflight(platform: Platform, principal: Principal) -> None:
    """Count one preflight against the caller's limit (Test Connection and verified saves alike)."""
    retry_after = await platform.limiter.hit_async(str(principal.user_id))
    if retry_after is not None:
        raise RateLimited(
            f"You have run {platform.limiter.item.amount} connection tests in the last minute. "
            f"Try again in {retry_after} seconds.",
            retry_after=retry_after,
        )


async def run_preflight(
    platform: Platform, *, image: str, registry: str | None, username: str | None, password: SecretStr | None
) -> PreflightResult:
    settings = platform.settings
    return await preflight(
        image,
        registry=registry,
        username=username,
        password=password,
        ca_file=settings.extra_ca_file,
        ssrf_allow=settings.ssrf_allow,
        timeout=settings.preflight_timeout_s,
        allow_http=settings.allow_http_registries,
    )


def _open_password(platform: Platform, row: RegistryCredential) -> SecretStr:
    try:
        password = open_secret(
            ProjectKeys(platform.keyring),
            row.password_sealed,
            project_id=str(row.project_id),
            service_id=str(row.service_id),
            field=PASSWORD_FIELD,
        )
    except UnreadableSecret as exc:
        raise CredentialsUnreadable(
            f"the stored registry password cannot be read ({exc}); enter the credentials again"
        ) from None
    register_secret(password)
    return password


def open_stored_credentials(
    platform: Platform, session: Session, *, service_id: uuid.UUID
) -> tuple[str, str, SecretStr] | None:
    """(registry, username, password) of an authorised service, for a preflight or a deploy."""
    row = session.get(RegistryCredential, service_id)
    if row is None:
        return None
    return row.registry_host, row.username, _open_password(platform, row)


async def run_test_connection(
    platform: Platform,
    principal: Principal,
    *,
    image: str,
    registry: str | None,
    username: str | None,
    password: SecretStr | None,
    service_id: uuid.UUID | None = None,
) -> PreflightResult:
    """Test Connection: the real preflight, counted against the caller's rate limit."""
    reference = validation.image_reference(image)
    if registry is not None:
        registry = _registry_for(platform, reference.registry, registry)
    if username is not None:
        username = _username(username)
    if password is not None:
        password = _password(password)
    if service_id is not None and (username is None or password is None):
        sid = service_id

        def stored(session: Session) -> tuple[str, str, SecretStr] | None:
            services.get_service(session, principal=principal, service_id=sid)
            return open_stored_credentials(platform, session, service_id=sid)

        found = await platform.in_session(stored)
        if found is not None:
            stored_registry, stored_username, stored_password = found
            username = username if username is not None else stored_username
            if password is None:
                _stored_password_stays_home(stored_registry, registry or reference.registry)
                registry, password = stored_registry, stored_password
    if password is not None and username is None:
        raise InvalidInput("a username is required with a password", field="username")
    if username is not None and password is None:
        raise InvalidInput("a password is required with a username", field="password")
    await count_preflight(platform, principal)
    return await run_preflight(
        platform, image=str(reference), registry=registry, username=username, password=password
    )


ImageAccess = Literal["public", "private", "unknown"]
PRIVATE_CODES = frozenset({"auth_failed", "manifest_not_found"})


@dataclass(frozen=True)
class AccessProbe:
    access: ImageAccess
    message: str


async def probe_image_access(platform: Platform, principal: Principal, *, image: str) -> AccessProbe:
    """Ask the registry anonymously whether an image needs credentials (for the create wizard).

    Not counted in the Test Connection limit, but bounded per user by its own window.
    """
    reference = validation.image_reference(image)
    retry_after = await platform.probe_limiter.hit_async(str(principal.user_id))
    if retry_after is not None:
        raise RateLimited(
            f"Too many image checks; try again in {retry_after} seconds.", retry_after=retry_after
        )
    result = await run_preflight(platform, image=str(reference), registry=None, username=None, password=None)
    if result.ok:
        return AccessProbe("public", "Anonymous pulls can read this image: it needs no credentials.")
    code = result.code.value if result.code else ""
    if code in PRIVATE_CODES:
        return AccessProbe("private", "This image is private (or missing): add registry credentials.")
    return AccessProbe("unknown", f"Could not check the registry anonymously: {result.message}")


async def _verify(
    platform: Platform, principal: Principal, *, image: str, resolved: _Resolved, skip_verification: bool
) -> Literal["passed", "overridden"]:
    if skip_verification:
        return "overridden"
    await count_preflight(platform, principal)
    result = await run_preflight(
        platform,
        image=image,
        registry=resolved.registry,
        username=resolved.username,
        password=resolved.effective_password,
    )
    if not result.ok:
        code = result.code.value if result.code else "network_error"
        raise PreflightFailed(
            f"{result.message} Nothing was saved; fix the credentials or choose 'Save without verifying'.",
            code=code,
            elapsed_ms=result.elapsed_ms,
        )
    return "passed"


def _write_credentials(
    platform: Platform,
    session: Session,
    *,
    service: Service,
    resolved: _Resolved,
    verification: Literal["passed", "overridden"],
) -> RegistryCredential:
    row = session.get(RegistryCredential, service.id)
    now = utcnow()
    if row is None:
        row = RegistryCredential(service_id=service.id, project_id=service.project_id)
        session.add(row)
    row.registry_host = resolved.registry
    row.username = resolved.username
    if resolved.password is not None:
        row.password_sealed = seal(
            ProjectKeys(platform.keyring),
            resolved.password,
            project_id=str(service.project_id),
            service_id=str(service.id),
            field=PASSWORD_FIELD,
        )
        row.key_version = envelope_key_version(row.password_sealed)
    row.verification = verification
    row.verified_at = now if verification == "passed" else None
    row.updated_at = now
    return row


def _bump_version(session: Session, *, service_id: uuid.UUID, seen_version: int) -> None:
    """Optimistic lock: the save lands only if nobody saved the service since we read it."""
    result = session.execute(
        update(Service)
        .where(Service.id == service_id, Service.version == seen_version)
        .values(version=Service.version + 1, updated_at=utcnow())
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(
            "the service was changed by another save while this one ran; reload and try again",
            code="conflict",
        )


async def create_service(
    platform: Platform,
    principal: Principal,
    *,
    project_id: uuid.UUID,
    name: str,
    image: str,
    credentials: CredentialsInput | None,
    skip_verification: bool = False,
    platform_name: str = DEFAULT_PLATFORM,
) -> Service:
    """Create a service, optionally with credentials verified by a preflight (or overridden)."""
    reference = validation.image_reference(image)
    validation.service_name(name)
    validation.platform(platform_name)
    if credentials is None:
        return await platform.in_session(
            lambda session: services.create_service(
                session,
                principal=principal,
                project_id=project_id,
                name=name,
                image=image,
                platform=platform_name,
            ),
        )
    if credentials.username is None or credentials.password is None:
        raise InvalidInput("username and password are required", field="registry_credentials")
    resolved = _Resolved(
        registry=_registry_for(platform, reference.registry, credentials.registry),
        username=_username(credentials.username),
        password=_password(credentials.password),
        stored_password=None,
        changed=("registry", "username", "password"),
    )
    # Authorise before spending a preflight on someone else's project.
    await platform.in_session(
        lambda session: projects.get_project(session, principal=principal, project_id=project_id),
    )
    verification = await _verify(
        platform, principal, image=str(reference), resolved=resolved, skip_verification=skip_verification
    )

    def write(session: Session) -> Service:
        service = services.create_service(
            session,
            principal=principal,
            project_id=project_id,
            name=name,
            image=image,
            platform=platform_name,
            audit_details={"credentials": "added", "registry": resolved.registry, "preflight": verification},
        )
        _write_credentials(platform, session, service=service, resolved=resolved, verification=verification)
        return service

    return await platform.in_session(write)


async def save_credentials(
    platform: Platform,
    principal: Principal,
    *,
    service_id: uuid.UUID,
    credentials: CredentialsInput,
    skip_verification: bool = False,
) -> CredentialsView:
    """Set or replace a service's credentials; omitted username/password keep the stored values."""

    def load(session: Session) -> tuple[Service, _Resolved, str | None]:
        service = services.get_service(session, principal=principal, service_id=service_id)
        reference = validation.image_reference(service.image)
        registry = _registry_for(platform, reference.registry, credentials.registry)
        row = session.get(RegistryCredential, service.id)
        if row is None and (credentials.username is None or credentials.password is None):
            raise InvalidInput("username and password are required for new credentials", field="username")
        username = _username(credentials.username) if credentials.username is not None else row.username  # type: ignore[union-attr]
        password = _password(credentials.password) if credentials.password is not None else None
        stored = None
        if password is None and row is not None:
            _stored_password_stays_home(row.registry_host, registry)
            stored = _open_password(platform, row)
        changed = tuple(
            field
            for field, differs in (
                ("registry", row is None or row.registry_host != registry),
                ("username", row is None or row.username != username),
                ("password", password is not None),
            )
            if differs
        )
        resolved = _Resolved(registry, username, password, stored, changed)
        return service, resolved, (row.registry_host if row else None)

    service, resolved, previous_registry = await platform.in_session(load)
    verification = await _verify(
        platform, principal, image=service.image, resolved=resolved, skip_verification=skip_verification
    )

    def write(session: Session) -> CredentialsView:
        _bump_version(session, service_id=service.id, seen_version=service.version)
        row = _write_credentials(
            platform, session, service=service, resolved=resolved, verification=verification
        )
        audit.record(
            session,
            principal=principal,
            service=service,
            action="service.update",
            details={
                "credentials": "added" if previous_registry is None else "updated",
                "registry": resolved.registry,
                "changed": list(resolved.changed),
                "preflight": verification,
            },
        )
        return _view(row)

    return await platform.in_session(write)


def remove_credentials(session: Session, *, principal: Principal, service_id: uuid.UUID) -> bool:
    """Delete a service's credentials (it pulls anonymously from now on). False if it had none."""
    service = services.get_service(session, principal=principal, service_id=service_id)
    row = session.get(RegistryCredential, service.id)
    if row is None:
        return False
    registry = row.registry_host
    _bump_version(session, service_id=service.id, seen_version=service.version)
    session.execute(delete(RegistryCredential).where(RegistryCredential.service_id == service.id))
    audit.record(
        session,
        principal=principal,
        service=service,
        action="service.update",
        details={"credentials": "removed", "registry": registry},
    )
    return True
