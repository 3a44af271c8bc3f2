"""The dashboard in a real headless Chromium against `guara serve` and the registry lab.

One server and one browser per module; each test signs in a fresh user (the Test Connection limit is
per user) in a fresh browser context. Screenshots of the main states go to test-artifacts/.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pydantic import SecretStr
from sqlalchemy.orm import Session as Session_

from guara.context import AppContext
from guara.core import services
from guara.core.credential_health import CheckOutcome, record_check, set_expiry
from guara.core.credentials import CredentialsChange
from guara.secrets import ensure_key_file
from guara.store.models import Deployment, RegistryCredential, Service, utcnow
from tests.conftest import build_context
from tests.lab import Lab
from tests.support import run, serve
from tests.web.support import PASSWORD, create_project, create_user, principal_of

pytestmark = [pytest.mark.browser, pytest.mark.lab]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-domain-reliability",
    # Belt and braces: the browser can resolve nothing but loopback names.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
]


@pytest.fixture(scope="module")
def guara_env(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("dashboard")
    ensure_key_file(root / "data" / "master.key")
    return {
        "GUARA_DATA_DIR": str(root / "data"),
        "GUARA_DATABASE_URL": f"sqlite:///{root / 'guara.db'}",
        "GUARA_MASTER_KEY_FILE": str(root / "data" / "master.key"),
        "GUARA_SSRF_ALLOW": "127.0.0.0/8",
        "GUARA_EXTRA_CA_FILE": str(lab.ca_file),
    }


@pytest.fixture(scope="module")
def server_context(guara_env: dict[str, str]) -> Iterator[AppContext]:
    """The server's database and keys, opened in-process to arrange users, projects and services."""
    context = build_context(guara_env)
    yield context
    context.db.dispose()


@pytest.fixture(scope="module")
def server_url(
    guara_env: dict[str, str], server_context: AppContext, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GUARA_")}, **guara_env}
    with serve(env, tmp_path_factory.mktemp("serve") / "guara.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is required in CI (Debian package chromium)")
        pytest.skip(f"{CHROMIUM} is missing (Debian package chromium)")
    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Session:
    page: Page
    email: str
    context: AppContext
    base_url: str

    def project(self) -> str:
        return create_project(self.context, self.email)

    def service_with_credentials(self, lab: Lab, *, username: str, password: str) -> str:
        """Arrange a service whose credentials were saved without verifying (no preflight)."""
        project_id = uuid.UUID(self.project())
        service = run(
            services.create_service,
            self.context,
            principal_of(self.context, self.email),
            project_id=project_id,
            name="api",
            image=lab.token.ref("acme/api:v1"),
            registry_credentials=CredentialsChange(lab.token.host, username, SecretStr(password)),
            skip_verification=True,
        )
        return str(service.id)

    def shot(self, name: str, selector: str | None = None) -> None:
        """A full-page screenshot, or of one element (small enough for the README)."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = str(ARTIFACTS / f"{name}.png")
        if selector:
            self.page.locator(selector).screenshot(path=path)
        else:
            self.page.screenshot(path=path, full_page=True)


def _sign_in(browser: Browser, server_url: str, app_context: AppContext) -> Iterator[Session]:
    email = f"user-{uuid.uuid4().hex[:10]}@example.com"
    create_user(app_context, email)
    context = browser.new_context(base_url=server_url, viewport={"width": 1000, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    try:
        yield Session(page, email, app_context, server_url)
    finally:
        context.close()


@pytest.fixture
def session(browser: Browser, server_url: str, server_context: AppContext) -> Iterator[Session]:
    yield from _sign_in(browser, server_url, server_context)


def _open_wizard(s: Session) -> Page:
    page = s.page
    page.goto(f"/projects/{s.project()}/services/new")
    expect(page.get_by_role("heading", name="New service")).to_be_visible()
    return page


def _test_connection(page: Page) -> None:
    button = page.get_by_role("button", name="Test Connection")
    button.click()
    expect(button).to_be_enabled()  # disabled while the test runs


def test_wizard_private_image_test_then_save(session: Session, lab: Lab) -> None:
    page = _open_wizard(session)
    expect(page.get_by_label("Docker Image")).to_be_checked()
    expect(page.get_by_label(re.compile("Git repository"))).to_be_disabled()
    section = page.locator("#private-registry")
    expect(section).to_be_hidden()

    page.get_by_label("Service name").fill("api")
    image = page.get_by_label("Image reference")
    image.fill(lab.token.host + "/acme/Api:v1")
    expect(page.locator("#image-error")).to_contain_text("lower-case")
    expect(image).to_have_attribute("aria-invalid", "true")
    image.fill(lab.token.ref("acme/api:v1"))
    expect(page.locator("#image-error")).to_have_text("")
    expect(section).to_be_visible()
    expect(page.locator("#image-access")).to_contain_text("private")
    assert section.get_attribute("open") is None  # collapsed until the user opens it
    page.get_by_text("Private Registry Credentials").click()
    expect(page.get_by_label("Registry URL")).to_have_value(lab.token.host)

    save = page.get_by_role("button", name="Create service")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password or token").fill(lab.token.users["alice"])
    expect(save).to_be_disabled()
    expect(page.get_by_label("Save without verifying")).to_be_disabled()

    _test_connection(page)
    result = page.locator("[data-result]")
    expect(result).to_have_attribute("aria-live", "polite")
    expect(result).to_contain_text("Connection works")
    expect(result).to_contain_text(" ms")
    expect(save).to_be_enabled()
    session.shot("wizard-test-passed")
    session.shot("wizard-credentials-section", "#private-registry")

    page.get_by_label("Username").fill("bob")  # any change disables Save again
    expect(save).to_be_disabled()
    expect(page.locator("[data-gate]")).to_contain_text("values changed")
    _test_connection(page)
    expect(result).to_contain_text("The registry rejected these credentials")
    expect(result).to_contain_text("auth_failed")
    expect(save).to_be_disabled()
    page.get_by_label("Username").fill("alice")
    expect(save).to_be_disabled()  # the newest test was for other values
    _test_connection(page)
    expect(result).to_contain_text("Connection works")
    expect(save).to_be_enabled()

    save.click()
    expect(page).to_have_url(re.compile(r"/services/[0-9a-f-]+\?created=1$"))
    summary = page.locator("[data-credentials-summary]")
    expect(summary).to_contain_text(f"{lab.token.host} as a•••")
    expect(summary.locator("[data-verification]")).to_have_text("verified just now")
    assert lab.token.users["alice"] not in page.content()


def test_hints_switch_with_the_registry_url(session: Session, lab: Lab) -> None:
    page = _open_wizard(session)
    page.get_by_label("Service name").fill("api")
    page.get_by_label("Image reference").fill(lab.token.ref("acme/api:v1"))
    page.get_by_text("Private Registry Credentials").click()
    registry = page.get_by_label("Registry URL")
    expect(registry).to_have_value(lab.token.host)
    username_hint, password_hint = page.locator("#cred-username-hint"), page.locator("#cred-password-hint")
    expect(username_hint).to_contain_text("Your user name, or the token user name")
    # Typing only switches the help: nothing is tested, no name is looked up.
    registry.fill("ghcr.io")
    expect(username_hint).to_have_text("Your GitHub username (the token's owner).")
    expect(password_hint).to_contain_text("read:packages")
    expect(password_hint).to_contain_text("Encrypted at rest")
    session.shot("wizard-registry-help-ghcr", "#private-registry")
    registry.fill("https://Quay.io/")
    expect(username_hint).to_contain_text("robot account (organization+name)")
    registry.fill(lab.token.host)
    expect(username_hint).to_contain_text("Your user name, or the token user name")
    expect(password_hint).to_have_text("Encrypted at rest and never shown again.")


def test_public_image_shows_no_credentials_section(session: Session, lab: Lab) -> None:
    page = _open_wizard(session)
    page.get_by_label("Service name").fill("hello")
    page.get_by_label("Image reference").fill(lab.token.ref("public/hello:latest"))
    expect(page.locator("#image-access")).to_contain_text("needs no credentials")
    expect(page.locator("#private-registry")).to_be_hidden()
    save = page.get_by_role("button", name="Create service")
    expect(save).to_be_enabled()
    save.click()
    expect(page.locator("[data-credentials-summary]")).to_contain_text("none (anonymous pulls)")


def test_failed_test_then_save_without_verifying(session: Session, lab: Lab) -> None:
    page = _open_wizard(session)
    page.get_by_label("Service name").fill("api")
    page.get_by_label("Image reference").fill(lab.token.ref("acme/api:v1"))
    page.get_by_text("Private Registry Credentials").click()
    expect(page.get_by_label("Registry URL")).to_have_value(lab.token.host)
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password or token").fill("not-the-password")
    _test_connection(page)
    result = page.locator("[data-result]")
    expect(result).to_contain_text("The registry rejected these credentials")
    expect(result).to_contain_text("auth_failed")
    expect(result).to_contain_text(" ms")
    save = page.get_by_role("button", name="Create service")
    expect(save).to_be_disabled()
    skip = page.get_by_label("Save without verifying")
    expect(skip).to_be_enabled()
    session.shot("wizard-test-failed")
    skip.check()
    expect(save).to_be_enabled()
    save.click()
    expect(page.locator("[data-verification]")).to_have_text("saved without verifying")


def test_settings_edit_keeps_the_password(session: Session, lab: Lab) -> None:
    # bob with alice's password: a wrong pair, stored without verifying.
    service_id = session.service_with_credentials(lab, username="bob", password=lab.token.users["alice"])
    page = session.page
    page.goto(f"/services/{service_id}/settings")
    group = page.locator("[data-current]")
    expect(group.locator("[data-current-registry]")).to_have_text(lab.token.host)
    expect(group.locator("[data-current-username]")).to_have_text("•••")
    expect(group.locator("[data-current-password]")).to_have_text("••••••••")
    expect(group.locator("[data-verification]")).to_have_text("saved without verifying")
    editor = page.locator("[data-editor]")
    expect(editor).to_be_hidden()

    page.get_by_role("link", name="Edit credentials").click()
    expect(editor).to_be_visible()
    expect(page.get_by_label("Registry URL")).to_be_focused()
    expect(page.get_by_label("Password or token")).to_have_value("")
    expect(page.get_by_label("Password or token")).to_have_attribute("placeholder", "•••••••• (unchanged)")
    save = page.get_by_role("button", name="Save", exact=True)
    expect(save).to_be_disabled()
    page.get_by_label("Username").fill("alice")  # the password is left as it is
    _test_connection(page)
    expect(page.locator("[data-result]")).to_contain_text("Connection works")
    expect(save).to_be_enabled()
    save.click()
    expect(page).to_have_url(re.compile(r"\?saved=passed#private-registry$"))
    expect(page.locator(".note")).to_contain_text("Credentials saved")
    expect(group.locator("[data-current-username]")).to_have_text("a•••")
    expect(group.locator("[data-verification]")).to_have_text("verified just now")
    session.shot("settings-private-registry")
    session.shot("settings-private-registry-card", "#private-registry")

    # The stored (kept) password still works: Test Connection with only the service id.
    token = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    check = page.request.post(
        "/-/test-connection", data={"service_id": service_id}, headers={"X-CSRF-Token": token}
    )
    assert check.ok, check.text()
    assert check.json()["ok"] is True, check.text()


def test_platform_setting_suggests_what_the_image_offers(session: Session, lab: Lab) -> None:
    service_id = session.service_with_credentials(lab, username="alice", password=lab.token.users["alice"])
    run(
        services.update_service,
        session.context,
        principal_of(session.context, session.email),
        service_id=uuid.UUID(service_id),
        change=services.ServiceChange(image=lab.token.ref("acme/multi:v1")),
    )
    page = session.page
    page.goto(f"/services/{service_id}/settings")
    page.get_by_label("Platform").focus()
    expect(page.locator("[data-platforms-note]")).to_contain_text(
        "This image offers: linux/amd64, linux/arm64"
    )
    options = page.locator("datalist#platforms option")
    expect(options).to_have_count(2)
    assert [options.nth(i).get_attribute("value") for i in range(2)] == ["linux/amd64", "linux/arm64"]


def test_remove_asks_for_confirmation(session: Session, lab: Lab) -> None:
    service_id = session.service_with_credentials(lab, username="alice", password=lab.token.users["alice"])
    page = session.page
    page.goto(f"/services/{service_id}/settings")
    dialog = page.locator("dialog[data-remove-dialog]")
    page.get_by_role("link", name="Remove credentials").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("anonymous pulls")
    expect(dialog).to_contain_text("next deploy will fail")
    session.shot("settings-remove-dialog")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("[data-current-username]")).to_have_text("a•••")

    page.get_by_role("link", name="Remove credentials").click()
    dialog.get_by_role("button", name="Remove credentials").click()
    expect(page.locator(".note")).to_contain_text("Credentials removed")
    add = page.get_by_role("link", name="+ Add private registry credentials")
    expect(add).to_be_visible()
    expect(page.locator("[data-current]")).to_have_count(0)
    add.focus()
    page.keyboard.press("Enter")  # keyboard reveals the form too
    expect(page.get_by_label("Registry URL")).to_be_focused()
    expect(page.get_by_label("Registry URL")).to_have_value(lab.token.host)

    page.get_by_role("link", name="shop").click()
    page.get_by_role("link", name="Audit log").click()
    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Removed registry credentials")
    expect(rows.nth(0)).to_contain_text(session.email)
    expect(rows.nth(1)).to_contain_text("saved without verifying")
    expect(rows.nth(1).locator(".badge")).to_have_text("overridden")
    session.shot("audit-log")


def test_rate_limit_shows_a_soft_message(session: Session, lab: Lab) -> None:
    page = _open_wizard(session)
    page.get_by_label("Image reference").fill(lab.token.ref("acme/api:v1"))
    page.get_by_text("Private Registry Credentials").click()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password or token").fill("wrong")
    result = page.locator("[data-result]")
    for _ in range(5):
        _test_connection(page)
        expect(result).to_contain_text("The registry rejected these credentials")
    page.get_by_role("button", name="Test Connection").click()
    expect(result).to_contain_text(
        re.compile(r"You've run 5 tests in the last minute — try again in \d+ seconds")
    )
    expect(result.locator(".outcome.soft")).to_be_visible()
    expect(page.get_by_role("heading", name="New service")).to_be_visible()  # not an error page
    expect(page.get_by_role("button", name="Test Connection")).to_be_disabled()
    session.shot("wizard-rate-limited")


def test_another_users_service_is_the_404_page(
    session: Session, browser: Browser, server_url: str, server_context: AppContext, lab: Lab
) -> None:
    service_id = session.service_with_credentials(lab, username="alice", password="whatever")
    for stranger in _sign_in(browser, server_url, server_context):
        for path in (f"/services/{service_id}", f"/services/{service_id}/settings"):
            response = stranger.page.goto(path)
            assert response is not None and response.status == 404
            expect(stranger.page.get_by_role("heading", name="Not found")).to_be_visible()
            assert "a" + "•••" not in stranger.page.content()


def test_wizard_works_without_javascript(
    browser: Browser, server_url: str, server_context: AppContext, lab: Lab
) -> None:
    email = f"nojs-{uuid.uuid4().hex[:10]}@example.com"
    create_user(server_context, email)
    project_id = create_project(server_context, email)
    context = browser.new_context(base_url=server_url, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.goto(f"/projects/{project_id}/services/new")
        page.get_by_label("Service name").fill("api")
        page.get_by_label("Image reference").fill(lab.token.ref("acme/api:v1"))
        page.get_by_role("button", name="Check image").click()
        expect(page.locator("#image-access")).to_contain_text("private")
        page.get_by_text("Private Registry Credentials").click()
        expect(page.get_by_label("Registry URL")).to_have_value(lab.token.host)
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password or token").fill(lab.token.users["alice"])
        page.get_by_role("button", name="Create service").click()  # the server verifies before saving
        expect(page.locator("[data-verification]")).to_have_text("verified just now")
    finally:
        context.close()


def _arrange(context: AppContext, work: Callable[[Session_], None]) -> None:
    """Put the database in a state (as checks and deploys would) in one transaction."""
    with context.db.session() as db:
        work(db)


def test_credential_health_states_expiry_and_tag_moved(session: Session, lab: Lab) -> None:
    """Passing (Check now in the browser), failing, the expiry warning and the tag-moved notice."""
    service_id = session.service_with_credentials(lab, username="alice", password=lab.token.users["alice"])
    page = session.page
    page.goto(f"/services/{service_id}/settings")
    health = page.locator("[data-current] [data-health]")
    expect(health).to_have_attribute("data-health", "unknown")
    expect(health).to_have_text("not checked yet")
    page.get_by_role("button", name="Check now").click()
    expect(page).to_have_url(re.compile(r"\?saved=checked#private-registry$"))
    expect(health).to_have_attribute("data-health", "passing")
    expect(health.locator("[data-health-text]")).to_have_text("verified just now")
    expect(health.locator("[data-health-text]")).to_have_class("ok")

    def failing(db: Session_) -> None:
        service = db.get(Service, uuid.UUID(service_id))
        stored = db.get(RegistryCredential, uuid.UUID(service_id))
        assert service is not None and stored is not None
        outcome = CheckOutcome("auth_failed", "The registry rejected these credentials.")
        record_check(db, service=service, credentials=stored, outcome=outcome, now=utcnow())

    _arrange(session.context, failing)
    page.reload()
    expect(health).to_have_attribute("data-health", "failing")
    expect(health.locator("[data-health-text]")).to_have_class("error")
    expect(health.locator("[data-health-text]")).to_contain_text("failing since")
    expect(health.locator("[data-health-detail]")).to_contain_text("auth_failed")
    expect(health.locator("[data-health-detail]")).to_contain_text("update the password or token")
    session.shot("settings-health-failing", "#private-registry")
    page.goto("/")
    page.get_by_role("link", name="shop").click()
    expect(page.locator("[data-failing]")).to_have_text("failing (auth_failed)")

    soon = utcnow().date() + timedelta(days=3)

    def expiring_and_moved(db: Session_) -> None:
        service = db.get(Service, uuid.UUID(service_id))
        stored = db.get(RegistryCredential, uuid.UUID(service_id))
        assert service is not None and stored is not None
        set_expiry(db, service, soon)
        db.add(
            Deployment(
                service_id=service.id,
                project_id=service.project_id,
                status="succeeded",
                image=service.image,
                platform=service.platform,
                digest="sha256:" + "a" * 64,
            )
        )
        db.flush()
        outcome = CheckOutcome(None, "", "sha256:" + "b" * 64)
        record_check(
            db,
            service=service,
            credentials=stored,
            outcome=outcome,
            now=utcnow(),
            deployed="sha256:" + "a" * 64,
        )

    _arrange(session.context, expiring_and_moved)
    page.goto(f"/services/{service_id}/settings")
    expect(health).to_have_attribute("data-health", "passing")
    expect(health.locator("[data-health-text]")).to_have_class("warn")
    expect(health.locator("[data-health-detail]")).to_contain_text(
        f"expire on {soon.isoformat()} (in 3 days)"
    )
    expect(page.locator("[data-expires-on]")).to_have_text(soon.isoformat())
    page.get_by_role("link", name="Edit credentials").click()
    expect(page.get_by_label("Expires on")).to_have_value(soon.isoformat())

    page.goto(f"/services/{service_id}")
    notice = page.locator("[data-tag-moved]")
    expect(notice).to_contain_text(f"v1 now points to sha256:{'b' * 64} — deployed sha256:{'a' * 64}")
    expect(notice.get_by_role("button", name=re.compile(r"^Deploy sha256:b+…$"))).to_be_enabled()
    expect(page.locator("[data-credentials-summary] [data-health]")).to_have_attribute(
        "data-health", "passing"
    )
    session.shot("overview-tag-moved")
