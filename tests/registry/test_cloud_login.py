"""Cloud keys exchanged for a registry login: ECR through moto, Google through the lab's token server,
then the real lab registries, all through the network guard and under the preflight's one deadline."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jwt
import pytest
from pydantic import SecretStr

from guara.registry import (
    AwsEcrKey,
    CloudKey,
    GoogleKey,
    InvalidCloudKey,
    PreflightCode,
    PreflightResult,
    RegistryOptions,
    ecr_region,
    preflight,
    suggested_kind,
)
from guara.registry.cloud import signed_assertion
from tests.lab import Lab
from tests.lab.cloud import ECR_TOKEN_PASSWORD, GOOGLE_ACCESS_TOKEN, GoogleTokenServer, MotoAws
from tests.registry.conftest import LOOPBACK_ONLY, Fakes
from tests.registry.fakes import Reply, closed_port

pytestmark = pytest.mark.anyio

REGION = "eu-west-1"
SHORT_BUDGET_S = 1.5


def options_for(
    ca_file: Path, *, endpoint: str | None = None, allow: tuple[str, ...] = LOOPBACK_ONLY, **kwargs: object
) -> RegistryOptions:
    return RegistryOptions.build(
        ca_file=ca_file,
        ssrf_allow=allow,
        aws_endpoint_url=endpoint,
        **kwargs,  # type: ignore[arg-type]
    )


async def run(image: str, key: CloudKey, options: RegistryOptions) -> PreflightResult:
    return await preflight(image, options=options, cloud_key=key)


def aws_key(
    moto_aws: MotoAws, *, nobody: bool = False, role: bool = False, secret: str | None = None
) -> AwsEcrKey:
    pair = moto_aws.nobody if nobody else moto_aws.puller
    return AwsEcrKey(
        access_key_id=pair.access_key_id,
        secret_access_key=SecretStr(secret or pair.secret_access_key),
        region=REGION,
        role_arn=moto_aws.role_arn if role else None,
    )


def assert_failed(result: PreflightResult, code: PreflightCode, *fragments: str) -> None:
    assert not result.ok
    assert result.code is code, result
    for fragment in fragments:
        assert fragment in result.message, result.message


# -- which hosts are cloud registries --


@pytest.mark.parametrize(
    ("host", "region", "kind"),
    [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "eu-west-1", "aws_ecr"),
        ("123456789012.dkr.ecr.us-gov-west-1.amazonaws.com", "us-gov-west-1", "aws_ecr"),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "cn-north-1", "aws_ecr"),
        ("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com", "us-east-1", "aws_ecr"),
        ("12345.dkr.ecr.eu-west-1.amazonaws.com", None, None),
        ("public.ecr.aws", None, None),
        ("gcr.io", None, "google"),
        ("eu.gcr.io", None, "google"),
        ("europe-west1-docker.pkg.dev", None, "google"),
        ("docker.pkg.dev.example.com", None, None),
        ("ghcr.io", None, None),
    ],
)
def test_cloud_registry_hosts(host: str, region: str | None, kind: str | None) -> None:
    assert ecr_region(host) == region
    assert suggested_kind(host) == kind


def test_aws_key_input_rules() -> None:
    with pytest.raises(InvalidCloudKey) as bad_id:
        AwsEcrKey("akia lower", SecretStr("x"))
    assert bad_id.value.field == "aws_access_key_id"
    with pytest.raises(InvalidCloudKey) as bad_region:
        AwsEcrKey("AKIAIOSFODNN7EXAMPLE", SecretStr("x"), region="Europe")
    assert bad_region.value.field == "aws_region"
    with pytest.raises(InvalidCloudKey) as bad_role:
        AwsEcrKey("AKIAIOSFODNN7EXAMPLE", SecretStr("x"), role_arn="role/pull")
    assert bad_role.value.field == "aws_role_arn"
    key = AwsEcrKey("AKIAIOSFODNN7EXAMPLE", SecretStr("x"))
    assert key.region_for("123456789012.dkr.ecr.eu-west-1.amazonaws.com") == "eu-west-1"
    with pytest.raises(InvalidCloudKey, match="names no AWS region"):
        key.region_for("registry.example.com")
    assert key.masked_id == "AKIA••••MPLE"
    assert "x" not in repr(key).replace("AKIAIOSFODNN7EXAMPLE", "")


# -- AWS ECR through moto --


async def test_ecr_keys_exchanged_for_a_login_the_registry_accepts(
    lab: Lab, moto_aws: MotoAws, lab_ca_file: Path
) -> None:
    seen: list[str] = []
    options = options_for(
        lab_ca_file, endpoint=moto_aws.url, on_secret=lambda s: seen.append(s.get_secret_value())
    )
    result = await run(lab.basic.ref("acme/api:v1"), aws_key(moto_aws), options)
    assert result.ok, result
    assert result.digest == lab.basic.images["acme/api:v1"]
    assert "credentials accepted" in result.message
    assert ECR_TOKEN_PASSWORD in seen  # handed to the application's scrubber


async def test_ecr_with_a_role_assumed_first(lab: Lab, moto_aws: MotoAws, lab_ca_file: Path) -> None:
    seen: list[str] = []
    options = options_for(
        lab_ca_file, endpoint=moto_aws.url, on_secret=lambda s: seen.append(s.get_secret_value())
    )
    result = await run(lab.basic.ref("acme/api:v1"), aws_key(moto_aws, role=True), options)
    assert result.ok, result
    assert len(seen) == 3  # the role's secret key and session token, then the registry password


async def test_ecr_wrong_secret_is_auth_failed(lab: Lab, moto_aws: MotoAws, lab_ca_file: Path) -> None:
    key = aws_key(moto_aws, secret="not-the-secret-key")
    result = await run(lab.basic.ref("acme/api:v1"), key, options_for(lab_ca_file, endpoint=moto_aws.url))
    assert_failed(
        result,
        PreflightCode.AUTH_FAILED,
        "AWS rejected the access key",
        key.masked_id,
        "SignatureDoesNotMatch",
    )
    assert "not-the-secret-key" not in result.message


async def test_ecr_key_without_permission_is_auth_failed(
    lab: Lab, moto_aws: MotoAws, lab_ca_file: Path
) -> None:
    result = await run(
        lab.basic.ref("acme/api:v1"),
        aws_key(moto_aws, nobody=True),
        options_for(lab_ca_file, endpoint=moto_aws.url),
    )
    assert_failed(
        result,
        PreflightCode.AUTH_FAILED,
        "AWS denied the access key",
        "ecr:GetAuthorizationToken",
        "AccessDenied",
    )


async def test_ecr_role_the_key_may_not_assume_is_auth_failed(
    lab: Lab, moto_aws: MotoAws, lab_ca_file: Path
) -> None:
    key = aws_key(moto_aws, nobody=True, role=True)
    result = await run(lab.basic.ref("acme/api:v1"), key, options_for(lab_ca_file, endpoint=moto_aws.url))
    assert_failed(result, PreflightCode.AUTH_FAILED, "assume the role", moto_aws.role_arn)


async def test_ecr_without_a_region_for_a_host_that_names_none(
    lab: Lab, moto_aws: MotoAws, lab_ca_file: Path
) -> None:
    pair = moto_aws.puller
    key = AwsEcrKey(pair.access_key_id, SecretStr(pair.secret_access_key))
    result = await run(lab.basic.ref("acme/api:v1"), key, options_for(lab_ca_file, endpoint=moto_aws.url))
    assert_failed(result, PreflightCode.AUTH_FAILED, "names no AWS region", "aws_region")


async def test_ecr_endpoint_that_hangs_times_out_on_the_one_deadline(
    lab: Lab, moto_aws: MotoAws, lab_ca_file: Path, fakes: Fakes
) -> None:
    silent = fakes.start(lambda seen: Reply(behaviour="silent"))
    options = options_for(lab_ca_file, endpoint=f"https://{silent.host}/", timeout=SHORT_BUDGET_S)
    result = await run(lab.basic.ref("acme/api:v1"), aws_key(moto_aws), options)
    assert_failed(result, PreflightCode.TIMEOUT, "AWS's token endpoint did not answer within 1.5 s")


async def test_ecr_endpoint_on_a_blocked_address_is_ssrf_blocked(
    lab: Lab, moto_aws: MotoAws, lab_ca_file: Path, fakes: Fakes
) -> None:
    elsewhere = fakes.start(lambda seen: Reply(status=200), bind="127.0.0.2")
    options = options_for(lab_ca_file, endpoint=f"https://{elsewhere.host}/", allow=("127.0.0.1/32",))
    result = await run(lab.basic.ref("acme/api:v1"), aws_key(moto_aws), options)
    assert_failed(result, PreflightCode.SSRF_BLOCKED, "127.0.0.2")
    assert elsewhere.connections == 0


async def test_ecr_endpoint_that_is_down_is_network_error(
    lab: Lab, moto_aws: MotoAws, lab_ca_file: Path
) -> None:
    options = options_for(lab_ca_file, endpoint=f"http://127.0.0.1:{closed_port()}/")
    result = await run(lab.basic.ref("acme/api:v1"), aws_key(moto_aws), options)
    assert_failed(result, PreflightCode.NETWORK_ERROR, "AWS's token endpoint is unreachable")


async def test_ecr_endpoint_answering_junk_is_network_error(
    lab: Lab, moto_aws: MotoAws, lab_ca_file: Path, fakes: Fakes
) -> None:
    junk = fakes.start(lambda seen: Reply.json(200, {"authorizationData": [{"authorizationToken": "%%"}]}))
    options = options_for(lab_ca_file, endpoint=f"https://{junk.host}/")
    result = await run(lab.basic.ref("acme/api:v1"), aws_key(moto_aws), options)
    assert_failed(result, PreflightCode.NETWORK_ERROR, "no usable authorization token")
    [request] = junk.requests
    assert request.headers["x-amz-target"].endswith("GetAuthorizationToken")
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")


# -- Google through the lab's token server --


async def test_google_key_exchanged_for_a_token_the_registry_accepts(
    lab: Lab, google_token_server: GoogleTokenServer, lab_ca_file: Path
) -> None:
    google_token_server.reset_requests()
    seen: list[str] = []
    options = options_for(lab_ca_file, on_secret=lambda s: seen.append(s.get_secret_value()))
    key = GoogleKey.parse(SecretStr(google_token_server.json_key()))
    result = await run(lab.token.ref("acme/api:v1"), key, options)
    assert result.ok, result
    assert result.digest == lab.token.images["acme/api:v1"]
    [request] = google_token_server.requests
    assert request.status == 200
    assert request.client_email == google_token_server.client_email
    assert GOOGLE_ACCESS_TOKEN in seen


async def test_google_key_the_server_does_not_know_is_auth_failed(
    lab: Lab, google_token_server: GoogleTokenServer, lab_ca_file: Path
) -> None:
    key = GoogleKey.parse(google_token_server.json_key(other_key=True))
    result = await run(lab.token.ref("acme/api:v1"), key, options_for(lab_ca_file))
    assert_failed(
        result,
        PreflightCode.AUTH_FAILED,
        "rejected the service account key",
        google_token_server.client_email,
    )


async def test_google_token_endpoint_on_a_blocked_address_is_ssrf_blocked(
    lab: Lab, google_token_server: GoogleTokenServer, lab_ca_file: Path, fakes: Fakes
) -> None:
    elsewhere = fakes.start(lambda seen: Reply.json(200, {"access_token": "x"}), bind="127.0.0.2")
    key = GoogleKey.parse(google_token_server.json_key(token_uri=f"https://{elsewhere.host}/token"))
    result = await run(lab.token.ref("acme/api:v1"), key, options_for(lab_ca_file, allow=("127.0.0.1/32",)))
    assert_failed(result, PreflightCode.SSRF_BLOCKED, "127.0.0.2")
    assert elsewhere.connections == 0


async def test_google_token_endpoint_that_hangs_times_out(
    lab: Lab, google_token_server: GoogleTokenServer, lab_ca_file: Path, fakes: Fakes
) -> None:
    silent = fakes.start(lambda seen: Reply(behaviour="silent"))
    key = GoogleKey.parse(google_token_server.json_key(token_uri=f"https://{silent.host}/token"))
    result = await run(lab.token.ref("acme/api:v1"), key, options_for(lab_ca_file, timeout=SHORT_BUDGET_S))
    assert_failed(result, PreflightCode.TIMEOUT, "Google's token endpoint did not answer")


async def test_google_plain_http_token_uri_is_refused(
    lab: Lab, google_token_server: GoogleTokenServer, lab_ca_file: Path
) -> None:
    key = GoogleKey.parse(google_token_server.json_key(token_uri=f"http://127.0.0.1:{closed_port()}/token"))
    result = await run(lab.token.ref("acme/api:v1"), key, options_for(lab_ca_file))
    assert_failed(result, PreflightCode.NETWORK_ERROR, "only https")


def test_google_assertion_is_verifiable_with_the_public_half(google_token_server: GoogleTokenServer) -> None:
    key = GoogleKey.parse(google_token_server.json_key())
    assertion = signed_assertion(key)
    assert google_token_server.verify(assertion) == google_token_server.client_email
    header = jwt.get_unverified_header(assertion)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": google_token_server.private_key_id}


# -- mangled keys --


def test_google_key_kept_byte_exact(google_token_server: GoogleTokenServer) -> None:
    text = google_token_server.json_key()
    key = GoogleKey.parse(text)
    assert key.json_key.get_secret_value() == text
    assert key.client_email == google_token_server.client_email
    assert "PRIVATE" not in repr(key)


def _mangled(google_token_server: GoogleTokenServer) -> dict[str, str]:
    text = google_token_server.json_key()
    document = json.loads(text)
    return {
        # A chat tool or an env file turned the \n escapes into real line breaks.
        "real line breaks": text.replace("\\n", "\n"),
        # A shell doubled the escapes: the PEM holds a literal backslash-n.
        "doubled escapes": text.replace("\\n", "\\\\n"),
        "not an object": json.dumps([document]),
        "not a service account": json.dumps({**document, "type": "authorized_user"}),
        "no email": json.dumps({k: v for k, v in document.items() if k != "client_email"}),
        "token uri with credentials": json.dumps({**document, "token_uri": "https://u:p@example.com/token"}),
        "truncated": text[: len(text) // 2],
        "empty": "  ",
        "base64 instead of JSON": base64.b64encode(text.encode()).decode(),
    }


@pytest.mark.parametrize(
    "case",
    [
        "real line breaks",
        "doubled escapes",
        "not an object",
        "not a service account",
        "no email",
        "token uri with credentials",
        "truncated",
        "empty",
        "base64 instead of JSON",
    ],
)
def test_mangled_google_keys_are_refused_clearly(google_token_server: GoogleTokenServer, case: str) -> None:
    text = _mangled(google_token_server)[case]
    with pytest.raises(InvalidCloudKey) as refused:
        GoogleKey.parse(SecretStr(text))
    assert refused.value.field == "google_json_key"
    assert str(refused.value).startswith("the Google JSON key")
    assert "PRIVATE KEY" not in str(refused.value)
