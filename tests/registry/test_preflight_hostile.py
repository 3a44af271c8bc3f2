"""Hostile servers on loopback: slow, trickling, endless, redirecting, lying. The preflight must end
on time with the right code, cap what it reads, and never let the guard be bypassed."""

from __future__ import annotations

import gzip
import socket
import time
from pathlib import Path

import anyio
import pytest

from guara.registry import PreflightCode, PreflightResult, preflight
from tests.netguard.doubles import ScriptedResolver
from tests.registry.conftest import LOOPBACK_ONLY, Fakes
from tests.registry.fakes import (
    MANIFEST,
    MANIFEST_DIGEST,
    OCI_MANIFEST,
    Reply,
    Seen,
    closed_port,
    manifest_reply,
)

pytestmark = pytest.mark.anyio

USER, PASSWORD = "alice", "s3cret-pw"
BASIC_CHALLENGE = ("WWW-Authenticate", 'Basic realm="fake"')


async def run(ca: Path, image: str, **kwargs: object) -> PreflightResult:
    options: dict[str, object] = {"ca_file": ca, "ssrf_allow": LOOPBACK_ONLY}
    options.update(kwargs)
    return await preflight(image, **options)  # type: ignore[arg-type]


def bearer_challenge(realm: str) -> tuple[str, str]:
    return ("WWW-Authenticate", f'Bearer realm="{realm}",service="fake"')


def registry_with_realm(realm: str):  # type: ignore[no-untyped-def]
    """A registry whose /v2/ challenges with `realm` and serves any manifest to any bearer token."""

    def route(seen: Seen) -> Reply:
        if seen.path == "/v2/":
            return Reply.errors(401, "UNAUTHORIZED", "auth", [bearer_challenge(realm)])
        if seen.bearer:
            return manifest_reply(seen)
        return Reply.errors(401, "UNAUTHORIZED", "auth", [bearer_challenge(realm)])

    return route


# -- one deadline: 8 s of wall clock whatever the server does --
# One test waits the real 8 s; the others use a short budget: the same single deadline, sooner. Upper
# bounds leave room for a loaded machine, and still fail if time were spent per request.

SHORT_BUDGET_S = 1.5
SLACK_S = 1.5


@pytest.mark.slow
async def test_a_registry_that_never_answers(fakes: Fakes, lab_ca_file: Path) -> None:
    silent = fakes.start(lambda seen: Reply(behaviour="silent"))
    started = time.monotonic()
    result = await run(lab_ca_file, f"{silent.host}/acme/api:v1")
    elapsed = time.monotonic() - started
    assert result.code is PreflightCode.TIMEOUT
    assert "within 8 s" in result.message
    assert 8.0 <= elapsed < 8.0 + SLACK_S
    assert 8000 <= result.elapsed_ms < 8000 + SLACK_S * 1000


async def test_a_registry_trickling_one_byte_a_second(fakes: Fakes, lab_ca_file: Path) -> None:
    trickle = fakes.start(lambda seen: Reply(200, [("Content-Length", "2")], b"{}", behaviour="trickle"))
    started = time.monotonic()
    result = await run(lab_ca_file, f"{trickle.host}/acme/api:v1", timeout=SHORT_BUDGET_S)
    elapsed = time.monotonic() - started
    assert result.code is PreflightCode.TIMEOUT
    assert SHORT_BUDGET_S <= elapsed < SHORT_BUDGET_S + SLACK_S


async def test_a_token_server_trickling_its_answer(fakes: Fakes, lab_ca_file: Path) -> None:
    token_body = b'{"token": "' + b"x" * 64 + b'"}'
    auth = fakes.start(
        lambda seen: Reply(200, [("Content-Type", "application/json")], token_body, behaviour="trickle")
    )
    registry = fakes.start(registry_with_realm(auth.url + "/token"))
    started = time.monotonic()
    result = await run(
        lab_ca_file, f"{registry.host}/acme/api:v1", username=USER, password=PASSWORD, timeout=SHORT_BUDGET_S
    )
    assert result.code is PreflightCode.TIMEOUT
    assert SHORT_BUDGET_S <= time.monotonic() - started < SHORT_BUDGET_S + SLACK_S


async def test_a_blackhole(lab_ca_file: Path) -> None:
    # A listener that never accepts, with a backlog of 0: the first connection completes and waits
    # for a TLS answer that never comes; the queue is then full, so the next SYNs are dropped and
    # that connect hangs. Both preflights must end on the deadline.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        image = f"127.0.0.1:{hole.getsockname()[1]}/acme/api:v1"
        outcomes: list[tuple[PreflightResult, float]] = []

        async def one() -> None:
            started = time.monotonic()
            result = await run(lab_ca_file, image, timeout=SHORT_BUDGET_S)
            outcomes.append((result, time.monotonic() - started))

        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(one)
    assert len(outcomes) == 3
    for result, elapsed in outcomes:
        assert result.code is PreflightCode.TIMEOUT
        assert SHORT_BUDGET_S <= elapsed < SHORT_BUDGET_S + SLACK_S


async def test_a_shorter_budget_is_one_budget_too(fakes: Fakes, lab_ca_file: Path) -> None:
    silent = fakes.start(lambda seen: Reply(behaviour="silent"))
    result = await run(lab_ca_file, f"{silent.host}/acme/api:v1", timeout=0.5)
    assert result.code is PreflightCode.TIMEOUT
    assert "within 0.5 s" in result.message


# -- caps --


async def test_endless_token_body_is_capped(fakes: Fakes, lab_ca_file: Path) -> None:
    auth = fakes.start(
        lambda seen: Reply(200, [("Content-Type", "application/json")], b"", behaviour="endless")
    )
    registry = fakes.start(registry_with_realm(auth.url + "/token"))
    result = await run(
        lab_ca_file, f"{registry.host}/acme/api:v1", username=USER, password=PASSWORD, timeout=5.0
    )
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "more than 65536 bytes" in result.message


async def test_huge_announced_token_body_is_refused_before_reading(fakes: Fakes, lab_ca_file: Path) -> None:
    auth = fakes.start(lambda seen: Reply(200, [("Content-Length", str(10**12))], b""))
    registry = fakes.start(registry_with_realm(auth.url + "/token"))
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1", username=USER, password=PASSWORD)
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "announced" in result.message


async def test_endless_manifest_body_on_the_get_fallback_is_capped(fakes: Fakes, lab_ca_file: Path) -> None:
    def route(seen: Seen) -> Reply:
        if seen.path == "/v2/":
            return Reply.json(200, {})
        if seen.method == "HEAD":
            return Reply(200, [("Content-Type", OCI_MANIFEST), ("Content-Length", "0")])  # no digest header
        return Reply(200, [("Content-Type", OCI_MANIFEST)], b"", behaviour="endless")

    registry = fakes.start(route)
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1", timeout=5.0)
    assert result.code is PreflightCode.NETWORK_ERROR
    assert f"more than {4 * 1024 * 1024} bytes" in result.message


async def test_endless_error_body_is_capped(fakes: Fakes, lab_ca_file: Path) -> None:
    registry = fakes.start(
        lambda seen: Reply(500, [("Content-Type", "application/json")], b"", behaviour="endless")
    )
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1", timeout=5.0)
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "more than 65536 bytes" in result.message


async def test_compressed_answers_are_not_inflated(fakes: Fakes, lab_ca_file: Path) -> None:
    bomb = gzip.compress(b'{"token": "' + b"a" * 10_000_000 + b'"}')
    auth = fakes.start(lambda seen: Reply(200, [("Content-Encoding", "gzip")], bomb))
    registry = fakes.start(registry_with_realm(auth.url + "/token"))
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1", username=USER, password=PASSWORD)
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "gzip" in result.message
    assert auth.requests[0].headers["accept-encoding"] == "identity"


# -- redirects --


async def test_redirect_loop_on_the_registry(fakes: Fakes, lab_ca_file: Path) -> None:
    looping = fakes.start(lambda seen: Reply.redirect("/v2/"))
    result = await run(lab_ca_file, f"{looping.host}/acme/api:v1")
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "redirected more than 5 times" in result.message
    assert len(looping.requests) == 6


async def test_redirect_loop_on_the_token_server(fakes: Fakes, lab_ca_file: Path) -> None:
    auth = fakes.start(lambda seen: Reply.redirect("/token?again=1"))
    registry = fakes.start(registry_with_realm(auth.url + "/token"))
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1", username=USER, password=PASSWORD)
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "redirected" in result.message


async def test_token_realm_redirecting_to_a_blocked_address(fakes: Fakes, lab_ca_file: Path) -> None:
    blocked = fakes.start(lambda seen: Reply.json(200, {"token": "stolen"}), bind="127.0.0.2")
    auth = fakes.start(lambda seen: Reply.redirect(blocked.url + "/token"))
    registry = fakes.start(registry_with_realm(auth.url + "/token"))
    result = await run(
        lab_ca_file,
        f"{registry.host}/acme/api:v1",
        username=USER,
        password=PASSWORD,
        ssrf_allow=("127.0.0.1/32",),
    )
    assert result.code is PreflightCode.SSRF_BLOCKED
    assert "127.0.0.2" in result.message
    assert len(auth.requests) == 1
    assert blocked.connections == 0


async def test_token_realm_on_a_blocked_address(fakes: Fakes, lab_ca_file: Path) -> None:
    blocked = fakes.start(lambda seen: Reply.json(200, {"token": "stolen"}), bind="127.0.0.2")
    registry = fakes.start(registry_with_realm(blocked.url + "/token"))
    result = await run(
        lab_ca_file,
        f"{registry.host}/acme/api:v1",
        username=USER,
        password=PASSWORD,
        ssrf_allow=("127.0.0.1/32",),
    )
    assert result.code is PreflightCode.SSRF_BLOCKED
    assert blocked.connections == 0


async def test_registry_redirecting_to_a_blocked_address(fakes: Fakes, lab_ca_file: Path) -> None:
    blocked = fakes.start(lambda seen: Reply.json(200, {}), bind="127.0.0.2")
    registry = fakes.start(lambda seen: Reply.redirect(blocked.url + seen.target, status=307))
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1", ssrf_allow=("127.0.0.1/32",))
    assert result.code is PreflightCode.SSRF_BLOCKED
    assert blocked.connections == 0


async def test_plain_http_realm_is_refused_and_sees_nothing(fakes: Fakes, lab_ca_file: Path) -> None:
    plain = fakes.start(lambda seen: Reply.json(200, {"token": "t"}), tls=False)
    registry = fakes.start(registry_with_realm(plain.url + "/token"))
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1", username=USER, password=PASSWORD)
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "plain HTTP" in result.message
    assert plain.connections == 0


async def test_plain_http_realm_when_the_operator_allows_http(fakes: Fakes, lab_ca_file: Path) -> None:
    plain = fakes.start(lambda seen: Reply.json(200, {"token": "t"}), tls=False)
    registry = fakes.start(registry_with_realm(plain.url + "/token"))
    result = await run(
        lab_ca_file, f"{registry.host}/acme/api:v1", username=USER, password=PASSWORD, allow_http=True
    )
    assert result.ok, result
    assert plain.requests[0].basic == (USER, PASSWORD)


async def test_downgrade_redirect_to_plain_http_is_refused(fakes: Fakes, lab_ca_file: Path) -> None:
    plain = fakes.start(lambda seen: manifest_reply(seen), tls=False)

    def route(seen: Seen) -> Reply:
        if seen.path == "/v2/":
            return Reply.json(200, {})
        return Reply.redirect(plain.url + seen.target, status=307)

    registry = fakes.start(route)
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1")
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "only https" in result.message
    assert plain.connections == 0


async def test_credentials_do_not_follow_a_redirect_to_another_origin(
    fakes: Fakes, lab_ca_file: Path
) -> None:
    elsewhere = fakes.start(lambda seen: manifest_reply(seen), bind="127.0.0.3")

    def route(seen: Seen) -> Reply:
        if seen.basic != (USER, PASSWORD):
            return Reply.errors(401, "UNAUTHORIZED", "auth", [BASIC_CHALLENGE])
        if seen.path == "/v2/":
            return Reply.json(200, {})
        return Reply.redirect(elsewhere.url + seen.target, status=307)

    registry = fakes.start(route)
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1", username=USER, password=PASSWORD)
    assert result.ok, result
    assert result.digest == MANIFEST_DIGEST
    [seen] = elsewhere.requests
    assert "authorization" not in seen.headers


async def test_basic_credentials_do_not_follow_a_realm_redirect(fakes: Fakes, lab_ca_file: Path) -> None:
    other = fakes.start(lambda seen: Reply.json(200, {"token": "anon"}), bind="127.0.0.3")
    auth = fakes.start(lambda seen: Reply.redirect(other.url + seen.target))
    registry = fakes.start(registry_with_realm(auth.url + "/token"))
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1", username=USER, password=PASSWORD)
    assert result.ok, result
    assert auth.requests[0].basic == (USER, PASSWORD)
    assert "authorization" not in other.requests[0].headers
    # and the registry never sees the Basic credentials: only the token
    assert all(seen.basic is None for seen in registry.requests)


# -- challenges --


async def test_401_without_a_challenge_means_basic(fakes: Fakes, lab_ca_file: Path) -> None:
    def route(seen: Seen) -> Reply:
        if seen.basic != (USER, PASSWORD):
            return Reply(401, [], b"")
        if seen.path == "/v2/":
            return Reply.json(200, {})
        return manifest_reply(seen)

    registry = fakes.start(route)
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1", username=USER, password=PASSWORD)
    assert result.ok, result
    assert [seen.method for seen in registry.requests] == ["GET", "GET", "HEAD"]
    anonymous = await run(lab_ca_file, f"{registry.host}/acme/api:v1")
    assert anonymous.code is PreflightCode.AUTH_FAILED


async def test_only_unknown_schemes(fakes: Fakes, lab_ca_file: Path) -> None:
    registry = fakes.start(
        lambda seen: Reply(401, [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM")])
    )
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1", username=USER, password=PASSWORD)
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "negotiate, ntlm" in result.message


async def test_bearer_without_realm(fakes: Fakes, lab_ca_file: Path) -> None:
    registry = fakes.start(lambda seen: Reply(401, [("WWW-Authenticate", 'Bearer service="x"')]))
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1")
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "no realm" in result.message


async def test_malformed_challenge(fakes: Fakes, lab_ca_file: Path) -> None:
    registry = fakes.start(lambda seen: Reply(401, [("WWW-Authenticate", 'Bearer realm="https://x/t')]))
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1")
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "malformed WWW-Authenticate" in result.message


# -- statuses --


async def test_429_on_the_ping(fakes: Fakes, lab_ca_file: Path) -> None:
    registry = fakes.start(
        lambda seen: Reply.errors(429, "TOOMANYREQUESTS", "slow down", [("Retry-After", "30")])
    )
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1")
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "rate-limiting" in result.message
    assert "retry in 30 s" in result.message
    assert len(registry.requests) == 1  # no backoff fits in the budget


async def test_429_on_the_manifest(fakes: Fakes, lab_ca_file: Path) -> None:
    def route(seen: Seen) -> Reply:
        if seen.path == "/v2/":
            return Reply.json(200, {})
        return Reply(429, [])

    registry = fakes.start(route)
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1")
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "rate-limiting" in result.message


async def test_server_error_on_the_manifest(fakes: Fakes, lab_ca_file: Path) -> None:
    def route(seen: Seen) -> Reply:
        return Reply.json(200, {}) if seen.path == "/v2/" else Reply(503, [])

    registry = fakes.start(route)
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1")
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "answered 503" in result.message


@pytest.mark.parametrize("status", [403, 500, 302])
async def test_ping_statuses_that_are_not_a_registry(fakes: Fakes, lab_ca_file: Path, status: int) -> None:
    registry = fakes.start(
        lambda seen: Reply(status, [("Location", "https://127.0.0.1:1/")] if status == 302 else [])
    )
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1")
    if status == 302:  # followed to a closed port on the same host: that is not the registry's origin
        assert result.code in (PreflightCode.NETWORK_ERROR, PreflightCode.INVALID_URL)
    else:
        assert result.code is PreflightCode.INVALID_URL
        assert f"answered {status}" in result.message


# -- lying and broken answers --


async def test_announced_digest_differs_from_the_requested_one(fakes: Fakes, lab_ca_file: Path) -> None:
    def route(seen: Seen) -> Reply:
        if seen.path == "/v2/":
            return Reply.json(200, {})
        return Reply(200, [("Docker-Content-Digest", "sha256:" + "b" * 64), ("Content-Type", OCI_MANIFEST)])

    registry = fakes.start(route)
    result = await run(lab_ca_file, f"{registry.host}/acme/api@sha256:{'a' * 64}")
    assert result.code is PreflightCode.NETWORK_ERROR


async def test_head_405_falls_back_to_get(fakes: Fakes, lab_ca_file: Path) -> None:
    def route(seen: Seen) -> Reply:
        if seen.path == "/v2/":
            return Reply.json(200, {})
        if seen.method == "HEAD":
            return Reply(405, [])
        return manifest_reply(seen, digest_header=False)

    registry = fakes.start(route)
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1")
    assert result.ok, result
    assert result.digest == MANIFEST_DIGEST


async def test_head_without_digest_header_falls_back_to_get(fakes: Fakes, lab_ca_file: Path) -> None:
    def route(seen: Seen) -> Reply:
        if seen.path == "/v2/":
            return Reply.json(200, {})
        return manifest_reply(seen, digest_header=False)

    registry = fakes.start(route)
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1")
    assert result.digest == MANIFEST_DIGEST
    assert [seen.method for seen in registry.requests] == ["GET", "HEAD", "GET"]
    accept = registry.requests[1].headers["accept"]
    for media_type in (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ):
        assert media_type in accept


async def test_get_body_contradicting_its_digest_header(fakes: Fakes, lab_ca_file: Path) -> None:
    def route(seen: Seen) -> Reply:
        if seen.path == "/v2/":
            return Reply.json(200, {})
        if seen.method == "HEAD":
            return Reply(405, [])
        return Reply(200, [("Docker-Content-Digest", "sha256:" + "c" * 64)], MANIFEST)

    registry = fakes.start(route)
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1")
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "announced" in result.message


async def test_plain_http_server_behind_an_https_reference(fakes: Fakes, lab_ca_file: Path) -> None:
    plain = fakes.start(lambda seen: Reply.json(200, {}), tls=False)
    result = await run(lab_ca_file, f"{plain.host}/acme/api:v1")
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "TLS" in result.message


async def test_connection_closed_mid_body(fakes: Fakes, lab_ca_file: Path) -> None:
    def route(seen: Seen) -> Reply:
        if seen.path == "/v2/":
            # promises more than it sends, then hangs up
            return Reply(401, [("Content-Length", "1000")], b"short", behaviour="close")
        return Reply.json(200, {})

    registry = fakes.start(route)
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1")
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "broke" in result.message


async def test_token_server_that_refuses_connections(fakes: Fakes, lab_ca_file: Path) -> None:
    registry = fakes.start(registry_with_realm(f"https://127.0.0.1:{closed_port()}/token"))
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1", username=USER, password=PASSWORD)
    # the user's registry answered; the host it sent us to did not: not the user's URL at fault
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "could not connect" in result.message


async def test_bearer_without_realm_next_to_basic_uses_basic(fakes: Fakes, lab_ca_file: Path) -> None:
    def route(seen: Seen) -> Reply:
        if seen.basic != (USER, PASSWORD):
            return Reply(401, [("WWW-Authenticate", 'Bearer service="x", Basic realm="r"')])
        return Reply.json(200, {}) if seen.path == "/v2/" else manifest_reply(seen)

    registry = fakes.start(route)
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1", username=USER, password=PASSWORD)
    assert result.ok, result


async def test_ipv6_loopback_registry(fakes: Fakes, lab_ca_file: Path) -> None:
    registry = fakes.start(
        lambda seen: Reply.json(200, {}) if seen.path == "/v2/" else manifest_reply(seen), bind="::1"
    )
    assert registry.host.startswith("[::1]:")
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1", ssrf_allow=("::1/128",))
    assert result.ok, result
    blocked = await run(lab_ca_file, f"{registry.host}/acme/api:v1", ssrf_allow=("127.0.0.0/8",))
    assert blocked.code is PreflightCode.SSRF_BLOCKED


async def test_plain_http_registry_when_allowed(fakes: Fakes, lab_ca_file: Path) -> None:
    plain = fakes.start(
        lambda seen: Reply.json(200, {}) if seen.path == "/v2/" else manifest_reply(seen), tls=False
    )
    result = await run(lab_ca_file, f"{plain.host}/acme/api:v1", registry=plain.url, allow_http=True)
    assert result.ok, result
    refused = await run(lab_ca_file, f"{plain.host}/acme/api:v1", registry=plain.url)
    assert refused.code is PreflightCode.INVALID_URL
    assert plain.connections == 1


@pytest.mark.parametrize("status", [307, 308])
async def test_an_identity_token_is_never_replayed_to_another_origin(
    fakes: Fakes, lab_ca_file: Path, status: int
) -> None:
    """With the `<token>` user the password travels in a POST body, which 307/308 would replay."""
    collector = fakes.start(lambda seen: Reply.json(200, {"token": "t"}), bind="127.0.0.2")
    realm = fakes.start(lambda seen: Reply.redirect(collector.url + "/collect", status=status))

    def registry_route(seen: Seen) -> Reply:
        if seen.bearer:
            return manifest_reply(seen)
        return Reply.errors(401, "UNAUTHORIZED", "auth", [bearer_challenge(realm.url + "/token")])

    registry = fakes.start(registry_route)
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1", username="<token>", password=PASSWORD)
    assert realm.requests and realm.requests[0].method == "POST"
    assert collector.requests == []
    assert result.code is PreflightCode.NETWORK_ERROR
    assert "redirected" in result.message


NESTED_JSON = b"[" * 60_000  # fits under the 64 KiB cap, exhausts a recursive parser


async def test_deeply_nested_json_is_a_network_error_not_a_crash(fakes: Fakes, lab_ca_file: Path) -> None:
    realm = fakes.start(lambda seen: Reply(200, [("Content-Type", "application/json")], NESTED_JSON))
    registry = fakes.start(
        lambda seen: Reply.errors(401, "UNAUTHORIZED", "auth", [bearer_challenge(realm.url + "/token")])
    )
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1")
    assert result.code is PreflightCode.NETWORK_ERROR
    limited = fakes.start(lambda seen: Reply(429, [("Content-Type", "application/json")], NESTED_JSON))
    assert (await run(lab_ca_file, f"{limited.host}/acme/api:v1")).code is PreflightCode.NETWORK_ERROR


async def test_a_retry_after_that_is_not_ascii_digits_is_ignored(fakes: Fakes, lab_ca_file: Path) -> None:
    registry = fakes.start(lambda seen: Reply(429, [("Retry-After", "\xb2")], b""))
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1")
    assert result.code is PreflightCode.NETWORK_ERROR


# -- hostile hosts and ports in what the registry sends (redirects, realms) --


@pytest.fixture
def no_dns() -> ScriptedResolver:
    """Every case below is refused before any lookup: a resolver double that knows no name makes
    sure a regression could not send a DNS query for these names either."""
    return ScriptedResolver({})


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("https://xn--a-.example/v2/", "IDNA"),  # httpx raised IDNAError while following it
        ("https://xn--zz.example/v2/", "IDNA"),
        ("https://a.xn--zz/v2/", "internationalized"),
        ("https://0177.0.0.1/v2/", "malformed URL"),  # httpx: not a URL at all
        ("https://127.1/v2/", "IPv4"),
        ("https://127.0.0.1:99999/v2/", "port 99999"),  # sockets raised OverflowError
        ("https://127.0.0.1:65536/v2/", "port 65536"),
        ("https://127.0.0.1:0/v2/", "port 0"),
    ],
)
async def test_a_redirect_to_a_hostile_host_or_port_is_a_network_error(
    fakes: Fakes, lab_ca_file: Path, no_dns: ScriptedResolver, location: str, reason: str
) -> None:
    registry = fakes.start(lambda seen: Reply.redirect(location, status=307))
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1", resolver=no_dns)
    assert result.code is PreflightCode.NETWORK_ERROR, result
    assert reason in result.message
    assert "redirect" in result.message
    assert no_dns.calls == []


@pytest.mark.parametrize(
    ("location", "reason"),
    [("https://xn--a-.example/token", "IDNA"), ("https://127.0.0.1:99999/token", "port 99999")],
)
async def test_a_token_server_redirecting_to_a_hostile_host_or_port(
    fakes: Fakes, lab_ca_file: Path, no_dns: ScriptedResolver, location: str, reason: str
) -> None:
    auth = fakes.start(lambda seen: Reply.redirect(location))
    registry = fakes.start(registry_with_realm(auth.url + "/token"))
    result = await run(
        lab_ca_file, f"{registry.host}/acme/api:v1", username=USER, password=PASSWORD, resolver=no_dns
    )
    assert result.code is PreflightCode.NETWORK_ERROR, result
    assert reason in result.message
    assert no_dns.calls == []


@pytest.mark.parametrize(
    ("realm", "reason"),
    [
        ("https://xn--a-.example/token", "not a valid host name"),
        ("https://a.xn--zz/token", "internationalized"),
        ("https://127.0.0.1:99999/token", "port 99999"),
        ("https://127.0.0.1:65536/token", "port 65536"),
        ("https://127.0.0.1:0/token", "port 0"),
        ("https://999.1.1.1/token", "malformed"),
    ],
)
async def test_a_realm_on_a_hostile_host_or_port_is_a_network_error(
    fakes: Fakes, lab_ca_file: Path, no_dns: ScriptedResolver, realm: str, reason: str
) -> None:
    registry = fakes.start(registry_with_realm(realm))
    result = await run(
        lab_ca_file, f"{registry.host}/acme/api:v1", username=USER, password=PASSWORD, resolver=no_dns
    )
    assert result.code is PreflightCode.NETWORK_ERROR, result
    assert "token server URL" in result.message
    assert reason in result.message
    assert no_dns.calls == []


@pytest.mark.parametrize(("username", "password"), [("alice", "pa\ud800ss"), ("al\udcffice", PASSWORD)])
async def test_credentials_that_are_not_unicode_text_fail_as_auth_failed(
    fakes: Fakes, lab_ca_file: Path, username: str, password: str
) -> None:
    # A lone surrogate (from JSON escapes or surrogateescape'd stdin) cannot be encoded for Basic.
    registry = fakes.start(lambda seen: Reply.errors(401, "UNAUTHORIZED", "auth", [BASIC_CHALLENGE]))
    result = await run(lab_ca_file, f"{registry.host}/acme/api:v1", username=username, password=password)
    assert result.code is PreflightCode.AUTH_FAILED, result
    assert "\ud800" not in result.message and "\udcff" not in result.message
    assert registry.connections == 0  # refused before anything is sent
