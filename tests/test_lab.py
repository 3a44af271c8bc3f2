"""The registry lab is what it says: real registries, real auth, the images it claims to hold."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import ssl
import tarfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import jwt
import psutil
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.lab import (
    ALICE_PASSWORD,
    BASIC_REALM,
    BASIC_USERS,
    MANIFEST_ACCEPT,
    TOKEN_ISSUER_NAME,
    TOKEN_SERVICE,
    Access,
    Lab,
    LabRegistry,
    LabServer,
    LabStartError,
    parse_scope,
    start_lab,
)
from tests.lab.images import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

HttpsServerFactory = Callable[..., LabServer]


def _client(lab: Lab, registry: LabRegistry, **kwargs: Any) -> httpx.Client:
    return httpx.Client(
        base_url=registry.url, verify=lab.ssl_context(), trust_env=False, timeout=10, **kwargs
    )


def _challenge_params(header: str) -> dict[str, str]:
    # Enough for the lab's own headers; guara's real parser lives in guara.registry.
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def _head_manifest(lab: Lab, repo_ref: str, token: str | None) -> httpx.Response:
    repository, _, reference = repo_ref.rpartition(":")
    headers = {"Accept": MANIFEST_ACCEPT}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    with _client(lab, lab.token) as client:
        return client.head(f"/v2/{repository}/manifests/{reference}", headers=headers)


# -- /v2/ of each registry ---------------------------------------------------------------------------


def test_anonymous_registry_answers_v2_without_credentials(lab: Lab) -> None:
    with lab.anonymous.client() as client:
        response = client.get("/v2/")
    assert response.status_code == 200
    assert lab.anonymous.url == f"https://127.0.0.1:{lab.anonymous.port}"
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"


def test_basic_registry_challenges_with_basic(lab: Lab) -> None:
    with _client(lab, lab.basic) as client:
        response = client.get("/v2/")
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Basic ")
    assert _challenge_params(challenge)["realm"] == BASIC_REALM


@pytest.mark.parametrize("username", sorted(BASIC_USERS))
def test_basic_registry_accepts_each_user(lab: Lab, username: str) -> None:
    with _client(lab, lab.basic, auth=(username, lab.basic.users[username])) as client:
        response = client.get("/v2/")
    assert response.status_code == 200


def test_basic_registry_accepts_the_hard_password_and_rejects_a_near_miss(lab: Lab) -> None:
    assert lab.basic.users["alice"] == ALICE_PASSWORD
    for piece in (":", '"', ";", "$(", " ", "ñ", "密码"):
        assert piece in ALICE_PASSWORD
    with _client(lab, lab.basic, auth=("alice", ALICE_PASSWORD)) as client:
        assert client.get("/v2/").status_code == 200
    with _client(lab, lab.basic, auth=("alice", ALICE_PASSWORD[:-1])) as client:
        assert client.get("/v2/").status_code == 401
    with _client(lab, lab.basic, auth=("mallory", ALICE_PASSWORD)) as client:
        assert client.get("/v2/").status_code == 401


def test_token_registry_challenges_with_the_lab_realm(lab: Lab) -> None:
    with _client(lab, lab.token) as client:
        response = client.get("/v2/")
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    params = _challenge_params(challenge)
    assert params["realm"] == lab.issuer.realm == lab.token.realm
    assert params["service"] == TOKEN_SERVICE == lab.token.service
    assert lab.issuer.realm.startswith("https://127.0.0.1:")


# -- tokens and manifests ----------------------------------------------------------------------------


def test_alice_token_reads_the_manifest_with_the_recorded_digest(lab: Lab) -> None:
    token = lab.issuer.fetch_token(
        ["repository:acme/api:pull"], username="alice", password=lab.token.users["alice"]
    )
    response = _head_manifest(lab, "acme/api:v1", token)
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == lab.token.images["acme/api:v1"]
    assert response.headers["Content-Type"] == OCI_MANIFEST


def test_bob_token_is_refused_with_insufficient_scope(lab: Lab) -> None:
    token = lab.issuer.fetch_token(["repository:acme/api:pull"], username="bob", password="bob-password")
    response = _head_manifest(lab, "acme/api:v1", token)
    assert response.status_code == 401
    params = _challenge_params(response.headers["WWW-Authenticate"])
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "repository:acme/api:pull"


def test_anonymous_token_reads_public_but_not_private(lab: Lab) -> None:
    public_token = lab.issuer.fetch_token(["repository:public/hello:pull"])
    response = _head_manifest(lab, "public/hello:latest", public_token)
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == lab.token.images["public/hello:latest"]

    private_token = lab.issuer.fetch_token(["repository:acme/api:pull"])
    refused = _head_manifest(lab, "acme/api:v1", private_token)
    assert refused.status_code == 401
    assert _challenge_params(refused.headers["WWW-Authenticate"])["error"] == "insufficient_scope"


def test_no_token_is_refused(lab: Lab) -> None:
    assert _head_manifest(lab, "public/hello:latest", None).status_code == 401


def test_missing_tag_is_404_in_every_registry(lab: Lab) -> None:
    token = lab.issuer.fetch_token(
        ["repository:acme/api:pull"], username="alice", password=lab.token.users["alice"]
    )
    assert _head_manifest(lab, "acme/api:no-such-tag", token).status_code == 404
    with _client(lab, lab.anonymous) as client:
        response = client.get("/v2/acme/api/manifests/no-such-tag", headers={"Accept": MANIFEST_ACCEPT})
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    with _client(lab, lab.basic, auth=("robot$ci", lab.basic.users["robot$ci"])) as client:
        head = client.head("/v2/acme/api/manifests/no-such-tag", headers={"Accept": MANIFEST_ACCEPT})
    assert head.status_code == 404


def test_every_registry_holds_acme_api_v1(lab: Lab) -> None:
    for registry, auth in (
        (lab.anonymous, None),
        (lab.basic, ("org+robot", lab.basic.users["org+robot"])),
    ):
        with _client(lab, registry, auth=auth) as client:
            response = client.head("/v2/acme/api/manifests/v1", headers={"Accept": MANIFEST_ACCEPT})
        assert response.status_code == 200, registry.name
        assert response.headers["Docker-Content-Digest"] == registry.images["acme/api:v1"]
    assert lab.anonymous.ref("acme/api:v1") == f"{lab.anonymous.host}/acme/api:v1"


def test_image_blobs_are_consistent(lab: Lab) -> None:
    with _client(lab, lab.anonymous) as client:
        manifest_bytes = client.get("/v2/acme/api/manifests/v1", headers={"Accept": MANIFEST_ACCEPT}).content
        manifest = json.loads(manifest_bytes)
        config = client.get(f"/v2/acme/api/blobs/{manifest['config']['digest']}").json()
        layer = client.get(f"/v2/acme/api/blobs/{manifest['layers'][0]['digest']}").content
    assert "sha256:" + hashlib.sha256(manifest_bytes).hexdigest() == lab.anonymous.images["acme/api:v1"]
    tar_bytes = gzip.decompress(layer)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as archive:
        assert archive.getnames() == ["etc/lab-image"]


def test_multi_platform_index_has_both_platforms(lab: Lab) -> None:
    token = lab.issuer.fetch_token(
        ["repository:acme/multi:pull"], username="alice", password=lab.token.users["alice"]
    )
    headers = {"Accept": MANIFEST_ACCEPT, "Authorization": f"Bearer {token}"}
    with _client(lab, lab.token) as client:
        response = client.get("/v2/acme/multi/manifests/v1", headers=headers)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == OCI_INDEX
        assert response.headers["Docker-Content-Digest"] == lab.token.images["acme/multi:v1"]
        index = response.json()
        found = {
            f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in index["manifests"]
        }
        assert found == lab.token.platforms["acme/multi:v1"]
        assert set(found) == {"linux/amd64", "linux/arm64"}
        architectures = set()
        for digest in found.values():
            child = client.get(f"/v2/acme/multi/manifests/{digest}", headers=headers).json()
            config = client.get(f"/v2/acme/multi/blobs/{child['config']['digest']}", headers=headers).json()
            architectures.add(config["architecture"])
    assert architectures == {"amd64", "arm64"}


def test_push_image_adds_a_tag_and_returns_its_digest(lab: Lab) -> None:
    digest = lab.basic.push_image("acme/api:test-push", files={"hello.txt": b"a new tag\n"})
    assert lab.basic.images["acme/api:test-push"] == digest
    assert digest != lab.basic.images["acme/api:v1"]
    with _client(lab, lab.basic, auth=("alice", ALICE_PASSWORD)) as client:
        response = client.head("/v2/acme/api/manifests/test-push", headers={"Accept": MANIFEST_ACCEPT})
    assert response.headers["Docker-Content-Digest"] == digest


def test_push_image_in_docker_format(lab: Lab) -> None:
    digest = lab.token.push_image("acme/legacy:v1", manifest_format="docker")
    token = lab.issuer.fetch_token(
        ["repository:acme/legacy:pull"], username="alice", password=lab.token.users["alice"]
    )
    response = _head_manifest(lab, "acme/legacy:v1", token)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == DOCKER_MANIFEST
    assert response.headers["Docker-Content-Digest"] == digest


# -- the issuer --------------------------------------------------------------------------------------


def _token_get(lab: Lab, *, params: list[tuple[str, str]], auth: tuple[str, str] | None) -> httpx.Response:
    with httpx.Client(verify=lab.ssl_context(), trust_env=False, timeout=10) as client:
        return client.get(lab.issuer.realm, params=tuple(params), auth=auth)


def test_issuer_answers_the_spec_shape_and_signs_with_x5c(lab: Lab) -> None:
    response = _token_get(
        lab,
        params=[
            ("service", TOKEN_SERVICE),
            ("scope", "repository:acme/api:pull,push,delete"),
            ("account", "alice"),
        ],
        auth=("alice", ALICE_PASSWORD),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == lab.issuer.expires_in
    assert body["issued_at"].endswith("Z")
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "RS256"
    certificate = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    public_key = certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    claims = jwt.decode(body["token"], public_key, algorithms=["RS256"], audience=TOKEN_SERVICE)
    assert claims["iss"] == TOKEN_ISSUER_NAME
    assert claims["sub"] == "alice"
    assert {"exp", "nbf", "iat", "jti"} <= set(claims)
    # The intersection of requested and allowed: no delete for alice.
    assert claims["access"] == [{"type": "repository", "name": "acme/api", "actions": ["pull", "push"]}]


def test_issuer_grants_only_the_intersection(lab: Lab) -> None:
    requested = [
        parse_scope(s)
        for s in ("repository:acme/api:pull", "repository:other/x:pull", "repository:public/a:push,pull")
    ]
    assert lab.issuer.grant("alice", requested) == (
        Access("repository", "acme/api", ("pull",)),
        Access("repository", "public/a", ("pull",)),
    )
    assert lab.issuer.grant("bob", requested) == (Access("repository", "public/a", ("pull",)),)
    assert lab.issuer.grant(None, [parse_scope("repository:acme/api:pull")]) == ()
    assert len(lab.issuer.grant("admin", requested)) == 3
    assert parse_scope("repository:127.0.0.1:5000/acme/api:pull") == Access(
        "repository", "127.0.0.1:5000/acme/api", ("pull",)
    )


@pytest.mark.parametrize(
    "auth",
    [("alice", "wrong"), ("nobody", "bob-password"), ("bob", "")],
    ids=["wrong-password", "unknown-user", "empty-password"],
)
def test_issuer_refuses_bad_credentials(lab: Lab, auth: tuple[str, str]) -> None:
    response = _token_get(
        lab, params=[("service", TOKEN_SERVICE), ("scope", "repository:acme/api:pull")], auth=auth
    )
    assert response.status_code == 401
    assert "token" not in response.text


def test_issuer_refuses_a_wrong_service(lab: Lab) -> None:
    response = _token_get(
        lab, params=[("service", "elsewhere"), ("scope", "repository:acme/api:pull")], auth=None
    )
    assert response.status_code == 400


def test_issuer_post_answers_404_by_default_and_oauth_when_enabled(lab: Lab) -> None:
    form = {
        "grant_type": "password",
        "username": "alice",
        "password": ALICE_PASSWORD,
        "service": TOKEN_SERVICE,
        "scope": "repository:acme/api:pull",
        "client_id": "guara-tests",
    }
    with httpx.Client(verify=lab.ssl_context(), trust_env=False, timeout=10) as client:
        assert client.post(lab.issuer.realm, data=form).status_code == 404
        lab.issuer.oauth_post = True
        try:
            answered = client.post(lab.issuer.realm, data=form)
            refused = client.post(lab.issuer.realm, data={**form, "password": "wrong"})
        finally:
            lab.issuer.oauth_post = False
    assert answered.status_code == 200
    assert answered.json()["scope"] == "repository:acme/api:pull"
    assert _head_manifest(lab, "acme/api:v1", answered.json()["access_token"]).status_code == 200
    assert refused.status_code == 401


def test_issuer_records_requests_without_passwords(lab: Lab) -> None:
    before = len(lab.issuer.requests)
    lab.issuer.fetch_token(["repository:acme/api:pull"], username="alice", password=ALICE_PASSWORD)
    lab.issuer.fetch_token(["repository:public/hello:pull"])
    with httpx.Client(verify=lab.ssl_context(), trust_env=False, timeout=10) as client:
        client.post(
            lab.issuer.realm, data={"grant_type": "password", "username": "bob", "password": "bob-password"}
        )
    recorded = lab.issuer.requests[before:]
    assert [(r.method, r.path, r.has_authorization, r.username, r.status) for r in recorded] == [
        ("GET", "/token", True, "alice", 200),
        ("GET", "/token", False, None, 200),
        ("POST", "/token", False, "bob", 404),
    ]
    assert recorded[0].params["scope"] == ("repository:acme/api:pull",)
    assert recorded[0].granted == (Access("repository", "acme/api", ("pull",)),)
    dump = repr(recorded)
    assert ALICE_PASSWORD not in dump
    assert "bob-password" not in dump


# -- helpers for fake servers ------------------------------------------------------------------------


class _TeapotHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"teapot"
        self.send_response(418)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


async def _asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_https_server_serves_a_handler_with_a_lab_certificate(
    lab_https_server: HttpsServerFactory, lab_ca_file: Path, host: str
) -> None:
    server = lab_https_server(_TeapotHandler, host=host)
    assert server.url.startswith("https://")
    with httpx.Client(
        verify=ssl.create_default_context(cafile=str(lab_ca_file)), trust_env=False, timeout=10
    ) as client:
        response = client.get(server.url + "/anything")
    assert (response.status_code, response.text) == (418, "teapot")


def test_https_server_serves_an_asgi_app(lab_https_server: HttpsServerFactory, lab_ca_file: Path) -> None:
    server = lab_https_server(_asgi_app)
    with httpx.Client(
        verify=ssl.create_default_context(cafile=str(lab_ca_file)), trust_env=False, timeout=10
    ) as client:
        response = client.get(server.url + "/v2/")
    assert (response.status_code, response.text) == (200, "/v2/")
    server.stop()
    with (
        httpx.Client(
            verify=ssl.create_default_context(cafile=str(lab_ca_file)), trust_env=False, timeout=10
        ) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.get(server.url + "/v2/")


def test_https_server_is_not_trusted_without_the_lab_ca(lab_https_server: HttpsServerFactory) -> None:
    server = lab_https_server(_TeapotHandler)
    with httpx.Client(trust_env=False, timeout=10) as client, pytest.raises(httpx.ConnectError):
        client.get(server.url)


def test_https_server_refuses_non_loopback(lab_https_server: HttpsServerFactory) -> None:
    with pytest.raises(ValueError, match="loopback"):
        lab_https_server(_TeapotHandler, host="0.0.0.0")


# -- lifecycle -----------------------------------------------------------------------------------------


def _live_children() -> dict[int, str]:
    children = {}
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                children[child.pid] = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
    return children


def test_start_lab_leaves_no_process_behind(lab: Lab, tmp_path: Path) -> None:
    # `lab` only for its skip-or-fail rule; this test starts a second, private lab.
    before = set(_live_children())
    with start_lab(tmp_path) as private_lab:
        during = {pid: cmd for pid, cmd in _live_children().items() if pid not in before}
        assert len([cmd for cmd in during.values() if "docker-registry" in cmd]) == 3
        assert all(registry.images for registry in private_lab.registries)
    assert not any(psutil.pid_exists(pid) for pid in during)


def test_a_failed_start_raises_and_cleans_up(lab: Lab, tmp_path: Path) -> None:
    before = set(_live_children())
    with (
        pytest.raises(LabStartError, match="exited"),
        start_lab(tmp_path, registry_binary=Path("/bin/false")),
    ):
        pytest.fail("the lab must not start")
    assert set(_live_children()) == before
