"""Dashboard pages. Each handler calls a use case and renders finished view data."""

from __future__ import annotations

import uuid
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from guara.api.deps import SESSION_COOKIE, PlatformDep
from guara.api.errors import status_for
from guara.core import accounts, credentials, projects, services
from guara.core.errors import GuaraError, InvalidInput
from guara.web import audit_pages, endpoints, service_pages
from guara.web.auth import (
    FormUser,
    LoginRequired,
    WebUser,
    check_form_csrf,
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
def home(request: Request, platform: PlatformDep) -> Response:
    with platform.db.session() as session:
        if accounts.needs_setup(session):
            return see_other("/setup")
    return see_other("/projects")


@router.get("/setup")
def setup_page(request: Request, platform: PlatformDep) -> Response:
    with platform.db.session() as session:
        if not accounts.needs_setup(session):
            return see_other("/login")
    return _sign_in_page(request, setup=True)


@router.post("/setup")
def setup_submit(
    request: Request, platform: PlatformDep, email: FormText, password: FormText, csrf_token: FormText = ""
) -> Response:
    return _sign_in(request, platform, email=email, password=password, csrf_token=csrf_token, setup=True)


@router.get("/login")
def login_page(request: Request) -> Response:
    return _sign_in_page(request, setup=False)


@router.post("/login")
def login_submit(
    request: Request, platform: PlatformDep, email: FormText, password: FormText, csrf_token: FormText = ""
) -> Response:
    return _sign_in(request, platform, email=email, password=password, csrf_token=csrf_token, setup=False)


def _sign_in(
    request: Request, platform: PlatformDep, *, email: str, password: str, csrf_token: str, setup: bool
) -> Response:
    max_age = platform.settings.session_max_age_s
    try:
        check_form_csrf(request, csrf_token)
        with platform.db.session() as session:
            if setup:
                principal = accounts.create_first_user(session, email=email, password=password)
            else:
                client = request.client.host if request.client else "unknown"
                accounts.throttle_sign_in(platform.sign_in_limiter, email=email, client=client)
                principal = accounts.authenticate(session, email=email, password=password)
            new = accounts.start_session(session, principal=principal, max_age_s=max_age)
    except GuaraError as exc:
        if exc.code == "setup_done":
            return see_other("/login")
        return _sign_in_page(
            request, setup=setup, status_code=status_for(exc), error=exc.message, email=email
        )
    response = see_other("/projects")
    set_session_cookie(request, response, new, max_age)
    return response


@router.post("/logout")
def logout(request: Request, platform: PlatformDep, user: FormUser) -> Response:
    with platform.db.session() as session:
        accounts.end_session(session, request.cookies.get(SESSION_COOKIE, ""))
    response = see_other("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/projects")
def projects_page(request: Request, platform: PlatformDep, user: WebUser) -> Response:
    with platform.db.session() as session:
        items = projects.list_projects(session, principal=user)
    return render(request, "projects.html", projects=items)


@router.post("/projects")
def create_project(request: Request, platform: PlatformDep, user: FormUser, name: FormText) -> Response:
    try:
        with platform.db.session() as session:
            project = projects.create_project(session, principal=user, name=name)
    except InvalidInput as exc:
        with platform.db.session() as session:
            items = projects.list_projects(session, principal=user)
        return render(
            request, "projects.html", status_code=status_for(exc), projects=items, error=exc.message
        )
    return see_other(f"/projects/{project.id}")


@router.get("/projects/{project_id}")
def project_page(request: Request, platform: PlatformDep, user: WebUser, project_id: uuid.UUID) -> Response:
    with platform.db.session() as session:
        project = projects.get_project(session, principal=user, project_id=project_id)
        items = services.list_services(session, principal=user, project_id=project_id)
        with_credentials = set(credentials.views_in_project(session, project_id=project_id))
    return render(request, "project.html", project=project, services=items, with_credentials=with_credentials)


def install(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")
    app.include_router(router)
    app.include_router(service_pages.router)
    app.include_router(audit_pages.router)
    app.include_router(endpoints.router)

    @app.exception_handler(LoginRequired)
    async def _login(_request: Request, _exc: LoginRequired) -> Response:
        return see_other("/login")
