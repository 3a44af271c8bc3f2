"""Test Connection: the one use case behind the API, the dashboard's button and its form posts.

Also the wizard's anonymous "is this image private?" probe, which runs the same preflight without
credentials under its own (larger) limit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import SecretStr
from sqlalchemy.orm import Session

from guara.core import credentials, validation
from guara.core.access import service_of
from guara.core.accounts import Principal
from guara.core.errors import InvalidInput
from guara.core.preflights import RegistryLogin, count_preflight, registry_auth, run_preflight
from guara.core.roles import Action
from guara.deploy import ImagePlatforms
from guara.deploy import image_platforms as read_image_platforms
from guara.registry import PreflightCode, PreflightResult
from guara.registry.known import registry_named
from guara.store.models import RegistryCredential

if TYPE_CHECKING:
    from guara.context import AppContext


@dataclass(frozen=True)
class ConnectionTest:
    """What Test Connection was asked. ``image`` may be None when ``service_id`` names a service (its
    image is tested); with ``service_id``, an omitted username or password comes from the service's
    stored credentials (and the stored password only ever goes to the registry it was saved for)."""

    image: str | None
    registry: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    service_id: uuid.UUID | None = None
    # A cloud kind and its fields (see CredentialsChange); "password" is the fields above.
    kind: str = "password"
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_region: str | None = None
    aws_role_arn: str | None = None
    google_json_key: SecretStr | None = None

    def change(self, registry: str) -> credentials.CredentialsChange:
        return credentials.CredentialsChange(
            registry,
            self.username,
            self.password,
            kind=self.kind,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_region=self.aws_region,
            aws_role_arn=self.aws_role_arn,
            google_json_key=self.google_json_key,
        )

    @property
    def named_registry(self) -> str | None:
        """The registry this test is about as the caller named it (for advice about it)."""
        return registry_named(self.registry, self.image)


async def run_connection_test(
    ctx: AppContext, principal: Principal, request: ConnectionTest
) -> PreflightResult:
    """The real preflight, counted against the caller's rate limit. A failed preflight is a result,
    not an error; invalid input, a stranger's service and the rate limit raise."""
    if request.change("").checked_kind() != "password":
        return await _cloud_connection_test(ctx, principal, request)
    username = credentials.username(request.username) if request.username is not None else None
    password = credentials.password(request.password) if request.password is not None else None
    image, stored = await _service_side(ctx, principal, request)
    reference = validation.image_reference(image)
    registry = None
    if request.registry is not None:
        registry = credentials.registry_for_image(ctx, reference.registry, request.registry)
    if stored is not None and stored.cloud_key is not None:
        # The service holds a cloud key: nothing typed tests it as stored; typed fields replace it.
        if username is None and password is None:
            credentials.stored_password_stays_home(stored.registry, registry or reference.registry)
            await count_preflight(ctx, principal)
            return await run_preflight(ctx, image=str(reference), login=stored)
        stored = None
    if stored is not None and (username is None or password is None):
        username = username if username is not None else stored.username
        if password is None:
            credentials.stored_password_stays_home(stored.registry, registry or reference.registry)
            registry, password = stored.registry, stored.password
    credentials.require_pair(username, password)
    login = None
    if username is not None and password is not None:
        login = RegistryLogin(registry or reference.registry, username, password)
    await count_preflight(ctx, principal)
    return await run_preflight(ctx, image=str(reference), login=login, registry=registry)


async def _cloud_connection_test(
    ctx: AppContext, principal: Principal, request: ConnectionTest
) -> PreflightResult:
    """Test Connection with a cloud key: typed in full, or (with ``service_id``) partly the stored one."""

    def work(session: Session) -> tuple[str, credentials.PreparedSave]:
        row = None
        image = request.image
        if request.service_id is not None:
            service = service_of(
                session, principal=principal, service_id=request.service_id, action=Action.CREDENTIALS_USE
            )
            image = image or service.image
            row = session.get(RegistryCredential, service.id)
        if not image:
            raise InvalidInput("enter an image reference first", field="image")
        reference = validation.image_reference(image)
        change = request.change(request.registry or reference.registry)
        return str(reference), credentials.prepare(
            ctx, image_registry=reference.registry, change=change, row=row
        )

    image, prepared = await ctx.db.run(work)
    login = prepared.login
    await count_preflight(ctx, principal)
    return await run_preflight(ctx, image=image, login=login)


async def _service_side(
    ctx: AppContext, principal: Principal, request: ConnectionTest
) -> tuple[str, RegistryLogin | None]:
    """The image to test and, when the request names a service and leaves a field out, its stored
    login (opened only when needed)."""
    if request.service_id is None:
        if not request.image:
            raise InvalidInput("enter an image reference first", field="image")
        return request.image, None
    service_id = request.service_id
    wants_stored = request.username is None or request.password is None

    def work(session: Session) -> tuple[str, RegistryLogin | None]:
        service = service_of(
            session, principal=principal, service_id=service_id, action=Action.CREDENTIALS_USE
        )
        stored = credentials.open_stored(ctx, session, service_id=service.id) if wants_stored else None
        return request.image or service.image, stored

    return await ctx.db.run(work)


ImageAccess = Literal["public", "private", "unknown"]
PRIVATE_CODES = frozenset({PreflightCode.AUTH_FAILED, PreflightCode.MANIFEST_NOT_FOUND})


@dataclass(frozen=True)
class AccessProbe:
    access: ImageAccess
    message: str


async def probe_image_access(ctx: AppContext, principal: Principal, *, image: str) -> AccessProbe:
    """Ask the registry anonymously whether an image needs credentials (for the create wizard).

    Not counted in the Test Connection limit, but bounded per user by its own window; over it the
    answer is "unknown" with the reason, never an error."""
    reference = validation.image_reference(image)
    retry_after = await ctx.limiters.probe.hit_async(str(principal.user_id))
    if retry_after is not None:
        return AccessProbe("unknown", f"Too many image checks; try again in {retry_after} seconds.")
    result = await run_preflight(ctx, image=str(reference), login=None)
    if result.ok:
        return AccessProbe("public", "Anonymous pulls can read this image: it needs no credentials.")
    if result.code in PRIVATE_CODES:
        return AccessProbe("private", "This image is private (or missing): add registry credentials.")
    return AccessProbe("unknown", f"Could not check the registry anonymously: {result.message}")


async def image_platforms(ctx: AppContext, principal: Principal, *, service_id: uuid.UUID) -> ImagePlatforms:
    """Which platforms the service's image offers, read with its stored credentials (for the Platform
    setting). Bounded per user like the wizard's image check; over it, no platforms and the reason."""

    def work(session: Session) -> tuple[str, RegistryLogin | None]:
        service = service_of(
            session, principal=principal, service_id=service_id, action=Action.CREDENTIALS_USE
        )
        return service.image, credentials.open_stored(ctx, session, service_id=service.id)

    image, login = await ctx.db.run(work)
    retry_after = await ctx.limiters.probe.hit_async(str(principal.user_id))
    if retry_after is not None:
        return ImagePlatforms((), message=f"Too many image checks; try again in {retry_after} seconds.")
    return await read_image_platforms(image, options=ctx.registry, **registry_auth(login))
