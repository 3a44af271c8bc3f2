"""The ASGI application: JSON API under /api/v1, the dashboard at /, health probes.

The one place that knows both adapters: it assembles them and decides, per request, whether an error
is answered as JSON (the API, the probes) or as a dashboard page.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guara import __version__, api
from guara.config import Settings, split_address
from guara.context import AppContext
from guara.core.errors import GuaraError
from guara.http.bodies import RequestBodies
from guara.http.errors import (
    UNAVAILABLE_MESSAGE,
    error_body,
    guara_error_response,
    validation_error_response,
)
from guara.http.telemetry import RequestTelemetry, metrics_app, metrics_response
from guara.logs import configure_logging
from guara.secrets import secret_scope
from guara.serving import serving_beside
from guara.store import DatabaseUnavailable
from guara.web import routes as web_routes
from guara.web.views import error_page

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


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    context: AppContext = app.state.context
    async with contextlib.AsyncExitStack() as stack:
        address: str | None = app.state.metrics_address
        if address is not None:
            host, port = split_address(address)
            await stack.enter_async_context(serving_beside(metrics_app(context), host=host, port=port))
        context.start_background_work()
        yield
        await context.stop_background_work()


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and request.url.path not in ("/healthz", "/readyz")


def _answer(request: Request, response: JSONResponse, message: str) -> Response:
    """The JSON answer for API calls; the dashboard's error page (same status, Retry-After) otherwise."""
    if not _wants_html(request):
        return response
    page = error_page(request, response.status_code, message)
    if "retry-after" in response.headers:
        page.headers["retry-after"] = response.headers["retry-after"]
    return page


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (a path is often served by several routes)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _child = route.matches({**request.scope, "method": "GET"})
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GuaraError)
    async def _guara(request: Request, exc: GuaraError) -> Response:
        return _answer(request, guara_error_response(exc), exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return _answer(request, *validation_error_response(exc))

    @app.exception_handler(DatabaseUnavailable)
    async def _db(request: Request, exc: DatabaseUnavailable) -> Response:
        response = JSONResponse(error_body("unavailable", UNAVAILABLE_MESSAGE), status_code=503)
        return _answer(request, response, UNAVAILABLE_MESSAGE)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {
            400: "invalid_body",
            404: "not_found",
            405: "method_not_allowed",
            408: "request_timeout",
            413: "payload_too_large",
        }.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        response = JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers
        )
        return _answer(request, response, str(exc.detail))


def create_app(context: AppContext, *, metrics_address: str | None = None) -> FastAPI:
    """The API, the dashboard and the health probes over one application context.

    ``GET /metrics`` is served here, or only on ``metrics_address`` (host:port) when one is given."""
    app = FastAPI(
        title="guara",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        # Short, stable operation ids (the route functions' names) for generated SDKs.
        generate_unique_id_function=lambda route: route.name,
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.context = context
    app.state.metrics_address = metrics_address
    _install_error_handlers(app)
    app.include_router(api.router())
    web_routes.install(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False, response_model=None)
    def readyz() -> Any:
        try:
            context.db.check()
        except DatabaseUnavailable:
            return JSONResponse(error_body("unavailable", "database not reachable"), status_code=503)
        return {"status": "ready"}

    if metrics_address is None:

        @app.get("/metrics", include_in_schema=False)
        async def prometheus_metrics() -> Response:
            return await metrics_response(context)

    app.add_middleware(RequestBodies, context=context)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(SecretScope)
    app.add_middleware(RequestTelemetry)
    return app


def app_from_settings() -> FastAPI:
    """The application of one worker process of ``guara serve --workers N`` (a uvicorn factory): the
    parent has already migrated the database and made the development key, if any."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    context = AppContext.from_settings(settings)
    return create_app(context, metrics_address=settings.metrics_addr)
