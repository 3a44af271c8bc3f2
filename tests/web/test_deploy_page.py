"""The Deploy button on the service Overview: history, last digest, credentials or anonymous pulls."""

from __future__ import annotations

import time

import pytest

from guara.context import AppContext
from tests.lab import Lab
from tests.support import make_client
from tests.web.support import WebUser, create_project, text_of

pytestmark = pytest.mark.lab


def _deploy_and_wait(user: WebUser, service_path: str) -> str:
    response = user.post_form(f"{service_path}/deployments", {})
    assert response.status_code == 303
    assert response.headers["location"] == f"{service_path}#deployments"
    deadline = time.monotonic() + 20
    while True:
        page = user.http.get(service_path).text
        if 'http-equiv="refresh"' not in page:
            return page
        assert "Deploying…" in page
        assert time.monotonic() < deadline, "the deployment did not finish"
        time.sleep(0.2)


def test_deploy_with_credentials_then_without(owner: WebUser, lab_context: AppContext, lab: Lab) -> None:
    project_id = create_project(lab_context, owner.email)
    response = owner.post_form(
        f"/projects/{project_id}/services/new",
        {
            "name": "api",
            "image": lab.token.ref("acme/api:v1"),
            "registry": lab.token.host,
            "username": "alice",
            "password": lab.token.users["alice"],
        },
    )
    assert response.status_code == 303, response.text
    service_path = response.headers["location"].split("?")[0]
    assert "Last deploy never" in text_of(owner.http.get(service_path).text)

    page = text_of(_deploy_and_wait(owner, service_path))
    digest = lab.token.images["acme/api:v1"]
    assert f"Last deploy {digest} Copy , pulled with registry credentials · succeeded" in page
    assert lab.token.users["alice"] not in page

    removed = owner.post_form(f"{service_path}/settings/registry-credentials/remove", {})
    assert removed.status_code == 303
    page = text_of(_deploy_and_wait(owner, service_path))
    assert "Last deploy failed (auth_failed), pulling anonymously" in page
    assert "add the credentials back" in page
    audit = text_of(owner.http.get(f"/projects/{project_id}/audit-logs").text)
    assert f"Deployed {digest}, pulled with registry credentials" in audit
    assert "Deploy failed (auth_failed), pulling anonymously" in audit


def test_deploy_form_needs_csrf_and_membership(owner: WebUser, lab_context: AppContext, lab: Lab) -> None:
    project_id = create_project(lab_context, owner.email)
    created = owner.post_form(
        f"/projects/{project_id}/services/new", {"name": "web", "image": lab.token.ref("public/hello:latest")}
    )
    service_path = created.headers["location"].split("?")[0]
    forged = owner.http.post(
        f"{service_path}/deployments", data={"csrf_token": "nope"}, follow_redirects=False
    )
    assert forged.status_code == 401
    with make_client(lab_context) as other_http:
        other = WebUser.sign_in(other_http, lab_context, "other@example.com")
        assert other.post_form(f"{service_path}/deployments", {}).status_code == 404
    assert "No deployments yet" in text_of(owner.http.get(service_path).text)


def test_platform_is_set_in_settings(owner: WebUser, lab_context: AppContext, lab: Lab) -> None:
    project_id = create_project(lab_context, owner.email)
    created = owner.post_form(
        f"/projects/{project_id}/services/new", {"name": "web", "image": lab.token.ref("public/hello:latest")}
    )
    service_path = created.headers["location"].split("?")[0]
    deploy = {"image": lab.token.ref("public/hello:latest"), "port": "8080", "health_path": ""}
    bad = owner.post_form(f"{service_path}/settings/deploy", {**deploy, "platform": "arm"})
    assert bad.status_code == 422
    assert "os/architecture" in text_of(bad.text)
    saved = owner.post_form(f"{service_path}/settings/deploy", {**deploy, "platform": "linux/aarch64"})
    assert saved.status_code == 303
    page = text_of(owner.http.get(saved.headers["location"]).text)
    assert "Deploy settings saved" in page
    assert "Platform linux/arm64" in text_of(owner.http.get(service_path).text)
    audit = text_of(owner.http.get(f"/projects/{project_id}/audit-logs").text)
    assert "Set the deploy platform to linux/arm64 (was linux/amd64)" in audit


def test_deploy_settings_port_health_path_and_image(
    owner: WebUser, lab_context: AppContext, lab: Lab
) -> None:
    project_id = create_project(lab_context, owner.email)
    image = lab.token.ref("public/hello:latest")
    created = owner.post_form(
        f"/projects/{project_id}/services/new",
        {"name": "web", "image": image, "port": "9090", "health_path": "/ready"},
    )
    assert created.status_code == 303, created.text
    service_path = created.headers["location"].split("?")[0]
    assert "9090 · ready when /ready answers" in text_of(owner.http.get(service_path).text)
    form = {"image": image, "platform": "linux/amd64", "port": "80", "health_path": ""}
    bad_port = owner.post_form(f"{service_path}/settings/deploy", {**form, "port": "eighty"})
    assert bad_port.status_code == 422
    assert 'id="deploy-port-error"' in bad_port.text and "1 to 65535" in text_of(bad_port.text)
    assert 'value="eighty"' in bad_port.text  # shown back as typed
    saved = owner.post_form(f"{service_path}/settings/deploy", form)
    assert saved.status_code == 303
    overview = text_of(owner.http.get(service_path).text)
    assert "Port 80" in overview and "ready when" not in overview
    assert "Deploys only render Kubernetes objects here" in overview
    audit = text_of(owner.http.get(f"/projects/{project_id}/audit-logs").text)
    assert "Changed port from 9090 to 80, health path from /ready to (none)" in audit
