"""`resolve_image` against fake registries on loopback: what is not a runnable image, oversized or
lying configs, the network guard, and the pinned digest of a plain manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from guara.deploy import (
    MAX_CONFIG_BYTES,
    ImagePlatforms,
    ResolvedImage,
    ResolveFailure,
    image_platforms,
    parse_platform,
    resolve_image,
)
from guara.registry import PreflightCode, RegistryOptions
from tests.deploy.fakes import static_registry
from tests.lab.fixtures import HttpsServerFactory

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LOOPBACK = "127.0.0.0/8"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest(config: bytes, *, config_type: str = OCI_CONFIG, size: int | None = None) -> bytes:
    descriptor = {
        "mediaType": config_type,
        "digest": _digest(config),
        "size": len(config) if size is None else size,
    }
    return json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor, "layers": []}
    ).encode()


def _routes(
    manifest: bytes, config: bytes, *, served_config: bytes | None = None
) -> dict[str, tuple[int, str, bytes]]:
    return {
        "/v2/team/app/manifests/v1": (200, OCI_MANIFEST, manifest),
        f"/v2/team/app/blobs/{_digest(config)}": (200, "application/octet-stream", served_config or config),
    }


async def _resolve(
    host: str,
    ca_file: Path,
    *,
    registry: str | None = None,
    username: str | None = None,
    password: SecretStr | None = None,
    **kwargs: Any,
) -> ResolvedImage | ResolveFailure:
    settings: dict[str, Any] = {"ca_file": ca_file, "ssrf_allow": LOOPBACK, "timeout": 5.0, **kwargs}
    return await resolve_image(
        f"{host}/team/app:v1",
        platform=parse_platform("linux/amd64"),
        options=RegistryOptions.build(**settings),
        registry=registry,
        username=username,
        password=password,
    )


CONFIG = json.dumps({"os": "linux", "architecture": "amd64", "config": {}}).encode()


@pytest.mark.anyio
async def test_a_plain_manifest_pins_its_own_digest(
    lab_https_server: HttpsServerFactory, lab_ca_file: Path
) -> None:
    manifest = _manifest(CONFIG)
    server = lab_https_server(static_registry(_routes(manifest, CONFIG)))
    result = await _resolve(server.host, lab_ca_file)
    assert isinstance(result, ResolvedImage), result
    assert result.digest == _digest(manifest)
    assert result.index_digest is None
    assert result.config_digest == _digest(CONFIG)
    assert result.pinned == f"{server.host}/team/app@{_digest(manifest)}"
    assert result.with_credentials is False


@pytest.mark.anyio
async def test_an_artifact_is_not_a_container_image(
    lab_https_server: HttpsServerFactory, lab_ca_file: Path
) -> None:
    chart = b'{"name":"chart"}'
    manifest = _manifest(chart, config_type="application/vnd.cncf.helm.config.v1+json")
    server = lab_https_server(static_registry(_routes(manifest, chart)))
    result = await _resolve(server.host, lab_ca_file)
    assert isinstance(result, ResolveFailure)
    assert result.code is PreflightCode.MANIFEST_NOT_FOUND and result.unusable
    assert "application/vnd.cncf.helm.config.v1+json" in result.message


@pytest.mark.anyio
async def test_a_schema1_manifest_is_refused(lab_https_server: HttpsServerFactory, lab_ca_file: Path) -> None:
    schema1 = json.dumps({"schemaVersion": 1, "name": "team/app", "fsLayers": []}).encode()
    routes = {
        "/v2/team/app/manifests/v1": (
            200,
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            schema1,
        )
    }
    server = lab_https_server(static_registry(routes))
    result = await _resolve(server.host, lab_ca_file)
    assert isinstance(result, ResolveFailure) and result.unusable
    assert "schema-1" in result.message


@pytest.mark.anyio
async def test_an_oversized_config_is_not_fetched(
    lab_https_server: HttpsServerFactory, lab_ca_file: Path
) -> None:
    manifest = _manifest(CONFIG, size=MAX_CONFIG_BYTES + 1)
    server = lab_https_server(static_registry(_routes(manifest, CONFIG)))
    result = await _resolve(server.host, lab_ca_file)
    assert isinstance(result, ResolveFailure)
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "limit" in result.message


@pytest.mark.anyio
async def test_a_config_that_does_not_match_its_digest_fails(
    lab_https_server: HttpsServerFactory, lab_ca_file: Path
) -> None:
    other = json.dumps({"os": "linux", "architecture": "amd64", "evil": True}).encode()
    server = lab_https_server(static_registry(_routes(_manifest(CONFIG), CONFIG, served_config=other)))
    result = await _resolve(server.host, lab_ca_file)
    assert isinstance(result, ResolveFailure)
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "does not match" in result.message


@pytest.mark.anyio
async def test_the_network_guard_applies(lab_https_server: HttpsServerFactory, lab_ca_file: Path) -> None:
    server = lab_https_server(static_registry(_routes(_manifest(CONFIG), CONFIG)))
    result = await _resolve(server.host, lab_ca_file, ssrf_allow="")
    assert isinstance(result, ResolveFailure)
    assert result.code is PreflightCode.SSRF_BLOCKED


@pytest.mark.anyio
async def test_credentials_for_another_registry_are_never_sent(
    lab_https_server: HttpsServerFactory, lab_ca_file: Path
) -> None:
    server = lab_https_server(static_registry(_routes(_manifest(CONFIG), CONFIG)))
    result = await _resolve(
        server.host, lab_ca_file, registry="ghcr.io", username="u", password=SecretStr("p")
    )
    assert isinstance(result, ResolveFailure)
    assert result.code is PreflightCode.INVALID_URL
    assert "ghcr.io" in result.message
    assert server.host in result.message


@pytest.mark.anyio
async def test_registry_text_in_messages_is_bounded_and_cannot_forge_log_lines(
    lab_https_server: HttpsServerFactory, lab_ca_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "\n2030-01-01 INFO guara.audit admin rotated the master key"
    entries = [
        {
            "mediaType": OCI_MANIFEST,
            "digest": "sha256:" + "a" * 64,
            "size": 1,
            "platform": {"os": "linux", "architecture": f"x{i:05d}" + "A" * 200 + forged},
        }
        for i in range(500)
    ] + [
        {
            "mediaType": OCI_MANIFEST,
            "digest": "sha256:" + "b" * 64,
            "size": 1,
            "platform": {"os": "linux", "architecture": f"arch{i}"},
        }
        for i in range(30)
    ]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    server = lab_https_server(static_registry({"/v2/team/app/manifests/v1": (200, OCI_INDEX, index)}))
    with caplog.at_level("INFO", logger="guara.deploy"):
        result = await _resolve(server.host, lab_ca_file)
    assert isinstance(result, ResolveFailure)
    assert result.code is PreflightCode.MANIFEST_NOT_FOUND
    assert "arch0, linux/arch1" in result.message and "and 20 more" in result.message
    assert len(result.message) < 1000
    assert "\n" not in result.message
    assert not any("\n" in record.getMessage() for record in caplog.records)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "image", ["0177.0.0.1/team/app:v1", "999.1.1.1:5000/team/app:v1", "xn--zz.example/a:v1"]
)
async def test_a_stored_image_on_a_hostile_host_fails_as_invalid_url(image: str) -> None:
    # Services saved before the host rule may hold such images: a deploy fails cleanly, not internally.
    options = RegistryOptions.build(timeout=2.0)
    result = await resolve_image(image, platform=parse_platform("linux/amd64"), options=options)
    assert isinstance(result, ResolveFailure), result
    assert result.code is PreflightCode.INVALID_URL
    assert "not a valid" in result.message


# -- the platforms an image offers (the Platform setting's suggestions) --


async def _platforms(host: str, ca_file: Path, image: str = "team/app:v1") -> ImagePlatforms:
    options = RegistryOptions.build(ca_file=ca_file, ssrf_allow=LOOPBACK, timeout=5.0)
    return await image_platforms(f"{host}/{image}", options=options)


@pytest.mark.anyio
async def test_platforms_of_an_index_skip_attestations(
    lab_https_server: HttpsServerFactory, lab_ca_file: Path
) -> None:
    def entry(platform: dict[str, str]) -> dict[str, object]:
        return {
            "mediaType": OCI_MANIFEST,
            "digest": _digest(json.dumps(platform).encode()),
            "size": 1,
            "platform": platform,
        }

    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                entry({"os": "linux", "architecture": "amd64"}),
                entry({"os": "unknown", "architecture": "unknown"}),  # a build attestation
                entry({"os": "linux", "architecture": "arm64", "variant": "v8"}),
                entry({"os": "linux", "architecture": "arm", "variant": "v7"}),
                entry({"os": "linux", "architecture": "amd64"}),  # listed twice
                entry({"os": "linux\n", "architecture": "<script>"}),  # not a platform word
            ],
        }
    ).encode()
    server = lab_https_server(static_registry({"/v2/team/app/manifests/v1": (200, OCI_INDEX, index)}))
    found = await _platforms(server.host, lab_ca_file)
    assert found == ImagePlatforms(("linux/amd64", "linux/arm64", "linux/arm"))  # arm/v7: the default


@pytest.mark.anyio
async def test_platform_of_a_plain_image_is_its_configs(
    lab_https_server: HttpsServerFactory, lab_ca_file: Path
) -> None:
    server = lab_https_server(static_registry(_routes(_manifest(CONFIG), CONFIG)))
    assert await _platforms(server.host, lab_ca_file) == ImagePlatforms(("linux/amd64",))
    missing = await _platforms(server.host, lab_ca_file, "team/other:v1")
    assert missing.platforms == () and missing.code is PreflightCode.MANIFEST_NOT_FOUND
