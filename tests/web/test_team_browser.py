"""Members, API tokens and deletion in a real headless Chromium against `guara serve`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Page, expect

from guara.context import AppContext
from guara.core import services
from guara.secrets import ensure_key_file
from tests.support import run
from tests.web.support import PASSWORD, create_project, create_user, principal_of
from tests.web.test_browser import browser, server_context, server_url

__all__ = ["browser", "server_context", "server_url"]

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def guara_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """No registry lab: these pages never reach a registry (test_browser's fixtures run on this)."""
    root = tmp_path_factory.mktemp("team-dashboard")
    ensure_key_file(root / "data" / "master.key")
    return {
        "GUARA_DATA_DIR": str(root / "data"),
        "GUARA_DATABASE_URL": f"sqlite:///{root / 'guara.db'}",
        "GUARA_MASTER_KEY_FILE": str(root / "data" / "master.key"),
        "GUARA_RUNTIME": "render",
    }


@dataclass
class Owner:
    page: Page
    email: str
    context: AppContext

    def project(self, name: str = "shop") -> str:
        return create_project(self.context, self.email, name)

    def service(self, project_id: str, name: str) -> str:
        view = run(
            services.create_service,
            self.context,
            principal_of(self.context, self.email),
            project_id=uuid.UUID(project_id),
            name=name,
            image="ghcr.io/acme/web:v1",
        )
        return str(view.id)


@pytest.fixture
def owner(browser: Browser, server_url: str, server_context: AppContext) -> Iterator[Owner]:
    email = f"owner-{uuid.uuid4().hex[:10]}@example.com"
    create_user(server_context, email)
    context = browser.new_context(base_url=server_url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    try:
        yield Owner(page, email, server_context)
    finally:
        context.close()


def test_members_are_added_given_roles_and_removed(owner: Owner) -> None:
    page = owner.page
    colleague = f"dev-{uuid.uuid4().hex[:8]}@example.com"
    create_user(owner.context, colleague)
    project_id = owner.project()
    page.goto(f"/projects/{project_id}")
    page.get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", name="Members")).to_be_visible()
    page.get_by_label("Email of an existing account").fill(colleague)
    page.get_by_label("Role", exact=True).select_option("developer")
    page.get_by_role("button", name="Add member").click()
    expect(page.get_by_role("status")).to_contain_text(f"Added {colleague} as developer")
    row = page.locator(f'tr[data-member="{colleague}"]')
    row.get_by_label(f"Role of {colleague}").select_option("viewer")
    row.get_by_role("button", name="Change role").click()
    expect(page.locator(f'tr[data-member="{colleague}"]').get_by_label(f"Role of {colleague}")).to_have_value(
        "viewer"
    )
    # The last owner cannot leave.
    page.locator(f'tr[data-member="{owner.email}"]').get_by_role("button", name="Leave project").click()
    expect(page.get_by_role("alert")).to_contain_text("a project needs an owner")
    page.locator(f'tr[data-member="{colleague}"]').get_by_role("button", name="Remove").click()
    expect(page.locator(f'tr[data-member="{colleague}"]')).to_have_count(0)
    page.goto(f"/projects/{project_id}/audit-logs?action=member.role")
    expect(page.locator("table.audit")).to_contain_text(f"Changed the role of {colleague} to viewer")


def test_api_tokens_are_shown_once_listed_and_revoked(owner: Owner) -> None:
    page = owner.page
    page.goto("/account")
    page.get_by_label("Name").fill("ci deploys")
    page.get_by_label("Expires").select_option("never")
    page.get_by_role("button", name="Create token").click()
    shown = page.locator("[data-new-token]")
    expect(shown).to_contain_text("not shown again")
    expect(shown).to_contain_text("never expires")
    token = page.locator("[data-token]").inner_text()
    assert token.startswith("gua_")
    row = page.locator('tr[data-token-row="ci deploys"]')
    expect(row).to_contain_text("never")
    page.goto("/account")
    assert token not in page.content()
    page.locator('tr[data-token-row="ci deploys"]').get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("status")).to_contain_text("Token revoked")
    expect(page.locator('tr[data-token-row="ci deploys"]')).to_have_count(0)


def test_deleting_asks_for_the_name(owner: Owner) -> None:
    page = owner.page
    project_id = owner.project("doomed")
    service_id = owner.service(project_id, "web")
    owner.service(project_id, "worker")
    page.goto(f"/services/{service_id}/settings")
    page.get_by_role("link", name="Delete service…").click()
    delete = page.get_by_role("button", name="Delete service")
    expect(delete).to_be_disabled()
    page.get_by_label("Type web to confirm").fill("we")
    expect(delete).to_be_disabled()
    page.get_by_label("Type web to confirm").fill("web")
    expect(delete).to_be_enabled()
    delete.click()
    expect(page.get_by_role("heading", name="doomed")).to_be_visible()
    expect(page.get_by_role("link", name="web", exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name="worker")).to_be_visible()

    page.get_by_role("link", name="Delete project").click()
    page.get_by_label("Type doomed to confirm").fill("doomed")
    page.get_by_role("button", name="Delete project").click()
    expect(page.get_by_role("alert")).to_contain_text("still has 1 service")
    page.get_by_label("Type doomed to confirm").fill("doomed")
    page.get_by_label("Also delete its 1 service(s)").check()
    page.get_by_role("button", name="Delete project").click()
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    expect(page.get_by_role("link", name="doomed")).to_have_count(0)
