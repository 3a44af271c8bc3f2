"""Request bodies are read only for callers allowed to send them, and only so much, so fast.

Every request with a body, except the sign-in and set-up forms, must come from a known caller (an API
token, or a dashboard session cookie) before one byte of its body is read: a stranger gets 401 (the
dashboard: a redirect to sign in) and costs no memory. The caller found here is kept on the request,
so the route's own authentication does not look it up again. Then the body may be at most
``MAX_BODY_BYTES`` (413, checked against Content-Length at once and against the bytes as they come) and
must arrive within ``BODY_TIMEOUT_S`` of its first read (408).
"""

from __future__ import annotations

import anyio
from fastapi import HTTPException
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guara.context import AppContext
from guara.http.auth import identify
from guara.http.errors import UNAVAILABLE_MESSAGE, error_body
from guara.store import DatabaseUnavailable

# A GCR JSON key is several KB; nothing legitimate comes near this.
MAX_BODY_BYTES = 256 * 1024
BODY_TIMEOUT_S = 30.0
# Forms posted before there is a session; they carry their own double-submit CSRF token.
OPEN_FORMS = frozenset({"/login", "/setup"})
# Accepting an invitation link (``/invite/<token>``), before there is an account.
OPEN_FORM_PREFIX = "/invite/"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RequestBodies:
    max_bytes = MAX_BODY_BYTES
    timeout_s = BODY_TIMEOUT_S

    def __init__(self, app: ASGIApp, *, context: AppContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._answer(scope, receive, send, self._too_large())
            return
        has_body = (declared is not None and declared != b"0") or b"transfer-encoding" in headers
        if has_body and scope["method"] in _BODY_METHODS and not _open_form(scope["path"]):
            request = Request(scope, receive)
            try:
                known = await identify(request, self.context)
            except DatabaseUnavailable:
                body = error_body("unavailable", UNAVAILABLE_MESSAGE)
                await self._answer(scope, receive, send, JSONResponse(body, status_code=503))
                return
            if not known:
                await self._answer(scope, receive, send, _unauthenticated(scope["path"]))
                return
        await self.app(scope, self._bounded(receive), send)

    def _bounded(self, receive: Receive) -> Receive:
        received = 0
        deadline: float | None = None
        complete = False

        async def bounded() -> Message:
            nonlocal received, deadline, complete
            if complete:  # after the body: disconnect listeners wait as long as they like
                return await receive()
            if deadline is None:
                deadline = anyio.current_time() + self.timeout_s
            with anyio.move_on_after(max(deadline - anyio.current_time(), 0.0)):
                message = await receive()
                if message["type"] != "http.request":
                    complete = True
                    return message
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the framework's body parsing, an HTTPException keeps its status.
                    raise HTTPException(413, f"request body over {self.max_bytes} bytes")
                complete = not message.get("more_body", False)
                return message
            raise HTTPException(408, f"the request body did not arrive within {self.timeout_s:g} s")

        return bounded

    def _too_large(self) -> Response:
        body = error_body("payload_too_large", f"request body over {self.max_bytes} bytes")
        return JSONResponse(body, status_code=413)

    @staticmethod
    async def _answer(scope: Scope, receive: Receive, send: Send, response: Response) -> None:
        # The body is left unread: the connection is not reused for another request.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _open_form(path: str) -> bool:
    return path in OPEN_FORMS or (
        path.startswith(OPEN_FORM_PREFIX) and "/" not in path[len(OPEN_FORM_PREFIX) :]
    )


def _unauthenticated(path: str) -> Response:
    if path.startswith(("/api/", "/-/")):
        return JSONResponse(
            error_body("not_authenticated", "authentication required"),
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return RedirectResponse("/login", status_code=303)
