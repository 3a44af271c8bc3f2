"""Cloud registry credentials in a real headless Chromium: the host suggests the kind, each kind shows
its own fields, a Google JSON key is uploaded as a file, and Test Connection gates Save as usual."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from guara.context import AppContext
from guara.secrets import ensure_key_file
from tests.lab import Lab
from tests.lab.cloud import GoogleTokenServer, MotoAws
from tests.web.test_browser import (
    Session,
    _open_wizard,
    _sign_in,
    _test_connection,
    browser,
    server_context,
    server_url,
)

__all__ = ["browser", "server_context", "server_url"]

pytestmark = [pytest.mark.browser, pytest.mark.lab]


@pytest.fixture(scope="module")
def guara_env(lab: Lab, moto_aws: MotoAws, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cloud-dashboard")
    ensure_key_file(root / "data" / "master.key")
    return {
        "GUARA_DATA_DIR": str(root / "data"),
        "GUARA_DATABASE_URL": f"sqlite:///{root / 'guara.db'}",
        "GUARA_MASTER_KEY_FILE": str(root / "data" / "master.key"),
        "GUARA_SSRF_ALLOW": "127.0.0.0/8",
        "GUARA_EXTRA_CA_FILE": str(lab.ca_file),
        "GUARA_AWS_ENDPOINT_URL": moto_aws.url,
    }


@pytest.fixture
def session(browser: Browser, server_url: str, server_context: AppContext) -> Iterator[Session]:
    yield from _sign_in(browser, server_url, server_context)


def _private_image(page: Page, image: str, registry: str) -> None:
    page.get_by_label("Service name").fill("api")
    page.get_by_label("Image reference").fill(image)
    expect(page.locator("#image-access")).to_contain_text("private")
    page.get_by_text("Private Registry Credentials").click()
    expect(page.get_by_label("Registry URL")).to_have_value(registry)


def _suggested(page: Page, host: str, kind: str) -> None:
    registry = page.get_by_label("Registry URL")
    registry.fill(host)
    expect(page.locator(f"#cred-kind-{kind}")).to_be_checked()
    for group in ("password", "aws_ecr", "google"):
        fields = page.locator(f'[data-kind-fields="{group}"]')
        if group == kind:
            expect(fields).to_be_visible()
        else:
            expect(fields).to_be_hidden()


def test_ecr_host_suggests_aws_keys_then_test_and_save(session: Session, lab: Lab, moto_aws: MotoAws) -> None:
    page = _open_wizard(session)
    _private_image(page, lab.basic.ref("acme/api:v1"), lab.basic.host)
    expect(page.locator("#cred-kind-password")).to_be_checked()  # a host that is no cloud registry
    _suggested(page, "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "aws_ecr")
    _suggested(page, "europe-west1-docker.pkg.dev", "google")
    page.get_by_label("Registry URL").fill(lab.basic.host)
    expect(page.locator("#cred-kind-password")).to_be_checked()

    page.get_by_label("AWS access key (ECR)").check()
    expect(page.get_by_label("Access key ID")).to_be_visible()
    expect(page.get_by_label("Username")).to_be_hidden()
    page.get_by_label("Access key ID").fill(moto_aws.puller.access_key_id)
    page.get_by_label("Secret access key").fill("not-the-secret")
    page.get_by_label(re.compile("^Region")).fill("eu-west-1")
    save = page.get_by_role("button", name="Create service")
    expect(save).to_be_disabled()
    _test_connection(page)
    result = page.locator("[data-result]")
    expect(result).to_contain_text("AWS rejected the access key")
    expect(save).to_be_disabled()
    page.get_by_label("Secret access key").fill(moto_aws.puller.secret_access_key)
    _test_connection(page)
    expect(result).to_contain_text("Connection works")
    expect(save).to_be_enabled()
    session.shot("wizard-aws-ecr", "#private-registry")
    save.click()
    expect(page).to_have_url(re.compile(r"/services/[0-9a-f-]+\?created=1$"))
    key_id = moto_aws.puller.access_key_id
    expect(page.locator("[data-credentials-summary]")).to_contain_text(key_id[:4] + "••••" + key_id[-4:])
    assert moto_aws.puller.secret_access_key not in page.content()


def test_google_key_file_upload_then_settings(
    session: Session, lab: Lab, google_token_server: GoogleTokenServer, tmp_path: Path
) -> None:
    key_file = tmp_path / "service-account.json"
    key_file.write_text(google_token_server.json_key())
    page = _open_wizard(session)
    _private_image(page, lab.token.ref("acme/api:v1"), lab.token.host)
    page.get_by_label("Google service account key").check()
    expect(page.get_by_label("Service account JSON key file")).to_be_visible()
    page.get_by_label("Service account JSON key file").set_input_files(str(key_file))
    save = page.get_by_role("button", name="Create service")
    _test_connection(page)
    expect(page.locator("[data-result]")).to_contain_text("Connection works")
    expect(save).to_be_enabled()
    session.shot("wizard-google", "#private-registry")
    save.click()
    expect(page).to_have_url(re.compile(r"/services/[0-9a-f-]+\?created=1$"))
    page.goto(page.url.split("?")[0] + "/settings")
    current = page.locator("[data-current]")
    expect(current).to_contain_text("Google service account key")
    expect(current).to_contain_text(google_token_server.client_email)
    assert "PRIVATE KEY" not in page.content()
    # Editing keeps the kind and the stored key: a test with nothing typed uses the stored one.
    page.get_by_role("link", name="Edit credentials").click()
    expect(page.locator("#cred-kind-google")).to_be_checked()
    _test_connection(page)
    expect(page.locator("[data-result]")).to_contain_text("Connection works")
