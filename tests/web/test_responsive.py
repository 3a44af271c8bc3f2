"""Every dashboard page fits its window, from a phone to a desktop, and axe-core finds no serious or
critical accessibility violation on any of them.

One signed-in user with the data that made pages too wide: a service with credentials and deployments,
a failed deploy with a long message, a service on a long ``repo@sha256:…`` reference, many audit
entries. Each page reachable from the project list is visited at 1280×900 and 390×844.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect
from pydantic import SecretStr

from guara.context import AppContext
from guara.core import accounts, services
from guara.core.credentials import CredentialsChange
from guara.core.services import ServiceChange
from tests.lab import Lab
from tests.support import deploy_and_wait, run
from tests.web.support import PASSWORD, create_project, create_user
from tests.web.test_browser import ARTIFACTS, browser, guara_env, server_context, server_url

__all__ = ["browser", "guara_env", "server_context", "server_url"]

pytestmark = [pytest.mark.browser, pytest.mark.lab]

SIZES = {"desktop": (1280, 900), "phone": (390, 844)}
LONG_REPOSITORY = "organization-with-a-long-name/platform-team/backend/an-application-with-a-long-name"


@dataclass
class Arranged:
    email: str
    pages: dict[str, str]


@pytest.fixture(scope="module")
def arranged(server_context: AppContext, server_url: str, lab: Lab) -> Arranged:
    email = f"wide-{uuid.uuid4().hex[:8]}@example.com"
    principal = create_user(server_context, email)
    project_id = uuid.UUID(create_project(server_context, email, name="a-project-with-quite-a-long-name"))
    digest = lab.token.images["acme/api:v1"]

    def create(name: str, image: str, username: str | None = None, password: str = "") -> str:
        creds = CredentialsChange(lab.token.host, username, SecretStr(password)) if username else None
        return str(
            run(
                services.create_service,
                server_context,
                principal,
                project_id=project_id,
                name=name,
                image=image,
                registry_credentials=creds,
                skip_verification=True,
            ).id
        )

    working = create("api", lab.token.ref("acme/api:v1"), "alice", lab.token.users["alice"])
    failing = create("broken", lab.token.ref("acme/api:v1"), "alice", "a wrong password")
    pinned = create("pinned", f"{lab.token.host}/{LONG_REPOSITORY}@{digest}")
    for i in range(30):  # many audit entries, ending on the platform the image has
        change = ServiceChange(platform="linux/amd64" if i % 2 else "linux/arm64")
        run(services.update_service, server_context, principal, service_id=uuid.UUID(working), change=change)
    token = run(accounts.create_api_token, server_context, email=email)
    with httpx.Client(base_url=server_url + "/api/v1", headers={"Authorization": f"Bearer {token}"}) as api:
        for _ in range(2):
            deployed = deploy_and_wait(api.post, api.get, working)
            assert deployed["status"] == "succeeded", deployed["message"]
        assert deploy_and_wait(api.post, api.get, failing)["status"] == "failed"
        assert (
            deploy_and_wait(api.post, api.get, pinned)["status"] == "failed"
        )  # the long repository does not exist
    return Arranged(
        email,
        {
            "projects": "/projects",
            "project": f"/projects/{project_id}",
            "wizard": f"/projects/{project_id}/services/new",
            "overview": f"/services/{working}",
            "overview-failed": f"/services/{failing}",
            "overview-pinned": f"/services/{pinned}",
            "logs": f"/services/{working}/logs",
            "settings": f"/services/{working}/settings",
            "settings-pinned": f"/services/{pinned}/settings",
            "remove-credentials": f"/services/{working}/settings/registry-credentials/remove",
            "audit": f"/projects/{project_id}/audit-logs",
        },
    )


@pytest.fixture(scope="module", params=list(SIZES))
def signed_in(
    request: pytest.FixtureRequest, browser: Browser, server_url: str, arranged: Arranged
) -> Iterator[Page]:
    width, height = SIZES[request.param]
    context = browser.new_context(base_url=server_url, viewport={"width": width, "height": height})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill(arranged.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/projects")
    try:
        yield page
    finally:
        context.close()


@pytest.mark.parametrize(
    "name",
    [
        "projects",
        "project",
        "wizard",
        "overview",
        "overview-failed",
        "overview-pinned",
        "logs",
        "settings",
        "settings-pinned",
        "remove-credentials",
        "audit",
    ],
)
def test_page_fits_and_is_accessible(signed_in: Page, arranged: Arranged, name: str) -> None:
    page = signed_in
    response = page.goto(arranged.pages[name])
    assert response is not None and response.status == 200, name
    page.wait_for_load_state("load")
    width, overflowing = page.evaluate(
        """() => {
            const limit = window.innerWidth;
            const wide = [...document.querySelectorAll("body *")]
                .filter((el) => el.getBoundingClientRect().right > limit + 0.5)
                .slice(0, 5)
                .map((el) => `${el.tagName}.${el.className} ${Math.round(el.getBoundingClientRect().right)}`);
            return [document.documentElement.scrollWidth, wide];
        }"""
    )
    viewport = page.viewport_size
    assert viewport is not None
    assert width <= viewport["width"], (name, width, overflowing)
    results = Axe().run(page)
    serious = [
        (violation["id"], violation["impact"], len(violation["nodes"]))
        for violation in results.response["violations"]
        if violation["impact"] in ("serious", "critical")
    ]
    assert serious == [], (name, serious)
    if name in ("wizard", "overview", "settings"):
        ARTIFACTS.mkdir(exist_ok=True)
        label = "desktop" if viewport["width"] >= 1000 else "phone"
        page.screenshot(path=str(ARTIFACTS / f"responsive-{name}-{label}.png"), full_page=True)


def test_a_shortened_digest_copies_whole(
    browser: Browser, server_url: str, arranged: Arranged, lab: Lab
) -> None:
    context = browser.new_context(base_url=server_url, viewport={"width": 390, "height": 844})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    try:
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("Email").fill(arranged.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/projects")
        page.goto(arranged.pages["overview"])
        digest = lab.token.images["acme/api:v1"]
        copy = page.locator("#deployments [data-copy]").first
        copy.click()
        expect(copy).to_have_text("Copied")
        assert page.evaluate("() => navigator.clipboard.readText()") == digest
    finally:
        context.close()
