"""The one place that turns guara errors and request errors into JSON responses."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from guara.core.errors import (
    Conflict,
    CredentialsUnreadable,
    GuaraError,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PreflightFailed,
    RateLimited,
)
from guara.store import DatabaseUnavailable

STATUS: list[tuple[type[GuaraError], int]] = [
    (InvalidInput, 422),
    (NotAuthenticated, 401),
    (NotFound, 404),
    (Conflict, 409),
    (RateLimited, 429),
    (PreflightFailed, 422),
    (CredentialsUnreadable, 409),
]


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **extra}


def status_for(exc: GuaraError) -> int:
    """The HTTP status of a guara error, for JSON and HTML answers alike."""
    return next((s for cls, s in STATUS if isinstance(exc, cls)), 400)


def guara_error_response(exc: GuaraError) -> JSONResponse:
    status = status_for(exc)
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        extra["retry_after"] = exc.retry_after
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, PreflightFailed):
        extra["elapsed_ms"] = exc.elapsed_ms
    if isinstance(exc, InvalidInput) and exc.field:
        extra["field"] = exc.field
    if isinstance(exc, NotAuthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error_body(exc.code, exc.message, **extra), status_code=status, headers=headers)


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Never echo "input": it may be a password.
    return [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": err.get("type"),
        }
        for err in exc.errors()
    ]


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and request.url.path not in ("/healthz", "/readyz")


def _html(request: Request, response: JSONResponse, message: str) -> Response:
    from guara.web.views import error_page

    page = error_page(request, response.status_code, message)
    for name in ("retry-after",):
        if name in response.headers:
            page.headers[name] = response.headers[name]
    return page


def install(app: FastAPI) -> None:
    @app.exception_handler(GuaraError)
    async def _guara(request: Request, exc: GuaraError) -> Response:
        response = guara_error_response(exc)
        return _html(request, response, exc.message) if _wants_html(request) else response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = validation_errors(exc)
        code = "invalid_json" if any(e["type"] == "json_invalid" for e in errors) else "invalid_input"
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(p for p in first["loc"] if p != "body")
        message = f"{where}: {first['msg']}" if where else str(first["msg"])
        response = JSONResponse(error_body(code, message, errors=errors), status_code=422)
        return _html(request, response, message) if _wants_html(request) else response

    @app.exception_handler(DatabaseUnavailable)
    async def _db(request: Request, exc: DatabaseUnavailable) -> Response:
        message = "the database is not available; try again in a moment"
        response = JSONResponse(error_body("unavailable", message), status_code=503)
        return _html(request, response, message) if _wants_html(request) else response

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status_code, "http_error"
        )
        response = JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )
        return _html(request, response, str(exc.detail)) if _wants_html(request) else response
