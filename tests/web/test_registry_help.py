"""Registry-aware help where the user types: the Username and Password hints of a well-known registry,
and its usual cause of a failure in the Test Connection result (page and JSON endpoint).

Public registries are out of reach: ``ghcr.io`` here is a loopback fake shaped like GitHub's registry
(Basic challenge, 401 for a token without read:packages), reached through a resolver double, so no
name is ever looked up in real DNS. The browser side is in test_browser.py."""

from __future__ import annotations

import dataclasses
import re
import uuid

import pytest
import trustme
from pydantic import SecretStr

from guara.context import AppContext
from guara.core import deployments, services
from guara.core.credentials import CredentialsChange
from tests.netguard.doubles import ScriptedResolver
from tests.registry.fakes import FakeServer, Reply, Seen
from tests.support import run
from tests.web.support import WebUser, create_project, create_user, text_of

pytestmark = pytest.mark.lab

GENERIC_USERNAME = "Your user name, or the token user name"


def _hint(page: str, field: str) -> str:
    match = re.search(rf'<p class="hint" id="cred-{field}-hint">(.*?)</p>', page, re.S)
    assert match, f"no {field} hint"
    return text_of(match.group(1))


def _rejects_every_login(seen: Seen) -> Reply:
    return Reply.errors(
        401, "UNAUTHORIZED", "authentication required", [("WWW-Authenticate", 'Basic realm="ghcr"')]
    )


def test_hints_follow_the_registry_in_the_form(owner: WebUser, lab_context: AppContext) -> None:
    project_id = create_project(lab_context, owner.email)
    wizard = f"/projects/{project_id}/services/new"
    blank = owner.http.get(wizard).text
    assert GENERIC_USERNAME in _hint(blank, "username")
    # A plain form post (no JavaScript) re-renders the hints for the registry it carried.
    for registry, username_hint, password_hint in [
        ("ghcr.io", "Your GitHub username", "read:packages"),
        ("https://registry.gitlab.com/", "gitlab+deploy-token-N", "read_registry"),
        ("europe-west1-docker.pkg.dev", "oauth2accesstoken", "Artifact Registry Reader"),
        ("registry.example.com:5000", GENERIC_USERNAME, "Encrypted at rest"),
    ]:
        page = owner.post_form(
            wizard,
            {"name": "api", "image": "acme/api:v1", "registry": registry, "action": "save", "username": "u"},
        ).text
        assert username_hint in _hint(page, "username"), registry
        assert password_hint in _hint(page, "password"), registry


def test_a_failed_test_names_the_registrys_usual_cause(
    owner: WebUser, lab_context: AppContext, lab_ca: trustme.CA
) -> None:
    with FakeServer(_rejects_every_login, ca=lab_ca) as ghcr:
        _test_against(owner, lab_context, ghcr)


def _test_against(owner: WebUser, lab_context: AppContext, ghcr: FakeServer) -> None:
    resolver = ScriptedResolver.static({"ghcr.io": ["127.0.0.1"]})
    lab_context.registry = dataclasses.replace(lab_context.registry, resolver=resolver)
    registry = f"ghcr.io:{ghcr.port}"
    image = f"{registry}/acme/api:v1"
    project_id = create_project(lab_context, owner.email)

    page = owner.post_form(
        f"/projects/{project_id}/services/new",
        {
            "name": "api",
            "image": image,
            "registry": registry,
            "username": "octocat",
            "password": "ghp_x",
            "action": "test",
        },
    )
    assert page.status_code == 422
    result = text_of(page.text)
    assert "The registry rejected these credentials" in result
    assert "read:packages" in result and "must belong to a user who can read the package" in result

    answer = owner.post_json(
        "/-/test-connection",
        {"image": image, "registry": registry, "username": "octocat", "password": "ghp_x"},
    ).json()
    assert answer["code"] == "auth_failed" and "read:packages" in answer["hint"]
    assert resolver.calls and set(resolver.calls) == {"ghcr.io"}
    assert all(seen.basic == ("octocat", "ghp_x") for seen in ghcr.requests if seen.basic)


def test_a_failed_deploy_names_the_registrys_usual_cause(lab_context: AppContext, lab_ca: trustme.CA) -> None:
    resolver = ScriptedResolver.static({"ghcr.io": ["127.0.0.1"]})
    lab_context.registry = dataclasses.replace(lab_context.registry, resolver=resolver)
    principal = create_user(lab_context, "deployer@example.com")
    project_id = uuid.UUID(create_project(lab_context, principal.email))
    with FakeServer(_rejects_every_login, ca=lab_ca) as ghcr:
        registry = f"ghcr.io:{ghcr.port}"
        service = run(
            services.create_service,
            lab_context,
            principal,
            project_id=project_id,
            name="api",
            image=f"{registry}/acme/api:v1",
            registry_credentials=CredentialsChange(registry, "octocat", SecretStr("ghp_x")),
            skip_verification=True,
        )

        async def deploy() -> deployments.DeploymentView:  # one event loop: the deploy runs in it
            started = await deployments.start_deployment(lab_context, principal, service_id=service.id)
            await lab_context.deployments.wait_idle()
            return await deployments.get_deployment(
                lab_context, principal, service_id=service.id, deployment_id=started.id
            )

        ended = run(deploy)
    assert (ended.status, ended.code) == ("failed", "auth_failed")
    assert "may have been revoked" in ended.message and "read:packages" in ended.message
