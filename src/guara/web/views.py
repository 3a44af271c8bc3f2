"""Rendering and redirects shared by the dashboard's pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from guara.core.projects import ProjectView
from guara.core.roles import Action, allows
from guara.core.validation import MAX_REGISTRY_SECRET
from guara.registry.cloud import MAX_JSON_KEY_CHARS
from guara.registry.known import known_registries_json, notes_for

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
# The password field's maxlength is the server's own limit, not a copy of it.
templates.env.globals["MAX_REGISTRY_SECRET"] = MAX_REGISTRY_SECRET
templates.env.globals["MAX_JSON_KEY_CHARS"] = MAX_JSON_KEY_CHARS
# Per-registry help for the Username and Password fields: rendered for the registry in the form, and
# switched by guara.js as the Registry URL changes.
templates.env.globals["registry_notes"] = notes_for
templates.env.globals["KNOWN_REGISTRIES_JSON"] = known_registries_json()


def can(project: ProjectView, action: str) -> bool:
    """Whether the caller's role in ``project`` allows ``action`` (an ``Action`` value): pages show
    only the buttons and forms that would not answer 403. A misspelt action fails the render."""
    return allows(project.role, Action(action))


templates.env.globals["can"] = can


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("user", getattr(request.state, "user", None))
    context.setdefault("csrf_token", getattr(request.state, "csrf_token", None))
    context.setdefault("preflight_timeout_s", request.app.state.context.registry.timeout)
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def see_other(url: str) -> RedirectResponse:
    """The redirect after a form post (303: the browser follows it with a GET)."""
    return RedirectResponse(url, status_code=303)


HEADINGS = {
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    422: "Check your input",
    429: "Slow down",
    503: "Unavailable",
}


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    return render(
        request,
        "error.html",
        status_code=status_code,
        status=status_code,
        heading=HEADINGS.get(status_code, "Something went wrong"),
        message=message,
    )
