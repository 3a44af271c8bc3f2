"""Every request gets an id and is counted: ``X-Request-ID`` on every answer, kept from the caller when it
is a plain token, and the request's method, route template, status and duration in the metrics."""

from __future__ import annotations

import re
import time
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guara import logs, metrics
from guara.context import AppContext
from guara.core import keys

REQUEST_ID_HEADER = b"x-request-id"
# Anything else (too long, spaces, control characters) could forge log lines: guara makes its own.
_PLAIN_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestTelemetry:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        root_path = scope.get("root_path", "")
        rid_token = logs.request_id.set(rid)
        user_token = logs.user_id.set(None)
        status = 500  # what the server answers when the application ends without a response
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [h for h in message.get("headers", []) if h[0].lower() != REQUEST_ID_HEADER]
                message = {**message, "headers": [*headers, (REQUEST_ID_HEADER, rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            took = time.perf_counter() - started
            metrics.count_request(scope["method"], route_template(scope, root_path), status, took)
            logs.user_id.reset(user_token)
            logs.request_id.reset(rid_token)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            given = bytes(value).decode("latin-1")
            if _PLAIN_REQUEST_ID.fullmatch(given):
                return given
            break
    return uuid.uuid4().hex


def route_template(scope: Scope, root_path: str = "") -> str:
    """The template of the route that answered, never the path: a path holds ids and whatever a caller
    typed. ``scope`` is the request's after the answer (routing writes the route into it); ``root_path``
    is its root path before routing changed it."""
    route = scope.get("route")
    if route is None:  # a plain Starlette route or mount (the OpenAPI document, static files)
        unrouted = {**scope, "root_path": root_path}
        app_routes = getattr(getattr(scope.get("app"), "router", None), "routes", ())
        route = next((r for r in app_routes if r.matches(unrouted)[0] is Match.FULL), None)
    template, pattern = getattr(route, "path", None), getattr(route, "path_regex", None)
    if not isinstance(template, str) or not isinstance(pattern, re.Pattern):
        return "unmatched"
    # A route of an included router knows its own path only ("/projects"); the rest of the request's
    # path before it is the routers' literal prefix ("/api/v1").
    path = str(scope["path"])
    for start, char in enumerate(path):
        if char == "/" and pattern.fullmatch(path[start:]):
            return path[:start] + template
    return template


async def metrics_response(ctx: AppContext) -> Response:
    """``GET /metrics``: the counters of every process, and the sealed secrets counted now."""
    body = metrics.render(await keys.status(ctx))
    return Response(body, media_type=metrics.CONTENT_TYPE)


def metrics_app(ctx: AppContext) -> Starlette:
    """``/metrics`` alone, for ``GUARA_METRICS_ADDR``: a port that only the monitoring network reaches."""

    async def endpoint(request: Request) -> Response:
        return await metrics_response(ctx)

    return Starlette(routes=[Route("/metrics", endpoint, methods=["GET"])])
