"""Cloud registry credentials on the dashboard without JavaScript: the host suggests the kind, the
fields of each kind, a JSON key file uploaded with the form, masked values in Settings."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from guara.context import AppContext
from tests.conftest import build_context
from tests.lab import Lab
from tests.lab.cloud import GoogleTokenServer, MotoAws
from tests.support import make_client
from tests.web.support import WebUser, create_project, text_of

pytestmark = pytest.mark.lab


@pytest.fixture
def cloud_context(lab_env: dict[str, str], moto_aws: MotoAws) -> Iterator[AppContext]:
    context = build_context({**lab_env, "GUARA_AWS_ENDPOINT_URL": moto_aws.url})
    yield context
    context.db.dispose()


@pytest.fixture
def cloud_owner(cloud_context: AppContext) -> Iterator[WebUser]:
    with make_client(cloud_context) as http:
        yield WebUser.sign_in(http, cloud_context, "owner@example.com")


def checked_kind(page: str) -> str:
    match = re.search(r'name="kind" value="(\w+)" data-kind-choice checked', page)
    assert match, "no kind is chosen"
    return match.group(1)


@pytest.mark.parametrize(
    ("image", "kind"),
    [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/api:v1", "aws_ecr"),
        ("europe-west1-docker.pkg.dev/acme/repo/api:v1", "google"),
        ("gcr.io/acme/api:v1", "google"),
        ("ghcr.io/acme/api:v1", "password"),
    ],
)
def test_the_registry_host_suggests_the_kind_without_js(
    cloud_owner: WebUser, cloud_context: AppContext, image: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from guara.core import connection_tests

    async def no_probe(*args: object, **kwargs: object) -> connection_tests.AccessProbe:
        return connection_tests.AccessProbe("private", "private")  # never ask a real cloud registry

    monkeypatch.setattr(connection_tests, "probe_image_access", no_probe)
    project_id = create_project(cloud_context, cloud_owner.email)
    response = cloud_owner.post_form(
        f"/projects/{project_id}/services/new", {"image": image, "action": "check"}
    )
    assert response.status_code == 200
    assert checked_kind(response.text) == kind
    assert 'enctype="multipart/form-data"' in response.text
    for field in (
        "cred-aws-key-id",
        "cred-aws-secret",
        "cred-aws-region",
        "cred-aws-role",
        "cred-google-file",
        "cred-google",
    ):
        assert f'<label for="{field}"' in response.text


def test_wizard_creates_an_ecr_service_and_settings_show_it_masked(
    cloud_owner: WebUser, cloud_context: AppContext, lab: Lab, moto_aws: MotoAws
) -> None:
    project_id = create_project(cloud_context, cloud_owner.email)
    fields = {
        "name": "api",
        "image": lab.basic.ref("acme/api:v1"),
        "registry": lab.basic.host,
        "kind": "aws_ecr",
        "aws_access_key_id": moto_aws.puller.access_key_id,
        "aws_secret_access_key": moto_aws.puller.secret_access_key,
        "aws_region": "eu-west-1",
        # Another kind's fields are ignored (without JavaScript every group is shown).
        "username": "left-over",
    }
    tested = cloud_owner.post_form(f"/projects/{project_id}/services/new", {**fields, "action": "test"})
    assert tested.status_code == 200, text_of(tested.text)
    assert "Connection works" in text_of(tested.text)
    assert moto_aws.puller.secret_access_key not in tested.text
    assert checked_kind(tested.text) == "aws_ecr"
    created = cloud_owner.post_form(f"/projects/{project_id}/services/new", fields)
    assert created.status_code == 303, text_of(created.text)
    service_path = created.headers["location"].split("?")[0]
    settings = cloud_owner.http.get(f"{service_path}/settings").text
    key_id = moto_aws.puller.access_key_id
    assert key_id[:4] + "••••" + key_id[-4:] in settings
    assert key_id not in settings
    assert "AWS access key (ECR)" in text_of(settings)
    assert checked_kind(settings) == "aws_ecr"
    kept = cloud_owner.post_form(
        f"{service_path}/settings/registry-credentials",
        {"registry": lab.basic.host, "kind": "aws_ecr", "aws_region": "eu-west-2"},
    )
    assert kept.status_code == 303, text_of(kept.text)
    assert "eu-west-2" in cloud_owner.http.get(f"{service_path}/settings").text


def test_google_key_uploaded_as_a_file(
    cloud_owner: WebUser, cloud_context: AppContext, lab: Lab, google_token_server: GoogleTokenServer
) -> None:
    project_id = create_project(cloud_context, cloud_owner.email)
    key = google_token_server.json_key()
    response = cloud_owner.http.post(
        f"/projects/{project_id}/services/new",
        data={
            "csrf_token": cloud_owner.csrf,
            "name": "api",
            "image": lab.token.ref("acme/api:v1"),
            "registry": lab.token.host,
            "kind": "google",
        },
        files={"google_json_key_file": ("key.json", key.encode(), "application/json")},
        follow_redirects=False,
    )
    assert response.status_code == 303, text_of(response.text)
    settings = cloud_owner.http.get(response.headers["location"].split("?")[0] + "/settings").text
    assert google_token_server.client_email in settings
    assert "PRIVATE" not in settings


def test_mangled_google_key_pasted_is_shown_at_the_field(
    cloud_owner: WebUser, cloud_context: AppContext, lab: Lab, google_token_server: GoogleTokenServer
) -> None:
    project_id = create_project(cloud_context, cloud_owner.email)
    mangled = google_token_server.json_key().replace("\\n", "\n")
    response = cloud_owner.post_form(
        f"/projects/{project_id}/services/new",
        {
            "name": "api",
            "image": lab.token.ref("acme/api:v1"),
            "registry": lab.token.host,
            "kind": "google",
            "google_json_key": mangled,
        },
    )
    assert response.status_code == 422
    error = re.search(r'id="cred-google-error"[^>]*>([^<]*)<', response.text)
    assert error and "line breaks" in error.group(1)
    assert "PRIVATE KEY" not in response.text
    assert checked_kind(response.text) == "google"
