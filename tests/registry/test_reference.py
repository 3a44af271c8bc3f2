"""Image references and registry locations: the reference tables, plus the gaps of docker-image-py."""

from __future__ import annotations

import pytest

from guara.registry import (
    DOCKER_HUB,
    ImageReference,
    InvalidReference,
    InvalidRegistry,
    RegistryLocation,
    parse_image_reference,
    parse_registry,
    same_registry,
)

DIGEST = "sha256:" + "a" * 64

# (input, registry, repository, tag, digest) — the visible sample of reference/registry-protocol.md
# first, then more from distribution/reference's own test table.
VALID = [
    ("busybox", "docker.io", "library/busybox", "latest", None),
    ("docker.io/busybox:1.36", "docker.io", "library/busybox", "1.36", None),
    ("index.docker.io/library/ubuntu-12.04-base", "docker.io", "library/ubuntu-12.04-base", "latest", None),
    ("test.com:8080/foo", "test.com:8080", "foo", "latest", None),
    ("test_com/foo", "docker.io", "test_com/foo", "latest", None),
    ("localhost/fooo/bar", "localhost", "fooo/bar", "latest", None),
    ("Foo/bar", "Foo", "bar", "latest", None),
    (f"gcr.io/library/busybox:latest@{DIGEST}", "gcr.io", "library/busybox", "latest", DIGEST),
    ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000", "repo", "tag", None),
    (
        "b.gcr.io/test.example.com/my-app:test.example.com",
        "b.gcr.io",
        "test.example.com/my-app",
        "test.example.com",
        None,
    ),
    # Docker Hub aliases all fold, and library/ is added to one-part names on Docker Hub only.
    ("registry-1.docker.io/busybox", "docker.io", "library/busybox", "latest", None),
    ("registry-1.docker.io/acme/api:v1", "docker.io", "acme/api", "v1", None),
    ("docker.io/library/busybox", "docker.io", "library/busybox", "latest", None),
    ("acme/api", "docker.io", "acme/api", "latest", None),
    ("ghcr.io/busybox", "ghcr.io", "busybox", "latest", None),
    ("localhost:5000/x", "localhost:5000", "x", "latest", None),
    ("127.0.0.1:5000/acme/api:v1", "127.0.0.1:5000", "acme/api", "v1", None),
    (f"busybox@{DIGEST}", "docker.io", "library/busybox", None, DIGEST),
    ("a/b/c/d:e", "docker.io", "a/b/c/d", "e", None),
    ("a.b/c.d__e--f/g_h", "a.b", "c.d__e--f/g_h", "latest", None),
    ("[::1]/repo", "[::1]", "repo", "latest", None),
    (
        "registry.gitlab.com/group/sub/project:v1.2.3",
        "registry.gitlab.com",
        "group/sub/project",
        "v1.2.3",
        None,
    ),
    (
        "harbor.example.com/library/nginx:1.25-alpine",
        "harbor.example.com",
        "library/nginx",
        "1.25-alpine",
        None,
    ),
    ("example.com/" + "a" * 255, "example.com", "a" * 255, "latest", None),
    ("x:" + "t" * 128, "docker.io", "library/x", "t" * 128, None),
    ("busybox@sha512:" + "b" * 128, "docker.io", "library/busybox", None, "sha512:" + "b" * 128),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),  # docker's reading, too
    # numeric hosts: a dotted quad is an address; numeric labels elsewhere are ordinary labels
    ("0.0.0.0:5000/x", "0.0.0.0:5000", "x", "latest", None),
    ("255.255.255.255/x", "255.255.255.255", "x", "latest", None),
    ("1.2.3.example/x", "1.2.3.example", "x", "latest", None),
    ("2130706433/x", "docker.io", "2130706433/x", "latest", None),  # no dot: a Docker Hub namespace
    # IDNA names written as valid A-labels
    ("xn--bcher-kva.example/x", "xn--bcher-kva.example", "x", "latest", None),
    ("registry.xn--55qx5d:5000/x", "registry.xn--55qx5d:5000", "x", "latest", None),
]

INVALID = [
    "https://github.com/docker/docker",
    "docker/Docker",
    "-docker",
    "docker///docker",
    "dock..er/docker",
    "[fc00::1]:5000",
    "example.com/" + "a" * 256,
    "",
    "UPPER",
    "busybox:",
    "busybox@sha256:abc",
    "busybox@sha256:" + "A" * 64,
    "busybox@md5:" + "a" * 32,
    "x:" + "t" * 129,
    "foo:bar:baz",
    "a" * 64,  # a bare image ID is not a name
    ":tag",
    "/busybox",
    "busybox/",
    "exa_mple.com/x",
    # gaps of docker-image-py closed by the wrapper
    "busybox\n",
    "gcr.io/x\n",
    " busybox",
    "busybox ",
    "bus\tybox",
    "busybox:lat\u0435st",  # Cyrillic e
    "[::::]/x",
    "[1]/x",
    "[zz::1]/x",
    "[fe80::1%eth0]/x",
    "example.com:99999/x",
    "example.com:0/x",
    "example.com:/x",
    ("a" * 64 + ".example.com/x"),  # a host label over 63 characters
    "x" * 2000,
    # a one-part Docker Hub name gets library/ before the 255 check
    "a" * 250,
    # a host ending in a number must be a plain dotted quad (httpx raised InvalidURL on these)
    "0177.0.0.1/x",
    "127.000.000.001/x",
    "999.1.1.1/x",
    "256.256.256.256/x",
    "1.2.3.04/x",
    "127.1/x",
    "1.2.3/x",
    "1.2.3.4.5/x",
    "0x7f.0.0.1/x",
    "example.0x1f/x",
    "example.123/x",
    # xn-- labels that are not IDNA (httpx raised IDNAError on these)
    "xn--zz.example/x",
    "a.xn--zz/x",
    "xn--bcher-kva.ab--c/x",
]


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest"), VALID)
def test_valid_references(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_image_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


@pytest.mark.parametrize("text", INVALID)
def test_invalid_references(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_image_reference(text)


def test_invalid_reference_is_a_value_error_with_a_readable_message() -> None:
    with pytest.raises(ValueError, match="lower-case"):
        parse_image_reference("acme/API")
    with pytest.raises(ValueError, match="255"):
        parse_image_reference("example.com/" + "a" * 256)


def test_digest_wins_over_tag_for_the_request() -> None:
    ref = parse_image_reference(f"gcr.io/library/busybox:latest@{DIGEST}")
    assert ref.reference == DIGEST
    assert parse_image_reference("busybox:1.36").reference == "1.36"


def test_api_host_and_str() -> None:
    hub = parse_image_reference("busybox")
    assert hub.api_host == "registry-1.docker.io"
    assert str(hub) == "docker.io/library/busybox:latest"
    other = parse_image_reference(f"127.0.0.1:5000/acme/api@{DIGEST}")
    assert other.api_host == "127.0.0.1:5000"
    assert str(other) == f"127.0.0.1:5000/acme/api@{DIGEST}"
    assert parse_image_reference(str(other)) == other


def test_with_reference_stays_in_the_repository() -> None:
    ref = parse_image_reference("ghcr.io/acme/api:v1")
    assert ref.with_reference("v2") == ImageReference("ghcr.io", "acme/api", "v2", None)
    assert ref.with_reference(DIGEST) == ImageReference("ghcr.io", "acme/api", None, DIGEST)
    with pytest.raises(InvalidReference):
        ref.with_reference("bad tag")


def test_long_hostile_input_is_refused_quickly_by_size() -> None:
    # distribution's grammar has nested repetitions; the wrapper never hands it more than 1024 chars
    with pytest.raises(InvalidReference, match="1024"):
        parse_image_reference("a-" * 50_000 + "!")


# -- registry locations --

REGISTRIES = [
    ("ghcr.io", "ghcr.io", "https"),
    ("gcr.io", "gcr.io", "https"),
    ("quay.io", "quay.io", "https"),
    ("docker.io", "docker.io", "https"),
    ("index.docker.io", "docker.io", "https"),
    ("registry-1.docker.io", "docker.io", "https"),
    ("https://registry-1.docker.io/", "docker.io", "https"),
    ("https://ghcr.io", "ghcr.io", "https"),
    ("HTTPS://ghcr.io/", "ghcr.io", "https"),
    ("harbor.example.com:8443", "harbor.example.com:8443", "https"),
    ("https://127.0.0.1:5000", "127.0.0.1:5000", "https"),
    ("[::1]:5000", "[::1]:5000", "https"),
    ("https://[2001:db8::1]", "[2001:db8::1]", "https"),
    ("registry.gitlab.com", "registry.gitlab.com", "https"),
    ("10.0.0.1:5000", "10.0.0.1:5000", "https"),  # an address; the network guard judges it later
    ("1e3.example", "1e3.example", "https"),
    ("https://xn--bcher-kva.example", "xn--bcher-kva.example", "https"),
]

BAD_REGISTRIES = [
    "",
    "http://ghcr.io",  # plain http is refused by default
    "ftp://ghcr.io",
    "ghcr.io/acme",
    "https://ghcr.io/v2/acme",
    "https://user:pass@ghcr.io",
    "user@ghcr.io",
    "https://ghcr.io?x=1",
    "https://ghcr.io#frag",
    "https://",
    "ghcr.io:99999",
    "ghcr.io:port",
    "[::::]:5000",
    "[fc00::1",
    "exa mple.com",
    "ex_ample.com",
    "-bad.example.com",
    "bücher.example",
    "ghcr.io\n",
    "0177.0.0.1",
    "https://127.000.000.001",
    "999.1.1.1:5000",
    "256.256.256.256",
    "1.2.3.04",
    "127.1",
    "2130706433",
    "0x7f000001",
    "1.2.3.4.",
    "xn--zz",
    "xn--a-.example",
    "xn--.example",
    "[fe80::1%eth0]:5000",
]


@pytest.mark.parametrize(("text", "host", "scheme"), REGISTRIES)
def test_parse_registry(text: str, host: str, scheme: str) -> None:
    location = parse_registry(text)
    assert (location.host, location.scheme) == (host, scheme)


@pytest.mark.parametrize("text", BAD_REGISTRIES)
def test_parse_registry_refuses(text: str) -> None:
    with pytest.raises(InvalidRegistry):
        parse_registry(text)


def test_plain_http_only_when_allowed() -> None:
    location = parse_registry("http://127.0.0.1:5000", allow_http=True)
    assert location == RegistryLocation(host="127.0.0.1:5000", scheme="http")
    assert location.base_url == "http://127.0.0.1:5000"
    assert str(location) == "http://127.0.0.1:5000"
    with pytest.raises(InvalidRegistry, match="plain-HTTP"):
        parse_registry("http://127.0.0.1:5000")


def test_registry_path_message_points_to_the_image_field() -> None:
    with pytest.raises(InvalidRegistry, match="without a path"):
        parse_registry("ghcr.io/acme")


def test_docker_hub_location() -> None:
    location = parse_registry("docker.io")
    assert location.host == DOCKER_HUB
    assert location.api_host == "registry-1.docker.io"
    assert location.base_url == "https://registry-1.docker.io"
    assert location.is_docker_hub


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("docker.io", "index.docker.io", True),
        ("registry-1.docker.io", "https://docker.io/", True),
        ("ghcr.io", "GHCR.IO", True),
        ("example.com", "example.com:443", True),
        ("example.com", "example.com:5000", False),
        ("ghcr.io", "gcr.io", False),
        ("ghcr.io", "ghcr.io/acme", False),  # unparseable is never the same
        ("[::1]:5000", "https://[::1]:5000", True),
    ],
)
def test_same_registry(a: str, b: str, same: bool) -> None:
    assert same_registry(a, b) is same
    assert same_registry(b, a) is same


def test_same_registry_against_references() -> None:
    assert same_registry(parse_image_reference("busybox"), "registry-1.docker.io")
    assert same_registry(parse_image_reference("Foo/bar"), "foo")
    assert not same_registry(parse_image_reference("acme/api"), "ghcr.io")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0177.0.0.1/x", "not a valid IPv4 address: write four numbers from 0 to 255 without leading zeros"),
        ("xn--zz.example/x", "not a valid internationalized host name"),
    ],
)
def test_hostile_hosts_are_explained(text: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message):
        parse_image_reference(text)
    with pytest.raises(InvalidRegistry, match=message):
        parse_registry(text.removesuffix("/x"))
