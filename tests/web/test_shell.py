"""The dashboard shell: first-account set-up, sign-in, CSRF, pages, tenancy."""

from __future__ import annotations

import re
import threading
import uuid

import httpx
from fastapi.testclient import TestClient

from guara.context import AppContext
from tests.support import make_client
from tests.web.support import form_csrf


def _setup(
    http: TestClient, email: str = "first@example.com", password: str = "first-password"
) -> httpx.Response:
    page = http.get("/setup")
    response: httpx.Response = http.post(
        "/setup",
        data={"email": email, "password": password, "csrf_token": form_csrf(page.text)},
        follow_redirects=False,
    )
    return response


def test_empty_install_offers_first_account_once(context: AppContext) -> None:
    with make_client(context) as http:
        assert http.get("/", follow_redirects=False).headers["location"] == "/setup"
        response = _setup(http)
        assert response.status_code == 303
        cookie = response.headers["set-cookie"]
        assert (
            "guara_session=" in cookie
            and "HttpOnly" in cookie
            and "SameSite=lax" in cookie.replace("Lax", "lax")
        )
        assert http.get("/projects").status_code == 200
    with make_client(context) as http:
        assert http.get("/setup", follow_redirects=False).headers["location"] == "/login"
        again = _setup(http, "second@example.com")
        assert again.headers["location"] == "/login"
        login = http.get("/login")
        bad = http.post(
            "/login",
            data={
                "email": "second@example.com",
                "password": "first-password",
                "csrf_token": form_csrf(login.text),
            },
        )
        assert bad.status_code == 401


def test_racing_first_account_creates_exactly_one(context: AppContext) -> None:
    results: list[int] = []

    def attempt(index: int) -> None:
        with make_client(context) as http:
            response = _setup(http, f"racer{index}@example.com")
            results.append(http.get("/projects", follow_redirects=False).status_code)
            assert response.status_code == 303

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results).count(200) == 1
    from sqlalchemy import func, select

    from guara.store.models import User

    with context.db.session() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1


def test_forms_refuse_missing_csrf(context: AppContext) -> None:
    with make_client(context) as http:
        assert _setup(http).status_code == 303
        response = http.post("/projects", data={"name": "x", "csrf_token": "wrong"})
        assert response.status_code == 401
        assert "form expired" in response.text
        page = http.get("/projects")
        ok = http.post(
            "/projects", data={"name": "shop", "csrf_token": form_csrf(page.text)}, follow_redirects=False
        )
        assert ok.status_code == 303
    with make_client(context) as http:
        http.get("/login")
        signed_out = http.post("/login", data={"email": "first@example.com", "password": "first-password"})
        assert signed_out.status_code == 401
        assert "form expired" in signed_out.text


def test_cookie_api_calls_need_the_csrf_header(context: AppContext) -> None:
    with make_client(context) as http:
        _setup(http)
        assert http.get("/api/v1/projects").status_code == 200
        refused = http.post("/api/v1/projects", json={"name": "x"})
        assert refused.status_code == 401
        assert refused.json()["code"] == "csrf_failed"
        token = re.search(r'<meta name="csrf-token" content="([^"]+)"', http.get("/projects").text)
        assert token
        accepted = http.post("/api/v1/projects", json={"name": "x"}, headers={"X-CSRF-Token": token.group(1)})
        assert accepted.status_code == 201


def test_pages_and_another_users_service_is_a_404_page(context: AppContext) -> None:
    with make_client(context) as http:
        _setup(http)
        page = http.get("/projects")
        created = http.post(
            "/projects", data={"name": "shop", "csrf_token": form_csrf(page.text)}, follow_redirects=False
        )
        project_path = created.headers["location"]
        assert "shop" in http.get(project_path).text
        missing = http.get(f"/services/{uuid.uuid4()}")
        assert missing.status_code == 404
        assert "text/html" in missing.headers["content-type"]
        assert "Not found" in missing.text


def test_signed_out_pages_redirect_to_login(context: AppContext) -> None:
    with make_client(context) as http:
        _setup(http)
    with make_client(context) as http:
        response = http.get("/projects", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/login"


def test_page_errors_are_pages_not_json(context: AppContext) -> None:
    with make_client(context) as http:
        _setup(http)
        bad_id = http.get("/services/not-a-uuid")
        assert bad_id.status_code == 422
        assert "text/html" in bad_id.headers["content-type"]
        assert "Check your input" in bad_id.text
