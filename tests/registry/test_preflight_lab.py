"""Preflight against the real registries of the lab (CNCF distribution over TLS, lab CA)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from guara.registry import PreflightCode, PreflightResult, preflight
from tests.lab import ALICE_PASSWORD, Lab
from tests.registry.conftest import LOOPBACK_ONLY, Fakes
from tests.registry.fakes import Reply, closed_port

pytestmark = pytest.mark.anyio


async def run(lab: Lab, image: str, **kwargs: object) -> PreflightResult:
    options: dict[str, object] = {"ca_file": lab.ca_file, "ssrf_allow": LOOPBACK_ONLY}
    options.update(kwargs)
    return await preflight(image, **options)  # type: ignore[arg-type]


def assert_ok(result: PreflightResult, digest: str) -> None:
    assert result.ok, result
    assert result.code is None
    assert result.digest == digest
    assert 0 <= result.elapsed_ms < 8000


def assert_failed(result: PreflightResult, code: PreflightCode, *fragments: str) -> None:
    assert not result.ok
    assert result.code is code, result
    assert result.digest is None
    for fragment in fragments:
        assert fragment in result.message, result.message


# -- success in each mode, by tag and by digest --


async def test_anonymous_registry_by_tag_and_digest(lab: Lab) -> None:
    digest = lab.anonymous.images["acme/api:v1"]
    result = await run(lab, lab.anonymous.ref("acme/api:v1"))
    assert_ok(result, digest)
    assert "anonymous pulls allowed" in result.message
    assert_ok(await run(lab, f"{lab.anonymous.host}/acme/api@{digest}"), digest)


async def test_basic_registry_by_tag_and_digest(lab: Lab) -> None:
    digest = lab.basic.images["acme/api:v1"]
    result = await run(lab, lab.basic.ref("acme/api:v1"), username="alice", password=ALICE_PASSWORD)
    assert_ok(result, digest)
    assert "credentials accepted" in result.message
    by_digest = await run(
        lab, f"{lab.basic.host}/acme/api@{digest}", username="alice", password=ALICE_PASSWORD
    )
    assert_ok(by_digest, digest)


async def test_token_registry_by_tag_and_digest(lab: Lab) -> None:
    digest = lab.token.images["acme/api:v1"]
    password = SecretStr(lab.token.users["alice"])
    assert_ok(await run(lab, lab.token.ref("acme/api:v1"), username="alice", password=password), digest)
    assert_ok(
        await run(lab, f"{lab.token.host}/acme/api@{digest}", username="alice", password=password), digest
    )


async def test_token_registry_sends_account_and_credentials_only_to_the_realm(lab: Lab) -> None:
    lab.issuer.reset_requests()
    result = await run(lab, lab.token.ref("acme/api:v1"), username="alice", password=ALICE_PASSWORD)
    assert result.ok
    [request] = lab.issuer.requests
    assert request.method == "GET"
    assert request.has_authorization
    assert request.username == "alice"
    assert request.params["account"] == ("alice",)
    assert request.params["scope"] == ("repository:acme/api:pull",)
    assert request.params["service"] == (lab.token.service,)


async def test_public_image_with_an_anonymous_token(lab: Lab) -> None:
    lab.issuer.reset_requests()
    result = await run(lab, lab.token.ref("public/hello:latest"))
    assert_ok(result, lab.token.images["public/hello:latest"])
    assert "anonymous token" in result.message
    [request] = lab.issuer.requests
    assert not request.has_authorization
    assert "account" not in request.params


async def test_multi_platform_index(lab: Lab) -> None:
    result = await run(lab, lab.token.ref("acme/multi:v1"), username="alice", password=ALICE_PASSWORD)
    assert_ok(result, lab.token.images["acme/multi:v1"])


@pytest.mark.parametrize("user", ["alice", "robot$ci", "org+robot"])
async def test_usernames_with_special_characters(lab: Lab, user: str) -> None:
    result = await run(lab, lab.basic.ref("acme/api:v1"), username=user, password=lab.basic.users[user])
    assert_ok(result, lab.basic.images["acme/api:v1"])


@pytest.mark.parametrize("form", ["host", "https", "https-slash"])
async def test_registry_field_forms(lab: Lab, form: str) -> None:
    registry = {"host": lab.basic.host, "https": lab.basic.url, "https-slash": lab.basic.url + "/"}[form]
    result = await run(
        lab, lab.basic.ref("acme/api:v1"), registry=registry, username="alice", password=ALICE_PASSWORD
    )
    assert_ok(result, lab.basic.images["acme/api:v1"])


# -- failures --


async def test_wrong_password_on_basic(lab: Lab) -> None:
    result = await run(lab, lab.basic.ref("acme/api:v1"), username="alice", password="wrong")
    assert_failed(
        result, PreflightCode.AUTH_FAILED, f"the registry at {lab.basic.host} rejected these credentials"
    )


async def test_wrong_password_on_token(lab: Lab) -> None:
    result = await run(lab, lab.token.ref("acme/api:v1"), username="alice", password="wrong")
    issuer_host = lab.issuer.url.removeprefix("https://")
    assert_failed(
        result, PreflightCode.AUTH_FAILED, f"the token server at {issuer_host} rejected these credentials"
    )


async def test_no_credentials_on_a_private_basic_registry(lab: Lab) -> None:
    result = await run(lab, lab.basic.ref("acme/api:v1"))
    assert_failed(result, PreflightCode.AUTH_FAILED, "requires a username and password")


async def test_no_credentials_on_a_private_token_repository(lab: Lab) -> None:
    result = await run(lab, lab.token.ref("acme/api:v1"))
    assert_failed(result, PreflightCode.AUTH_FAILED, "acme/api is private or missing", "add credentials")


async def test_user_without_access(lab: Lab) -> None:
    result = await run(lab, lab.token.ref("acme/api:v1"), username="bob", password=lab.token.users["bob"])
    assert_failed(result, PreflightCode.MANIFEST_NOT_FOUND, "missing, or these credentials cannot read it")


@pytest.mark.parametrize("registry", ["anonymous", "basic", "token"])
async def test_missing_tag(lab: Lab, registry: str) -> None:
    target = getattr(lab, registry)
    credentials = {} if registry == "anonymous" else {"username": "alice", "password": ALICE_PASSWORD}
    result = await run(lab, target.ref("acme/api:v2"), **credentials)
    assert_failed(result, PreflightCode.MANIFEST_NOT_FOUND, "tag v2 not found in acme/api")


@pytest.mark.parametrize("registry", ["anonymous", "basic", "token"])
async def test_missing_repository(lab: Lab, registry: str) -> None:
    target = getattr(lab, registry)
    credentials = {} if registry == "anonymous" else {"username": "alice", "password": ALICE_PASSWORD}
    result = await run(lab, target.ref("acme/nothing-here:v1"), **credentials)
    assert_failed(result, PreflightCode.MANIFEST_NOT_FOUND, "repository acme/nothing-here not found")


async def test_missing_digest(lab: Lab) -> None:
    digest = "sha256:" + "f" * 64
    result = await run(lab, f"{lab.anonymous.host}/acme/api@{digest}")
    assert_failed(result, PreflightCode.MANIFEST_NOT_FOUND, f"digest {digest} not found in acme/api")


async def test_untrusted_certificate(lab: Lab) -> None:
    result = await run(lab, lab.anonymous.ref("acme/api:v1"), ca_file=None)
    assert_failed(result, PreflightCode.NETWORK_ERROR, "certificate is not trusted", "CA file")


async def test_closed_port(lab: Lab) -> None:
    result = await run(lab, f"127.0.0.1:{closed_port()}/acme/api:v1")
    assert_failed(result, PreflightCode.INVALID_URL, "connection refused or unreachable")


async def test_a_server_that_is_not_a_registry(lab: Lab, fakes: Fakes) -> None:
    web = fakes.start(lambda seen: Reply(404, [("Content-Type", "text/html")], b"<h1>Not Found</h1>"))
    result = await run(lab, f"{web.host}/acme/api:v1")
    assert_failed(result, PreflightCode.INVALID_URL, "does not answer like a container registry", "404")


async def test_registry_field_must_be_the_images_registry(lab: Lab) -> None:
    result = await run(lab, lab.basic.ref("acme/api:v1"), registry=lab.token.host)
    assert_failed(result, PreflightCode.INVALID_URL, f"names {lab.token.host}", f"is on {lab.basic.host}")


async def test_loopback_is_blocked_without_the_exemption(lab: Lab) -> None:
    result = await run(lab, lab.anonymous.ref("acme/api:v1"), ssrf_allow=())
    assert_failed(result, PreflightCode.SSRF_BLOCKED, "127.0.0.1", "loopback")


async def test_narrow_exemption_is_enough(lab: Lab) -> None:
    result = await run(lab, lab.anonymous.ref("acme/api:v1"), ssrf_allow=("127.0.0.1/32",))
    assert result.ok


# -- secrets --


async def test_password_never_in_results_or_logs(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    outcomes = [
        await run(lab, lab.basic.ref("acme/api:v1"), username="alice", password=ALICE_PASSWORD),
        await run(lab, lab.token.ref("acme/api:v1"), username="alice", password=ALICE_PASSWORD),
        await run(lab, lab.basic.ref("acme/api:v1"), username="alice", password=ALICE_PASSWORD + "x"),
        await run(lab, lab.token.ref("acme/api:v1"), username="alice", password=ALICE_PASSWORD + "x"),
    ]
    texts = [repr(outcome) for outcome in outcomes] + [str(outcome.as_dict()) for outcome in outcomes]
    texts += [record.getMessage() for record in caplog.records]
    assert caplog.records  # the preflight does log, just never the password
    for text in texts:
        assert ALICE_PASSWORD not in text
        assert "密码" not in text


async def test_ca_file_path_types(lab: Lab) -> None:
    assert (await run(lab, lab.anonymous.ref("acme/api:v1"), ca_file=str(lab.ca_file))).ok
    assert (await run(lab, lab.anonymous.ref("acme/api:v1"), ca_file=Path(lab.ca_file))).ok
