"""Dashboard pages: sign-in and set-up, projects. Each handler calls a use case and renders finished
view data."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from guara.core import accounts, projects, services, validation
from guara.core.errors import GuaraError, InvalidInput
from guara.http.auth import SESSION_COOKIE
from guara.http.deps import ContextDep
from guara.http.errors import status_for
from guara.web import audit_pages, endpoints, service_pages, team_pages, webhook_pages
from guara.web.auth import (
    FormUser,
    LoginRequired,
    WebUser,
    check_form_csrf,
    clear_session_cookie,
    form_csrf_token,
    set_form_csrf_cookie,
    set_session_cookie,
)
from guara.web.forms import FormText
from guara.web.views import render, see_other

router = APIRouter(include_in_schema=False)


def _sign_in_page(request: Request, *, setup: bool, status_code: int = 200, **context: object) -> Response:
    token = form_csrf_token(request)
    response = render(request, "login.html", status_code=status_code, setup=setup, form_csrf=token, **context)
    set_form_csrf_cookie(request, response, token)
    return response


@router.get("/")
async def home(ctx: ContextDep) -> Response:
    return see_other("/setup" if await accounts.needs_setup(ctx) else "/projects")


@router.get("/setup")
async def setup_page(request: Request, ctx: ContextDep) -> Response:
    if not await accounts.needs_setup(ctx):
        return see_other("/login")
    return _sign_in_page(request, setup=True)


@router.post("/setup")
async def setup_submit(
    request: Request, ctx: ContextDep, email: FormText, password: FormText, csrf_token: FormText = ""
) -> Response:
    return await _sign_in(request, ctx, email=email, password=password, csrf_token=csrf_token, setup=True)


@router.get("/login")
def login_page(request: Request) -> Response:
    return _sign_in_page(request, setup=False)


@router.post("/login")
async def login_submit(
    request: Request, ctx: ContextDep, email: FormText, password: FormText, csrf_token: FormText = ""
) -> Response:
    return await _sign_in(request, ctx, email=email, password=password, csrf_token=csrf_token, setup=False)


async def _sign_in(
    request: Request, ctx: ContextDep, *, email: str, password: str, csrf_token: str, setup: bool
) -> Response:
    try:
        check_form_csrf(request, csrf_token)
        if setup:
            new = await accounts.set_up(ctx, email=email, password=password)
        else:
            client = request.client.host if request.client else "unknown"
            new = await accounts.sign_in(ctx, email=email, password=password, client=client)
    except GuaraError as exc:
        if exc.code == "setup_done":
            return see_other("/login")
        return _sign_in_page(
            request, setup=setup, status_code=status_for(exc), error=exc.message, email=email
        )
    response = see_other("/projects")
    set_session_cookie(request, response, new, ctx.settings.session_max_age_s)
    return response


@router.post("/logout")
async def logout(request: Request, ctx: ContextDep, user: FormUser) -> Response:
    await accounts.sign_out(ctx, cookie_value=request.cookies.get(SESSION_COOKIE, ""))
    response = see_other("/login")
    clear_session_cookie(response)
    return response


@router.get("/projects")
async def projects_page(request: Request, ctx: ContextDep, user: WebUser) -> Response:
    return render(request, "projects.html", projects=await projects.list_projects(ctx, user))


@router.post("/projects")
async def create_project(request: Request, ctx: ContextDep, user: FormUser, name: FormText) -> Response:
    try:
        project = await projects.create_project(ctx, user, name=name)
    except InvalidInput as exc:
        items = await projects.list_projects(ctx, user)
        return render(
            request, "projects.html", status_code=status_for(exc), projects=items, error=exc.message
        )
    return see_other(f"/projects/{project.id}")


@router.get("/projects/{project_id}")
async def project_page(
    request: Request,
    ctx: ContextDep,
    user: WebUser,
    project_id: uuid.UUID,
    after: Annotated[str | None, Query(max_length=validation.MAX_SERVICE_NAME)] = None,
) -> Response:
    project = await projects.get_project(ctx, user, project_id=project_id)
    page = await services.services_page(ctx, user, project_id=project_id, after=after)
    next_url = f"/projects/{project_id}?{urlencode({'after': page.next_after})}" if page.next_after else None
    return render(
        request, "project.html", project=project, page=page, first_page=after is None, next_url=next_url
    )


def install(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")
    app.include_router(router)
    app.include_router(service_pages.router)
    app.include_router(audit_pages.router)
    app.include_router(team_pages.router)
    app.include_router(webhook_pages.router)
    app.include_router(endpoints.router)

    @app.exception_handler(LoginRequired)
    async def _login(_request: Request, _exc: LoginRequired) -> Response:
        return see_other("/login")
