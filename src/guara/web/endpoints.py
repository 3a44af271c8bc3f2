"""JSON endpoints behind the dashboard's JavaScript (``/-/…``): image checks and Test Connection.

They authenticate like the JSON API does for the dashboard: the session cookie plus the
``X-CSRF-Token`` header (from ``<meta name="csrf-token">``). Errors are JSON, never pages, and a rate
limit is a soft result the page shows in place, not an error.
"""

from __future__ import annotations

import uuid

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from guara.api.deps import PlatformDep, authenticate_request
from guara.api.errors import status_for
from guara.core import credentials, services, validation
from guara.core.accounts import Principal
from guara.core.errors import GuaraError, InvalidInput, NotAuthenticated, RateLimited
from guara.core.platform import Platform
from guara.core.validation import MAX_REGISTRY_SECRET
from guara.web.presenters import connection_result_from, rate_limited_result

router = APIRouter(prefix="/-", include_in_schema=False)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageCheck(_Body):
    image: str = Field(max_length=1000)
    probe: bool = False


class TestConnection(_Body):
    image: str | None = Field(default=None, max_length=1000)
    registry: str | None = Field(default=None, max_length=255)
    username: str | None = Field(default=None, max_length=255)
    password: SecretStr | None = Field(default=None, max_length=MAX_REGISTRY_SECRET)
    service_id: uuid.UUID | None = None


def _error(exc: GuaraError) -> JSONResponse:
    """A guara error as JSON for ``guara.js``, with the status the API would give it."""
    body: dict[str, object] = {"ok": False, "code": exc.code, "message": exc.message}
    if isinstance(exc, InvalidInput) and exc.field:
        body["field"] = exc.field
    if isinstance(exc, NotAuthenticated):
        body["message"] = "Your session has expired or the page is stale: reload the page and try again."
    return JSONResponse(body, status_code=status_for(exc))


async def _caller(request: Request, platform: Platform) -> Principal:
    return await anyio.to_thread.run_sync(authenticate_request, request, platform)


@router.post("/image-check")
async def image_check(request: Request, body: ImageCheck, platform: PlatformDep) -> JSONResponse:
    """Validate an image reference as the user types; with ``probe``, ask if it is public."""
    try:
        user = await _caller(request, platform)
        if not body.image.strip():
            return JSONResponse({"valid": False, "empty": True, "message": ""})
        try:
            reference = validation.image_reference(body.image)
        except InvalidInput as exc:
            return JSONResponse({"valid": False, "message": exc.message})
        answer: dict[str, object] = {
            "valid": True,
            "canonical": str(reference),
            "registry": reference.registry,
            "message": f"Registry {reference.registry}, repository {reference.repository}, "
            + (f"digest {reference.digest}" if reference.digest else f"tag {reference.tag}"),
        }
        if body.probe:
            try:
                probe = await credentials.probe_image_access(platform, user, image=body.image)
                answer |= {"access": probe.access, "access_message": probe.message}
            except RateLimited as exc:
                answer |= {"access": "unknown", "access_message": exc.message}
        return JSONResponse(answer)
    except GuaraError as exc:
        return _error(exc)


@router.post("/test-connection")
async def test_connection(request: Request, body: TestConnection, platform: PlatformDep) -> JSONResponse:
    """Test Connection; with ``service_id``, omitted username and password come from the stored ones."""
    try:
        user = await _caller(request, platform)
        image = body.image
        username = body.username or None
        password = body.password if body.password and body.password.get_secret_value() else None
        if body.service_id is not None:
            service_id = body.service_id
            service = await anyio.to_thread.run_sync(_service_image, platform, user, service_id)
            image = image or service
        elif (username is None) != (password is None):
            raise InvalidInput(
                "enter both a username and a password (or neither, to test anonymous pulls)",
                field="username" if username is None else "password",
            )
        if not image:
            raise InvalidInput("enter an image reference first", field="image")
        result = await credentials.run_test_connection(
            platform,
            user,
            image=image,
            registry=(body.registry or "").strip() or None,
            username=username,
            password=password,
            service_id=body.service_id,
        )
    except RateLimited as exc:
        view = rate_limited_result(limit=platform.limiter.item.amount, retry_after=exc.retry_after)
        return JSONResponse(
            view.as_json(), status_code=status_for(exc), headers={"Retry-After": str(exc.retry_after)}
        )
    except GuaraError as exc:
        return _error(exc)
    view = connection_result_from(result, timeout_s=platform.settings.preflight_timeout_s)
    return JSONResponse(view.as_json())


def _service_image(platform: Platform, user: Principal, service_id: uuid.UUID) -> str:
    with platform.db.session() as session:
        return services.get_service(session, principal=user, service_id=service_id).image
