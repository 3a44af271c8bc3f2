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
    """Refuse request bodies over a limit with 413 before anything parses them.

    The body is read up front (it is small by construction) so that an oversized chunked upload is a
    413 too: raised from inside the framework's body parsing, it would become a generic 400.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._too_large(send)
                return
            if not message.get("more_body", False):
                break
        buffered: Message = {"type": "http.request", "body": bytes(body), "more_body": False}
        await self.app(scope, _replay([buffered], receive), send)

    async def _too_large(self, send: Send) -> None:
        response = JSONResponse(
            errors.error_body("payload_too_large", f"request body over {self.max_bytes} bytes"),
            status_code=413,
        )
        await response({"type": "http"}, _disconnected, send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _disconnected() -> Message:
    return {"type": "http.disconnect"}


# Sent with every answer: no framing (clickjacking of Remove/Save), no MIME sniffing, no referrer to
# other sites, nothing cached (pages show masked credentials and CSRF tokens).
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
NO_STORE = (b"cache-control", b"no-store")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [h for h in SECURITY_HEADERS if h[0] not in names]
                if not cacheable and NO_STORE[0] not in names:
                    headers.append(NO_STORE)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class SecretScope:
    """Each request gets its own set of secrets to scrub from log lines (see guara.secrets)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with secret_scope():
            await self.app(scope, receive, send)


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
    app.add_middleware(SecurityHeaders)
    app.add_middleware(SecretScope)
    return app
