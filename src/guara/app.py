"""The ASGI application: JSON API under /api/v1, the dashboard at /, health probes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guara.api import errors
from guara.api.routes import audit, credentials, deployments, projects, services
from guara.core.platform import Platform
from guara.secrets import secret_scope
from guara.store import DatabaseUnavailable

# A GCR JSON key is several KB; nothing legitimate comes near this.
MAX_BODY_BYTES = 256 * 1024


class BodySizeLimit:
    """Refuse request bodies over a limit before anything parses them."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        response = JSONResponse(
            errors.error_body("payload_too_large", f"request body over {self.max_bytes} bytes"),
            status_code=413,
        )
        await response({"type": "http"}, _never_receive, send)


class SecretScope:
    """Each request gets its own set of secrets to scrub from log lines (see guara.secrets)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with secret_scope():
            await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


async def _never_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(
        title="guara",
        version="0.1.0",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.platform = platform
    errors.install(app)

    api = APIRouter(prefix="/api/v1")
    for module in (projects, services, credentials, deployments, audit):
        api.include_router(module.router)
    app.include_router(api)

    from guara.web import routes as web_routes

    web_routes.install(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False, response_model=None)
    def readyz() -> Any:
        try:
            platform.db.check()
        except DatabaseUnavailable:
            return JSONResponse(errors.error_body("unavailable", "database not reachable"), status_code=503)
        return {"status": "ready"}

    app.add_middleware(BodySizeLimit)
    app.add_middleware(SecretScope)
    return app
