"""Private registry credentials of a service: the input rules, save (verified or overridden), masked
reads, opening them for one operation, and removal.

Three kinds: ``password`` (a user name and a password or token), ``aws_ecr`` (an AWS access key, a
region, optionally a role) and ``google`` (a service account's JSON key). A row keeps the kind's
identity in ``username`` (user name, access key id, client email) and its long-lived secret sealed in
``password_sealed``, bound to a field name of its own per kind. Cloud keys are exchanged for a
short-lived login at each use (``guara.registry.cloud``).

The plaintext password lives only in one request's call stack as a ``SecretStr``: request body →
preflight Authorization header → ``secrets.seal`` → row. Database work runs in worker threads; the
preflight runs on the event loop, between two short transactions, never inside one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Literal, get_args

from pydantic import SecretStr
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from guara.core import audit, credential_health, validation
from guara.core.access import mark_changed, service_of
from guara.core.accounts import Principal
from guara.core.errors import CredentialsUnreadable, InvalidInput, PreflightFailed
from guara.core.preflights import RegistryLogin, count_preflight, run_preflight
from guara.core.roles import Action
from guara.registry import (
    AwsEcrKey,
    GoogleKey,
    InvalidCloudKey,
    InvalidRegistry,
    mask_access_key_id,
    parse_registry,
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
from guara.store.models import CredentialHealth, RegistryCredential, Service, utcnow

if TYPE_CHECKING:
    from guara.context import AppContext

PASSWORD_FIELD = "registry_password"  # noqa: S105  (a field name bound into the AAD)
CredentialKind = Literal["password", "aws_ecr", "google"]
KINDS: tuple[str, ...] = get_args(CredentialKind)
# The field each kind's sealed secret is bound to: a secret of one kind never opens as another's.
SECRET_FIELDS = {"password": PASSWORD_FIELD, "aws_ecr": "aws_secret_access_key", "google": "google_json_key"}
_KIND_FIELDS = {
    "password": ("username", "password"),
    "aws_ecr": ("aws_access_key_id", "aws_secret_access_key", "aws_region", "aws_role_arn"),
    "google": ("google_json_key",),
}
ANONYMOUS_NOTE = (
    "The service now pulls its image anonymously. If the image is private, its next deploy will fail "
    "until credentials are added back."
)
PAIR_NEEDED = "enter both a username and a password, or leave both empty to pull anonymously"

Verification = audit.Verification


@dataclass(frozen=True)
class CredentialsChange:
    """What a user typed; a ``None`` field means "keep the stored one" (for ``aws_region`` and
    ``aws_role_arn``, an empty string clears it). Only the fields of ``kind`` may be given."""

    registry: str
    username: str | None = None
    password: SecretStr | None = None
    kind: str = "password"
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_region: str | None = None
    aws_role_arn: str | None = None
    google_json_key: SecretStr | None = None
    # The date the credentials expire (warned about 14 days before); None clears it, "keep" keeps it.
    expires_on: date | Literal["keep"] | None = "keep"

    def checked_kind(self) -> CredentialKind:
        """The kind, once the fields given are all its own (InvalidInput otherwise)."""
        if self.kind not in KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", field="kind")
        for other, fields in _KIND_FIELDS.items():
            for name in fields if other != self.kind else ():
                if getattr(self, name) is not None:
                    raise InvalidInput(f"{name} is not a field of {self.kind} credentials", field=name)
        kind: CredentialKind = self.kind  # type: ignore[assignment]  # checked against KINDS above
        return kind


def secret_field(kind: str) -> str:
    """The field name a kind's sealed secret is bound to (unknown kinds: the password's)."""
    return SECRET_FIELDS.get(kind, PASSWORD_FIELD)


@dataclass(frozen=True)
class CredentialsView:
    """Stored credentials as anyone may see them: masked, never the password or a cloud secret."""

    registry: str
    username_masked: str | None
    has_password: bool
    verified_at: datetime | None
    verification: Verification
    updated_at: datetime
    health: credential_health.HealthView
    kind: str = "password"
    aws_access_key_id_masked: str | None = None
    aws_region: str | None = None
    aws_role_arn: str | None = None
    google_client_email: str | None = None


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
    kind = row.kind or "password"
    return CredentialsView(
        registry=row.registry_host,
        username_masked=mask_username(row.username) if kind == "password" else None,
        has_password=bool(row.password_sealed),
        verified_at=row.verified_at,
        verification="passed" if row.verification == "passed" else "overridden",
        updated_at=row.updated_at,
        kind=kind,
        aws_access_key_id_masked=mask_access_key_id(row.username) if kind == "aws_ecr" else None,
        aws_region=row.aws_region if kind == "aws_ecr" else None,
        aws_role_arn=row.aws_role_arn if kind == "aws_ecr" else None,
        google_client_email=row.username if kind == "google" else None,
        health=credential_health.health_of(row, health, today=utcnow().date()),
    )


def views_in_project(
    session: Session,
    *,
    project_id: uuid.UUID,
    service_ids: Collection[uuid.UUID] | None,
    health: Mapping[uuid.UUID, CredentialHealth],
) -> dict[uuid.UUID, CredentialsView]:
    """Masked credentials of the services of an authorised project (all, or ``service_ids``), by
    service id, in one query; ``health``: the same services' health rows, read by the caller."""
    rows = select(RegistryCredential).where(RegistryCredential.project_id == project_id)
    if service_ids is not None:
        rows = rows.where(RegistryCredential.service_id.in_(service_ids))
    return {row.service_id: view_of(row, health.get(row.service_id)) for row in session.scalars(rows)}


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
    what = {"aws_ecr": "AWS secret access key", "google": "Google JSON key"}.get(
        row.kind, "registry password"
    )
    try:
        secret = open_secret(
            ProjectKeys(ctx.keyring),
            row.password_sealed,
            project_id=str(row.project_id),
            service_id=str(row.service_id),
            field=secret_field(row.kind),
        )
    except UnreadableSecret as exc:
        raise CredentialsUnreadable(
            f"the stored {what} cannot be read ({exc}); enter the credentials again"
        ) from None
    register_secret(secret)
    if row.kind == "google":
        _register_google_key(secret)
    return secret


def _register_google_key(json_key: SecretStr) -> None:
    """The private key inside is a secret on its own too: scrub it wherever it would appear alone."""
    with contextlib.suppress(ValueError, TypeError, KeyError):
        register_secret(json.loads(json_key.get_secret_value())["private_key"])


def login_of(
    kind: str,
    registry: str,
    identity: str,
    secret: SecretStr,
    *,
    aws_region: str | None = None,
    aws_role_arn: str | None = None,
) -> RegistryLogin:
    """The login for one operation: a password as it is, a cloud key to exchange at use."""
    try:
        if kind == "aws_ecr":
            return RegistryLogin.of_key(registry, AwsEcrKey(identity, secret, aws_region, aws_role_arn))
        if kind == "google":
            return RegistryLogin.of_key(registry, GoogleKey.parse(secret))
    except InvalidCloudKey as exc:
        raise InvalidInput(str(exc), field=exc.field) from None
    return RegistryLogin(registry, identity, secret)


def open_stored(ctx: AppContext, session: Session, *, service_id: uuid.UUID) -> RegistryLogin | None:
    """The stored login of an authorised service, opened for one preflight or deploy."""
    row = session.get(RegistryCredential, service_id)
    if row is None:
        return None
    secret = _open_password(ctx, row)
    try:
        return login_of(
            row.kind,
            row.registry_host,
            row.username,
            secret,
            aws_region=row.aws_region,
            aws_role_arn=row.aws_role_arn,
        )
    except InvalidInput as exc:
        raise CredentialsUnreadable(
            f"the stored credentials are unusable ({exc.message}); enter them again"
        ) from None


def fingerprint(session: Session, *, service_id: uuid.UUID) -> str | None:
    """Identifies the stored credentials of a service (None without any): any save or removal changes it.
    A digest, so it can be compared and kept without holding the secret's envelope."""
    row = session.get(RegistryCredential, service_id)
    if row is None:
        return None
    parts = (row.registry_host, row.kind, row.username, row.password_sealed, row.aws_region, row.aws_role_arn)
    material = "\n".join(part or "" for part in parts).encode()
    return hashlib.sha256(material).hexdigest()


def open_stored_quietly(ctx: AppContext, session: Session, *, service_id: uuid.UUID) -> None:
    """Register the service's stored password for scrubbing from this request's output, if it opens."""
    with contextlib.suppress(CredentialsUnreadable):  # nothing readable to scrub
        open_stored(ctx, session, service_id=service_id)


# --- saving ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedSave:
    """Validated values for one save: what the preflight and the row will use. ``username`` is the
    kind's identity (user name, access key id, client email); ``password`` its secret."""

    registry: str
    username: str
    password: SecretStr | None  # None: keep the stored envelope as it is
    stored_password: SecretStr | None
    changed: tuple[str, ...]
    kind: CredentialKind = "password"
    aws_region: str | None = None
    aws_role_arn: str | None = None

    @property
    def login(self) -> RegistryLogin:
        secret = self.password or self.stored_password
        if secret is None:  # a PreparedSave always has one of them
            raise InvalidInput("a password is required", field="password")
        return login_of(
            self.kind,
            self.registry,
            self.username,
            secret,
            aws_region=self.aws_region,
            aws_role_arn=self.aws_role_arn,
        )


def prepare_new(ctx: AppContext, *, image_registry: str, change: CredentialsChange) -> PreparedSave:
    """New credentials (no stored ones to keep): every required field of the kind."""
    return prepare(ctx, image_registry=image_registry, change=change, row=None, open_stored_secret=False)


def _optional_text(given: str | None, stored: str | None) -> str | None:
    """``None`` keeps the stored value, ``""`` clears it."""
    if given is None:
        return stored
    return given.strip() or None


def _cloud_secret(value: SecretStr, field: str) -> SecretStr:
    register_secret(value)
    raw = value.get_secret_value()
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} must be valid Unicode text", field=field) from None
    if "\x00" in raw:
        raise InvalidInput(f"{field} must not contain NUL", field=field)
    return value


def prepare(
    ctx: AppContext,
    *,
    image_registry: str,
    change: CredentialsChange,
    row: RegistryCredential | None,
    open_stored_secret: bool = True,
) -> PreparedSave:
    """Check ``change`` against the stored ``row`` (None: nothing stored): the values a save or a test
    uses. A secret left out is the stored one, for the same kind only, and only for the registry it
    was saved for."""
    kind = change.checked_kind()
    registry = registry_for_image(ctx, image_registry, change.registry)
    same = row if row is not None and row.kind == kind else None
    region: str | None = None
    role: str | None = None
    if kind == "password":
        if same is None and (change.username is None or change.password is None):
            raise InvalidInput(PAIR_NEEDED, field="username" if change.username is None else "password")
        name = username(change.username) if change.username is not None else (same.username if same else "")
        secret = password(change.password) if change.password is not None else None
        identity_field, secret_name = "username", "password"
    elif kind == "aws_ecr":
        secret = (
            _cloud_secret(change.aws_secret_access_key, "aws_secret_access_key")
            if change.aws_secret_access_key is not None
            else None
        )
        given_id = change.aws_access_key_id.strip() if change.aws_access_key_id is not None else None
        name = given_id if given_id is not None else (same.username if same else "")
        if not name:
            raise InvalidInput("aws_access_key_id is required", field="aws_access_key_id")
        if secret is None and (same is None or name != same.username):
            raise InvalidInput(
                "aws_secret_access_key is required with a new access key id", field="aws_secret_access_key"
            )
        region = _optional_text(change.aws_region, same.aws_region if same else None)
        role = _optional_text(change.aws_role_arn, same.aws_role_arn if same else None)
        try:
            # The key's own rules; a kept secret is checked when it is opened.
            AwsEcrKey(name, secret or SecretStr("kept"), region, role).region_for(
                parse_registry(registry, allow_http=True).host
            )
        except InvalidCloudKey as exc:
            raise InvalidInput(str(exc), field=exc.field) from None
        identity_field, secret_name = "aws_access_key_id", "aws_secret_access_key"
    else:
        secret = None
        if change.google_json_key is not None:
            secret = _cloud_secret(change.google_json_key, "google_json_key")
            _register_google_key(secret)
            try:
                name = GoogleKey.parse(secret).client_email
            except InvalidCloudKey as exc:
                raise InvalidInput(str(exc), field=exc.field) from None
        elif same is not None:
            name = same.username
        else:
            raise InvalidInput(
                "google_json_key is required (the service account key file)", field="google_json_key"
            )
        identity_field, secret_name = "google_client_email", "google_json_key"
    stored = None
    if secret is None:
        assert same is not None  # every branch above demands a secret when nothing of this kind is stored
        stored_password_stays_home(same.registry_host, registry)
        if open_stored_secret:
            stored = _open_password(ctx, same)
    differs = (
        ("registry", row is None or row.registry_host != registry),
        ("kind", row is not None and row.kind != kind),
        (identity_field, same is None or same.username != name),
        (secret_name, secret is not None),
        ("aws_region", kind == "aws_ecr" and (same is None or same.aws_region != region)),
        ("aws_role_arn", kind == "aws_ecr" and (same is None or same.aws_role_arn != role)),
    )
    changed = tuple(field for field, yes in differs if yes)
    return PreparedSave(registry, name, secret, stored, changed, kind, region, role)


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
    row.kind = prepared.kind
    row.username = prepared.username
    row.aws_region = prepared.aws_region
    row.aws_role_arn = prepared.aws_role_arn
    if prepared.password is not None:
        row.password_sealed = seal(
            ProjectKeys(ctx.keyring),
            prepared.password,
            project_id=str(service.project_id),
            service_id=str(service.id),
            field=secret_field(prepared.kind),
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
        service = service_of(
            session, principal=principal, service_id=service_id, action=Action.CREDENTIALS_WRITE
        )
        if change.expires_on != "keep":
            credential_health.valid_expiry(change.expires_on)
        reference = validation.image_reference(service.image)
        row = session.get(RegistryCredential, service.id)
        prepared = prepare(ctx, image_registry=reference.registry, change=change, row=row)
        return service, prepared, row.registry_host if row is not None else None

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
        service = service_of(
            session, principal=principal, service_id=service_id, action=Action.CREDENTIALS_WRITE
        )
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
