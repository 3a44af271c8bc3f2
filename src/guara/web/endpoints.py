"""JSON endpoints behind the dashboard's JavaScript (``/-/…``): image checks, Test Connection and the
platforms an image offers.

They authenticate like the JSON API does for the dashboard: the session cookie plus the
``X-CSRF-Token`` header (from ``<meta name="csrf-token">``). Errors are JSON, never pages, and a rate
limit is a soft result the page shows in place, not an error.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from guara.core import connection_tests, validation
from guara.core.errors import GuaraError, InvalidInput, NotAuthenticated, RateLimited
from guara.core.validation import MAX_REGISTRY_SECRET
from guara.http.auth import authenticate_request
from guara.http.deps import ContextDep
from guara.http.errors import retry_after_headers, status_for
from guara.registry.cloud import MAX_JSON_KEY_CHARS
from guara.web.forms import optional_secret, optional_text
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
    kind: str = Field(default="password", max_length=16)
    aws_access_key_id: str | None = Field(default=None, max_length=128)
    aws_secret_access_key: SecretStr | None = Field(default=None, max_length=256)
    aws_region: str | None = Field(default=None, max_length=32)
    aws_role_arn: str | None = Field(default=None, max_length=600)
    google_json_key: SecretStr | None = Field(default=None, max_length=MAX_JSON_KEY_CHARS)


class PlatformsOf(_Body):
    service_id: uuid.UUID


def _error(exc: GuaraError) -> JSONResponse:
    """A guara error as JSON for ``guara.js``, with the status the API would give it."""
    body: dict[str, object] = {"ok": False, "code": exc.code, "message": exc.message}
    if isinstance(exc, InvalidInput) and exc.field:
        body["field"] = exc.field
    if isinstance(exc, NotAuthenticated):
        body["message"] = "Your session has expired or the page is stale: reload the page and try again."
    return JSONResponse(body, status_code=status_for(exc))


@router.post("/platforms")
async def platforms(request: Request, body: PlatformsOf, ctx: ContextDep) -> JSONResponse:
    """The platforms the service's image offers, for the Platform setting's suggestions."""
    try:
        user = await authenticate_request(request, ctx)
        found = await connection_tests.image_platforms(ctx, user, service_id=body.service_id)
    except GuaraError as exc:
        return _error(exc)
    answer = {"platforms": list(found.platforms), "code": found.code.value if found.code else None}
    return JSONResponse(answer | {"message": found.message})


@router.post("/image-check")
async def image_check(request: Request, body: ImageCheck, ctx: ContextDep) -> JSONResponse:
    """Validate an image reference as the user types; with ``probe``, ask if it is public."""
    try:
        user = await authenticate_request(request, ctx)
        if not body.image.strip():
            return JSONResponse({"valid": False, "empty": True, "message": ""})
        try:
            reference = validation.image_reference(body.image.strip())
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
            probe = await connection_tests.probe_image_access(ctx, user, image=body.image.strip())
            answer |= {"access": probe.access, "access_message": probe.message}
        return JSONResponse(answer)
    except GuaraError as exc:
        return _error(exc)


@router.post("/test-connection")
async def test_connection(request: Request, body: TestConnection, ctx: ContextDep) -> JSONResponse:
    """Test Connection; with ``service_id``, omitted username and password come from the stored ones.
    Blank form fields count as omitted."""
    try:
        user = await authenticate_request(request, ctx)
        request_ = connection_tests.ConnectionTest(
            image=optional_text((body.image or "").strip()),
            registry=optional_text(body.registry or ""),
            username=optional_text(body.username or ""),
            password=optional_secret(body.password),
            service_id=body.service_id,
            kind=body.kind,
            aws_access_key_id=optional_text(body.aws_access_key_id or ""),
            aws_secret_access_key=optional_secret(body.aws_secret_access_key),
            aws_region=optional_text(body.aws_region or ""),
            aws_role_arn=optional_text(body.aws_role_arn or ""),
            google_json_key=optional_secret(body.google_json_key),
        )
        result = await connection_tests.run_connection_test(ctx, user, request_)
    except RateLimited as exc:
        view = rate_limited_result(limit=ctx.limiters.preflight.item.amount, retry_after=exc.retry_after)
        return JSONResponse(view.as_json(), status_code=status_for(exc), headers=retry_after_headers(exc))
    except GuaraError as exc:
        return _error(exc)
    view = connection_result_from(result, timeout_s=ctx.registry.timeout, registry=request_.named_registry)
    return JSONResponse(view.as_json())
