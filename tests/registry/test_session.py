"""RegistrySession, the reusable client deploy builds on: typed results and typed errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from guara.netguard import GuardPolicy, parse_allow_list
from guara.registry import (
    AccessDenied,
    AuthenticationFailed,
    Credentials,
    Deadline,
    DeadlineExceeded,
    DigestMismatch,
    ImageReference,
    InsecureURLRefused,
    InvalidRegistry,
    ManifestNotFound,
    RegistrySession,
    ResponseTooLarge,
    compute_digest,
    parse_image_reference,
    trust_context,
)
from tests.lab import ALICE_PASSWORD, Lab
from tests.registry.conftest import LOOPBACK_ONLY, Fakes
from tests.registry.fakes import Reply, Seen

pytestmark = pytest.mark.anyio

POLICY = GuardPolicy(allow=parse_allow_list(LOOPBACK_ONLY))
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def session_for(
    image: str | ImageReference,
    ca_file: Path,
    *,
    credentials: Credentials | None = None,
    seconds: float = 8.0,
) -> RegistrySession:
    ref = parse_image_reference(image) if isinstance(image, str) else image
    return RegistrySession(
        ref,
        credentials=credentials,
        ssl_context=trust_context(ca_file),
        policy=POLICY,
        deadline=Deadline(seconds),
    )


ALICE = Credentials("alice", SecretStr(ALICE_PASSWORD))


async def test_manifest_and_blob_from_the_token_registry(lab: Lab) -> None:
    async with session_for(lab.token.ref("acme/api:v1"), lab.ca_file, credentials=ALICE) as session:
        head = await session.head_manifest()
        manifest = await session.get_manifest()
        config_digest = json.loads(manifest.raw)["config"]["digest"]
        config = await session.get_blob(config_digest, max_bytes=1 << 20)
        assert session.auth_scheme == "bearer"
        assert session.credentials_accepted
    assert head.digest == manifest.digest == lab.token.images["acme/api:v1"]
    assert head.media_type == manifest.media_type
    assert head.size == len(manifest.raw)
    assert compute_digest(config) == config_digest


async def test_token_is_fetched_once_per_session(lab: Lab) -> None:
    lab.issuer.reset_requests()
    async with session_for(lab.token.ref("acme/api:v1"), lab.ca_file, credentials=ALICE) as session:
        await session.head_manifest()
        await session.get_manifest()
        await session.head_manifest("v1")
    assert len(lab.issuer.requests) == 1


async def test_index_and_digest_references(lab: Lab) -> None:
    digest = lab.token.images["acme/multi:v1"]
    async with session_for(lab.token.ref("acme/multi:v1"), lab.ca_file, credentials=ALICE) as session:
        index = await session.get_manifest()
        by_digest = await session.get_manifest(digest)
    assert index.media_type == OCI_INDEX
    assert index.digest == by_digest.digest == digest
    assert len(json.loads(index.raw)["manifests"]) == 2


async def test_basic_session(lab: Lab) -> None:
    async with session_for(lab.basic.ref("acme/api:v1"), lab.ca_file, credentials=ALICE) as session:
        await session.authenticate()
        assert session.auth_scheme == "basic"
        assert session.credentials_accepted
        assert (await session.head_manifest()).digest == lab.basic.images["acme/api:v1"]


async def test_typed_errors(lab: Lab) -> None:
    async with session_for(lab.token.ref("acme/nope:v1"), lab.ca_file, credentials=ALICE) as session:
        with pytest.raises(ManifestNotFound) as missing:
            await session.head_manifest()
    assert missing.value.repository_missing is True
    assert missing.value.repository == "acme/nope"

    bob = Credentials("bob", SecretStr(lab.token.users["bob"]))
    async with session_for(lab.token.ref("acme/api:v1"), lab.ca_file, credentials=bob) as session:
        with pytest.raises(AccessDenied) as denied:
            await session.get_manifest()
    assert denied.value.insufficient_scope
    assert denied.value.credentials_given

    wrong = Credentials("alice", SecretStr("wrong"))
    async with session_for(lab.basic.ref("acme/api:v1"), lab.ca_file, credentials=wrong) as session:
        with pytest.raises(AuthenticationFailed) as rejected:
            await session.authenticate()
    assert rejected.value.authority == "registry"


async def test_lab_issuer_post_404_falls_back_to_get(lab: Lab) -> None:
    lab.issuer.reset_requests()
    ref = parse_image_reference(lab.token.ref("acme/api:v1"))
    async with RegistrySession(
        ref,
        credentials=ALICE,
        ssl_context=trust_context(lab.ca_file),
        policy=POLICY,
        deadline=Deadline(8.0),
        oauth2=True,
    ) as session:
        assert (await session.head_manifest()).digest == lab.token.images["acme/api:v1"]
    assert [request.method for request in lab.issuer.requests] == ["POST", "GET"]
    assert lab.issuer.requests[0].status == 404


async def test_the_session_refuses_another_repository(lab: Lab) -> None:
    async with session_for(lab.token.ref("acme/api:v1"), lab.ca_file, credentials=ALICE) as session:
        with pytest.raises(ValueError):
            await session.head_manifest(parse_image_reference(lab.token.ref("acme/other:v1")))
        with pytest.raises(ValueError):
            await session.get_blob("not-a-digest", max_bytes=10)


def test_plain_http_location_needs_allow_http(lab_ca_file: Path) -> None:
    from guara.registry import parse_registry

    ref = parse_image_reference("127.0.0.1:5000/acme/api:v1")
    location = parse_registry("http://127.0.0.1:5000", allow_http=True)
    with pytest.raises(InsecureURLRefused):
        RegistrySession(
            ref,
            registry=location,
            ssl_context=trust_context(lab_ca_file),
            policy=POLICY,
            deadline=Deadline(1.0),
        )


# -- blobs through redirects --


def blob_registry(storage_url: str, *, user: str = "u", password: str = "p"):  # type: ignore[no-untyped-def]
    def route(seen: Seen) -> Reply:
        if seen.basic != (user, password):
            return Reply(401, [("WWW-Authenticate", 'Basic realm="x"')])
        if seen.path == "/v2/":
            return Reply.json(200, {})
        return Reply.redirect(storage_url + seen.path + "?X-Signature=abc", status=307)

    return route


async def test_blob_redirect_drops_credentials_and_verifies_digest(fakes: Fakes, lab_ca_file: Path) -> None:
    content = b"layer bytes" * 100
    digest = compute_digest(content)
    storage = fakes.start(
        lambda seen: Reply(200, [("Content-Type", "application/octet-stream")], content), bind="127.0.0.3"
    )
    registry = fakes.start(blob_registry(storage.url))
    async with session_for(
        f"{registry.host}/acme/api:v1", lab_ca_file, credentials=Credentials.of("u", "p")
    ) as session:
        assert await session.get_blob(digest, max_bytes=len(content)) == content
        with pytest.raises(ResponseTooLarge):
            await session.get_blob(digest, max_bytes=len(content) - 1)
    assert all("authorization" not in seen.headers for seen in storage.requests)


async def test_blob_with_wrong_content(fakes: Fakes, lab_ca_file: Path) -> None:
    storage = fakes.start(lambda seen: Reply(200, [], b"tampered"), bind="127.0.0.3")
    registry = fakes.start(blob_registry(storage.url))
    async with session_for(
        f"{registry.host}/acme/api:v1", lab_ca_file, credentials=Credentials.of("u", "p")
    ) as session:
        with pytest.raises(DigestMismatch):
            await session.get_blob(compute_digest(b"original"), max_bytes=1000)


async def test_one_deadline_for_the_whole_session(fakes: Fakes, lab_ca_file: Path) -> None:
    silent = fakes.start(
        lambda seen: Reply.json(200, {}) if seen.path == "/v2/" else Reply(behaviour="silent")
    )
    async with session_for(f"{silent.host}/acme/api:v1", lab_ca_file, seconds=0.5) as session:
        await session.authenticate()
        with pytest.raises(DeadlineExceeded):
            await session.head_manifest()
        with pytest.raises(DeadlineExceeded):  # spent: later calls fail at once
            await session.get_manifest()


@pytest.mark.parametrize("host", ["0177.0.0.1", "999.1.1.1:5000", "xn--zz.example"])
async def test_a_hand_built_location_on_a_hostile_host_is_an_invalid_registry(
    host: str, lab_ca_file: Path
) -> None:
    # ImageReference skips the parser when built by hand; httpx raised InvalidURL/IDNAError here.
    with pytest.raises(InvalidRegistry, match="invalid registry host"):
        session_for(ImageReference(host, "acme/api", "v1", None), lab_ca_file)
