"""How guara errors and request errors become HTTP answers: one status table, one JSON body shape.

The application (``guara.app``) decides per request whether the answer is JSON or a dashboard page;
both use the status and message decided here.
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from guara.core.errors import (
    Conflict,
    CredentialsUnreadable,
    Forbidden,
    GuaraError,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PreflightFailed,
    RateLimited,
)

STATUS: list[tuple[type[GuaraError], int]] = [
    (InvalidInput, 422),
    (NotAuthenticated, 401),
    (NotFound, 404),
    (Forbidden, 403),
    (Conflict, 409),
    (RateLimited, 429),
    (PreflightFailed, 422),
    (CredentialsUnreadable, 409),
]
UNAVAILABLE_MESSAGE = "the database is not available; try again in a moment"


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **extra}


def status_for(exc: GuaraError) -> int:
    """The HTTP status of a guara error, for JSON and HTML answers alike."""
    return next((s for cls, s in STATUS if isinstance(exc, cls)), 400)


def retry_after_headers(exc: GuaraError) -> dict[str, str]:
    return {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else {}


def guara_error_response(exc: GuaraError) -> JSONResponse:
    extra: dict[str, Any] = {}
    headers = retry_after_headers(exc)
    if isinstance(exc, RateLimited):
        extra["retry_after"] = exc.retry_after
    if isinstance(exc, PreflightFailed):
        extra["elapsed_ms"] = exc.elapsed_ms
    if isinstance(exc, InvalidInput) and exc.field:
        extra["field"] = exc.field
    if isinstance(exc, NotAuthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        error_body(exc.code, exc.message, **extra), status_code=status_for(exc), headers=headers
    )


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


def validation_error_response(exc: RequestValidationError) -> tuple[JSONResponse, str]:
    """The 422 answer to a malformed request, and its one-line message."""
    errors = validation_errors(exc)
    code = "invalid_json" if any(e["type"] == "json_invalid" for e in errors) else "invalid_input"
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(p for p in first["loc"] if p != "body")
    message = f"{where}: {first['msg']}" if where else str(first["msg"])
    return JSONResponse(error_body(code, message, errors=errors), status_code=422), message
