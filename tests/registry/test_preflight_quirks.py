"""Quirks of public registries, reproduced by small fakes with their documented behaviour
(reference/registry-protocol.md, "Registry quirks")."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import trustme

from guara.netguard import GuardPolicy, parse_allow_list
from guara.registry import (
    Deadline,
    PreflightCode,
    PreflightResult,
    RegistrySession,
    parse_image_reference,
    preflight,
    trust_context,
)
from guara.registry.auth import Credentials
from tests.registry.conftest import LOOPBACK_ONLY
from tests.registry.fakes import MANIFEST_DIGEST, BearerRegistry, bearer_pair

pytestmark = pytest.mark.anyio


async def run(ca: Path, image: str, **kwargs: object) -> PreflightResult:
    options: dict[str, object] = {"ca_file": ca, "ssrf_allow": LOOPBACK_ONLY}
    options.update(kwargs)
    return await preflight(image, **options)  # type: ignore[arg-type]


# -- Docker Hub: realm on another host, no scope in the challenge, 401 for missing repositories --


def docker_hub() -> BearerRegistry:
    return BearerRegistry(
        users={"hubuser": "dckr_pat_abc"},
        readable={"library/busybox": {None, "hubuser"}, "hubuser/private": {"hubuser"}},
        tags={"library/busybox": {"latest"}, "hubuser/private": {"v1"}},
        service="registry.docker.io",
        missing_repo_status=401,
    )


async def test_docker_hub_private_repository(lab_ca: trustme.CA, lab_ca_file: Path) -> None:
    hub = docker_hub()
    with bearer_pair(hub, ca=lab_ca) as (registry, auth):
        result = await run(
            lab_ca_file, f"{registry.host}/hubuser/private:v1", username="hubuser", password="dckr_pat_abc"
        )
        assert result.ok, result
        assert result.digest == MANIFEST_DIGEST
        [token_request] = auth.requests
        assert token_request.query["scope"] == ["repository:hubuser/private:pull"]  # not from the challenge
        assert token_request.query["service"] == ["registry.docker.io"]
        assert token_request.basic == ("hubuser", "dckr_pat_abc")
        assert all(seen.basic is None for seen in registry.requests)


async def test_docker_hub_missing_repository_is_a_401(lab_ca: trustme.CA, lab_ca_file: Path) -> None:
    with bearer_pair(docker_hub(), ca=lab_ca) as (registry, _auth):
        result = await run(
            lab_ca_file, f"{registry.host}/hubuser/nope:v1", username="hubuser", password="dckr_pat_abc"
        )
        assert result.code is PreflightCode.MANIFEST_NOT_FOUND
        assert "hubuser/nope is missing, or these credentials cannot read it" in result.message


async def test_docker_hub_anonymous_public_and_private(lab_ca: trustme.CA, lab_ca_file: Path) -> None:
    with bearer_pair(docker_hub(), ca=lab_ca) as (registry, auth):
        public = await run(lab_ca_file, f"{registry.host}/library/busybox")
        assert public.ok, public
        assert "authorization" not in auth.requests[0].headers
        private = await run(lab_ca_file, f"{registry.host}/hubuser/private:v1")
        assert private.code is PreflightCode.AUTH_FAILED
        assert "add credentials" in private.message


async def test_docker_hub_wrong_token(lab_ca: trustme.CA, lab_ca_file: Path) -> None:
    with bearer_pair(docker_hub(), ca=lab_ca) as (registry, auth):
        result = await run(
            lab_ca_file, f"{registry.host}/hubuser/private:v1", username="hubuser", password="old"
        )
        assert result.code is PreflightCode.AUTH_FAILED
        assert f"the token server at {auth.host} rejected these credentials" in result.message


class _RecordingResolver:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int) -> list[object]:
        import ipaddress

        self.asked.append(host)
        return [ipaddress.ip_address("127.0.0.1")]


async def test_docker_hub_names_use_the_api_host_and_stay_guarded() -> None:
    # a resolver double answers loopback for Docker Hub's API host: the guard must refuse it, no traffic
    resolver = _RecordingResolver()
    result = await preflight("busybox", resolver=resolver)  # type: ignore[arg-type]
    assert result.code is PreflightCode.SSRF_BLOCKED
    assert resolver.asked == ["registry-1.docker.io"]
    assert "registry-1.docker.io" in result.message


# -- GitLab: realm on the GitLab host, service container_registry, anonymous private -> 403 --


def gitlab() -> BearerRegistry:
    return BearerRegistry(
        users={"dev": "glpat-xyz"},
        readable={"group/project": {"dev"}},
        tags={"group/project": {"main"}},
        service="container_registry",
        token_path="/jwt/auth",
        anonymous_private_status=403,
    )


async def test_gitlab_with_a_personal_access_token(lab_ca: trustme.CA, lab_ca_file: Path) -> None:
    with bearer_pair(gitlab(), ca=lab_ca) as (registry, auth):
        result = await run(
            lab_ca_file, f"{registry.host}/group/project:main", username="dev", password="glpat-xyz"
        )
        assert result.ok, result
        assert auth.requests[0].path == "/jwt/auth"
        assert auth.requests[0].query["service"] == ["container_registry"]


async def test_gitlab_anonymous_private_is_a_403_from_the_token_server(
    lab_ca: trustme.CA, lab_ca_file: Path
) -> None:
    with bearer_pair(gitlab(), ca=lab_ca) as (registry, auth):
        result = await run(lab_ca_file, f"{registry.host}/group/project:main")
        assert result.code is PreflightCode.AUTH_FAILED
        assert f"the token server at {auth.host} refused anonymous access (403)" in result.message


# -- GCR: POST answers 404, a 401 may come without a challenge, long JSON-key passwords --


def gcr() -> BearerRegistry:
    key = base64.b64encode(
        json.dumps({"type": "service_account", "private_key": "k" * 3000}).encode()
    ).decode()
    return BearerRegistry(
        users={"oauth2accesstoken": "ya29.token", "_json_key_base64": key},
        readable={"my-project/app": {"oauth2accesstoken", "_json_key_base64"}, "other-project/app": set()},
        tags={"my-project/app": {"v1"}, "other-project/app": {"v1"}},
        service="gcr.io",
        token_path="/v2/token",
        post_status=404,
        unreadable_challenge=False,
    )


@pytest.mark.parametrize("user", ["oauth2accesstoken", "_json_key_base64"])
async def test_gcr_credentials(lab_ca: trustme.CA, lab_ca_file: Path, user: str) -> None:
    registry_fake = gcr()
    with bearer_pair(registry_fake, ca=lab_ca, same_host=True) as (registry, _):
        password = registry_fake.users[user]
        result = await run(
            lab_ca_file, f"{registry.host}/my-project/app:v1", username=user, password=password
        )
        assert result.ok, result
        assert "POST" not in {seen.method for seen in registry.requests}  # the preflight never POSTs


async def test_gcr_401_without_a_challenge_after_accepted_credentials(
    lab_ca: trustme.CA, lab_ca_file: Path
) -> None:
    with bearer_pair(gcr(), ca=lab_ca, same_host=True) as (registry, _):
        result = await run(
            lab_ca_file,
            f"{registry.host}/other-project/app:v1",
            username="oauth2accesstoken",
            password="ya29.token",
        )
        assert result.code is PreflightCode.MANIFEST_NOT_FOUND
        assert "missing, or these credentials cannot read it" in result.message


async def test_gcr_oauth2_post_404_falls_back_to_get(lab_ca: trustme.CA, lab_ca_file: Path) -> None:
    with bearer_pair(gcr(), ca=lab_ca, same_host=True) as (registry, _):
        image = parse_image_reference(f"{registry.host}/my-project/app:v1")
        async with RegistrySession(
            image,
            credentials=Credentials.of("oauth2accesstoken", "ya29.token"),
            ssl_context=trust_context(lab_ca_file),
            policy=GuardPolicy(allow=parse_allow_list(LOOPBACK_ONLY)),
            deadline=Deadline(8.0),
            oauth2=True,
        ) as session:
            descriptor = await session.head_manifest()
        assert descriptor.digest == MANIFEST_DIGEST
        token_requests = [seen for seen in registry.requests if seen.path == "/v2/token"]
        assert [seen.method for seen in token_requests] == ["POST", "GET"]
        assert b"grant_type=password" in token_requests[0].body


# -- Harbor: realm <host>/service/token, service harbor-registry, robot$ users --


def harbor() -> BearerRegistry:
    return BearerRegistry(
        users={"robot$ci-puller": "harbor-robot-secret"},
        readable={"library/nginx": {"robot$ci-puller"}},
        tags={"library/nginx": {"1.25"}},
        service="harbor-registry",
        token_path="/service/token",
    )


async def test_harbor_robot_account(lab_ca: trustme.CA, lab_ca_file: Path) -> None:
    with bearer_pair(harbor(), ca=lab_ca, same_host=True) as (registry, _):
        result = await run(
            lab_ca_file,
            f"{registry.host}/library/nginx:1.25",
            username="robot$ci-puller",
            password="harbor-robot-secret",
        )
        assert result.ok, result
        [token_request] = [seen for seen in registry.requests if seen.path == "/service/token"]
        assert token_request.basic == ("robot$ci-puller", "harbor-robot-secret")
        assert token_request.query["account"] == ["robot$ci-puller"]
        assert token_request.query["service"] == ["harbor-registry"]
