"""Preflight outcomes decided before any traffic, and the result's shape."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest
from pydantic import SecretStr

from guara.netguard import ResolutionFailed
from guara.registry import PreflightCode, PreflightResult, preflight

pytestmark = pytest.mark.anyio


def test_the_six_codes() -> None:
    assert {code.value for code in PreflightCode} == {
        "invalid_url",
        "auth_failed",
        "manifest_not_found",
        "timeout",
        "ssrf_blocked",
        "network_error",
    }
    assert PreflightCode.TIMEOUT.value == "timeout" and str(PreflightCode.TIMEOUT) == "timeout"


def test_result_shape() -> None:
    result = PreflightResult(ok=True, code=None, message="found", digest="sha256:" + "a" * 64, elapsed_ms=12)
    assert result.as_dict() == {
        "ok": True,
        "code": None,
        "message": "found",
        "digest": "sha256:" + "a" * 64,
        "elapsed_ms": 12,
    }
    failed = PreflightResult(False, PreflightCode.AUTH_FAILED, "no", None, 3)
    assert failed.as_dict()["code"] == "auth_failed"
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.ok = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("image", "registry", "fragment"),
    [
        ("https://ghcr.io/acme/api", None, "image reference is invalid"),
        ("acme/API:v1", None, "lower-case"),
        ("", None, "empty"),
        ("ghcr.io/acme/api:v1", "gcr.io", "names gcr.io, but the image ghcr.io/acme/api:v1 is on ghcr.io"),
        ("acme/api:v1", "ghcr.io", "is on docker.io"),
        ("ghcr.io/acme/api:v1", "ghcr.io/acme", "without a path"),
        ("ghcr.io/acme/api:v1", "http://ghcr.io", "plain-HTTP registries are refused"),
        ("ghcr.io/acme/api:v1", "https://user:pw@ghcr.io", "credentials"),
    ],
)
async def test_invalid_url_before_any_traffic(image: str, registry: str | None, fragment: str) -> None:
    result = await preflight(image, registry=registry)
    assert result.code is PreflightCode.INVALID_URL
    assert fragment in result.message
    assert not result.ok
    assert result.digest is None


async def test_docker_hub_aliases_match_the_image() -> None:
    class Refuse:
        async def resolve(self, host: str, port: int) -> list[object]:
            raise ResolutionFailed(host, "test resolver: no such name")

    for registry in ("docker.io", "index.docker.io", "https://registry-1.docker.io/"):
        result = await preflight("busybox", registry=registry, resolver=Refuse())  # type: ignore[arg-type]
        assert result.code is PreflightCode.NETWORK_ERROR  # got as far as resolving: the names matched
        assert "could not resolve registry-1.docker.io" in result.message


async def test_dns_failure_is_a_network_error() -> None:
    class Broken:
        async def resolve(self, host: str, port: int) -> list[object]:
            raise OSError(-2, "Name or service not known")

    result = await preflight("registry.invalid/acme/api:v1", resolver=Broken())  # type: ignore[arg-type]
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "registry.invalid" in result.message


@pytest.mark.parametrize(
    "answers",
    [["10.0.0.5"], ["169.254.169.254"], ["127.0.0.1"], ["::1"], ["::ffff:127.0.0.1"], ["100.64.0.1"]],
)
async def test_private_answers_are_blocked_without_traffic(answers: list[str]) -> None:
    class Fixed:
        async def resolve(self, host: str, port: int) -> list[object]:
            return [ipaddress.ip_address(a) for a in answers]

    result = await preflight("registry.example.com/acme/api:v1", resolver=Fixed())  # type: ignore[arg-type]
    assert result.code is PreflightCode.SSRF_BLOCKED
    assert "registry.example.com" in result.message


async def test_ip_literal_registries_are_blocked_without_traffic() -> None:
    for image in ("169.254.169.254/latest/meta-data:v1", "10.0.0.1:5000/acme/api", "[::1]:5000/acme/api"):
        result = await preflight(image)
        assert result.code is PreflightCode.SSRF_BLOCKED, image


async def test_user_names_basic_cannot_carry() -> None:
    result = await preflight("ghcr.io/acme/api:v1", username="a:b", password="secret-pw")
    assert result.code is PreflightCode.AUTH_FAILED
    assert "cannot contain ':'" in result.message
    assert "secret-pw" not in result.message


async def test_unreadable_ca_file(tmp_path: Path) -> None:
    missing = await preflight("ghcr.io/acme/api:v1", ca_file=tmp_path / "nope.pem")
    assert missing.code is PreflightCode.NETWORK_ERROR
    assert "could not read the CA file" in missing.message
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    result = await preflight("ghcr.io/acme/api:v1", ca_file=garbage)
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "holds no usable PEM certificate" in result.message


async def test_malformed_exemptions_are_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="CIDR"):
        await preflight("ghcr.io/acme/api:v1", ssrf_allow=("127.0.0.0/33",))


async def test_secret_password_is_accepted() -> None:
    result = await preflight("ghcr.io/acme/api:v1", username="a:b", password=SecretStr("x"))
    assert result.code is PreflightCode.AUTH_FAILED


async def test_non_positive_timeout_is_refused() -> None:
    with pytest.raises(ValueError):
        await preflight("ghcr.io/acme/api:v1", timeout=0)
