"""Cloud registries that log themselves in: a long-lived cloud key exchanged for a short-lived login.

- ``AwsEcrKey``: an access key (and optionally a role to assume with STS first) → ECR
  ``GetAuthorizationToken`` (SigV4-signed with botocore's signer) → ``AWS`` + a 12-hour password.
- ``GoogleKey``: a service-account JSON key → an RS256 JWT assertion → the OAuth2 JWT-bearer grant
  at the key's ``token_uri`` → ``oauth2accesstoken`` + a one-hour access token.

The exchange runs at each use, inside the operation that needs it (``run_operation``), so it shares
its one deadline; every request goes through the network guard and ``BoundedTransport`` like the
registry's own, and its errors are translated at the same seam. The short-lived secrets are handed
to ``RegistryOptions.on_secret`` (the application scrubs them from logs) and never kept.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr

from guara.netguard import guarded_transport

from .auth import Credentials
from .deadline import Deadline
from .errors import CloudLoginFailed, CloudLoginRejected, InvalidCloudKey, InvalidCredentials
from .hosts import url_problem
from .options import RegistryOptions
from .responses import load_json, printable
from .session import USER_AGENT, translate_errors
from .transport import SECRET_BODY_ORIGIN, BoundedTransport, origin_of

CloudKind = Literal["aws_ecr", "google"]

ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
ECR_USERNAME = "AWS"
GOOGLE_USERNAME = "oauth2accesstoken"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Real keys are about 2.3 KB; with the password it must fit in the 256 KiB body limit, escaped.
MAX_JSON_KEY_CHARS = 16 * 1024
ASSERTION_LIFETIME_S = 3600
ROLE_SESSION_NAME = "guara"

_ECR_HOST = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?$"
)
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d+$")
_ACCESS_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
# What AWS answers for a key it does not know, a wrong secret or an expired session.
_AWS_KEY_ERRORS = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "ExpiredTokenException",
        "ExpiredToken",
        "MissingAuthenticationToken",
        "AuthFailure",
    }
)


# -- which registries are cloud registries -----------------------------------------------------------


def ecr_region(host: str) -> str | None:
    """The region an ECR registry host names (``<account>.dkr.ecr.<region>.amazonaws.com``), else None."""
    match = _ECR_HOST.match(host.lower().split(":", 1)[0])
    return match.group("region") if match else None


def suggested_kind(host: str) -> CloudKind | None:
    """The credential kind a registry host suggests: ECR and Google's registries; None for others."""
    name = host.lower().split(":", 1)[0]
    if ecr_region(name) is not None:
        return "aws_ecr"
    if name == "gcr.io" or name.endswith(".gcr.io") or name.endswith("-docker.pkg.dev"):
        return "google"
    return None


# -- keys ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AwsEcrKey:
    """An AWS access key for ECR. ``region`` None: taken from the registry host at exchange time."""

    access_key_id: str
    secret_access_key: SecretStr = field(repr=False)
    region: str | None = None
    role_arn: str | None = None

    def __post_init__(self) -> None:
        if not _ACCESS_KEY_ID.match(self.access_key_id):
            raise InvalidCloudKey(
                "the AWS access key id must be 16 to 128 upper-case letters and digits (like AKIA…)",
                field="aws_access_key_id",
            )
        secret = self.secret_access_key.get_secret_value()
        if not secret or len(secret) > 256 or not secret.isascii() or not secret.isprintable():
            raise InvalidCloudKey(
                "the AWS secret access key must be 1 to 256 printable ASCII characters",
                field="aws_secret_access_key",
            )
        if self.region is not None and not _REGION.match(self.region):
            raise InvalidCloudKey(
                f"{self.region!r} is not an AWS region (like eu-west-1)", field="aws_region"
            )
        if self.role_arn is not None and not _ROLE_ARN.match(self.role_arn):
            raise InvalidCloudKey(
                "the role ARN must look like arn:aws:iam::123456789012:role/name", field="aws_role_arn"
            )

    def region_for(self, registry_host: str) -> str:
        """The given region, else the registry host's; InvalidCloudKey when neither names one."""
        region = self.region or ecr_region(registry_host)
        if region is None:
            raise InvalidCloudKey(
                f"the registry host {registry_host} names no AWS region: give the region (like eu-west-1)",
                field="aws_region",
            )
        return region

    @property
    def masked_id(self) -> str:
        return mask_access_key_id(self.access_key_id)


def mask_access_key_id(access_key_id: str) -> str:
    """``AKIA••••WXYZ``: the key type and the last four characters, as AWS's own console shows."""
    return access_key_id[:4] + "••••" + access_key_id[-4:] if len(access_key_id) > 8 else "••••"


@dataclass(frozen=True)
class GoogleKey:
    """A service-account JSON key: its exact text (what is sealed) and what the exchange needs."""

    json_key: SecretStr = field(repr=False)
    client_email: str
    private_key_id: str
    token_uri: str

    @classmethod
    def parse(cls, text: str | SecretStr) -> GoogleKey:
        """Check a pasted or uploaded key; InvalidCloudKey (field ``google_json_key``) says what is wrong."""
        raw = text.get_secret_value() if isinstance(text, SecretStr) else text
        secret = text if isinstance(text, SecretStr) else SecretStr(text)

        def invalid(reason: str) -> InvalidCloudKey:
            return InvalidCloudKey(f"the Google JSON key {reason}", field="google_json_key")

        if not raw.strip():
            raise invalid("is empty")
        if len(raw) > MAX_JSON_KEY_CHARS:
            raise invalid(f"is longer than {MAX_JSON_KEY_CHARS} characters")
        try:
            data = load_json(raw.encode("utf-8"))
        except (ValueError, UnicodeEncodeError):
            raise invalid(
                "is not valid JSON; if it was copied from somewhere that turned the \\n escapes inside "
                "private_key into real line breaks, upload the downloaded .json file instead"
            ) from None
        if not isinstance(data, dict):
            raise invalid("must be a JSON object (the service account key file)")
        if data.get("type") != "service_account":
            raise invalid('is not a service account key ("type" must be "service_account")')
        email, key_id, pem = data.get("client_email"), data.get("private_key_id", ""), data.get("private_key")
        token_uri = data.get("token_uri", GOOGLE_TOKEN_URI)
        if not isinstance(email, str) or "@" not in email or not email.isprintable() or len(email) > 320:
            raise invalid("has no usable client_email")
        if not isinstance(key_id, str) or not key_id.isprintable() or len(key_id) > 256:
            raise invalid("has an unusable private_key_id")
        if not isinstance(pem, str):
            raise invalid("has no private_key")
        _load_rsa_key(pem)
        if not isinstance(token_uri, str):
            raise invalid("has an unusable token_uri")
        _check_token_uri(token_uri)
        return cls(secret, email, key_id, token_uri)

    @property
    def private_key(self) -> Any:
        data = load_json(self.json_key.get_secret_value().encode("utf-8"))
        return _load_rsa_key(data["private_key"])


CloudKey = AwsEcrKey | GoogleKey


def _load_rsa_key(pem: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    problem = (
        "has a private_key that is not a PEM RSA private key; its line breaks may have been mangled "
        "(they must be \\n escapes inside the JSON string): upload the downloaded .json file instead"
    )
    try:
        key = load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise InvalidCloudKey(f"the Google JSON key {problem}", field="google_json_key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidCloudKey(f"the Google JSON key {problem}", field="google_json_key")
    return key


def _check_token_uri(token_uri: str) -> httpx.URL:
    def invalid(reason: str) -> InvalidCloudKey:
        return InvalidCloudKey(f"the Google JSON key's token_uri {reason}", field="google_json_key")

    try:
        url = httpx.URL(token_uri)
    except (httpx.InvalidURL, UnicodeError):
        raise invalid("is not a URL") from None
    if url.scheme not in ("https", "http") or not url.raw_host:
        raise invalid("must be an https URL")
    if url.userinfo:
        raise invalid("must not contain credentials")
    problem = url_problem(url)
    if problem is not None:
        raise invalid(f"is not usable: {problem}")
    return url


# -- the exchange --------------------------------------------------------------------------------------


async def cloud_login(
    key: CloudKey, *, registry_host: str, options: RegistryOptions, deadline: Deadline
) -> Credentials:
    """Exchange ``key`` for the registry login of this one operation (run it inside the deadline's
    scope). Raises only ``RegistryClientError``s."""
    if isinstance(key, AwsEcrKey):
        region = key.region_for(registry_host)
        endpoint = options.aws_endpoint_url
        # The operator's own endpoint may be plain http (an AWS-compatible service on their network).
        allow_http = options.allow_http or (endpoint is not None and endpoint.startswith("http://"))
        async with _exchange_client(options, deadline, allow_http=allow_http) as client:
            return await _ecr_login(client, key, region=region, endpoint=endpoint, options=options)
    async with _exchange_client(options, deadline, allow_http=options.allow_http) as client:
        return await _google_login(client, key, options=options)


def _exchange_client(options: RegistryOptions, deadline: Deadline, *, allow_http: bool) -> httpx.AsyncClient:
    inner = guarded_transport(options.guard_policy(), ssl_context=options.ssl_context())
    return httpx.AsyncClient(
        transport=BoundedTransport(inner, deadline=deadline, allow_http=allow_http),
        trust_env=False,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


async def _post(
    client: httpx.AsyncClient, url: str, *, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    target = httpx.URL(url)
    with translate_errors():
        response = await client.post(
            target, content=body, headers=headers, extensions={SECRET_BODY_ORIGIN: origin_of(target)}
        )
        await response.aread()
    return response


# -- AWS -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _AwsSession:
    access_key_id: str
    secret_access_key: SecretStr = field(repr=False)
    session_token: SecretStr | None = field(default=None, repr=False)


def _aws_url(endpoint: str | None, service: str, region: str) -> str:
    if endpoint:
        return endpoint
    suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
    host = f"api.ecr.{region}{suffix}" if service == "ecr" else f"sts.{region}{suffix}"
    return f"https://{host}/"


def _signed_headers(
    session: _AwsSession, *, service: str, region: str, url: str, body: bytes, headers: dict[str, str]
) -> dict[str, str]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotocoreCredentials

    token = session.session_token.get_secret_value() if session.session_token else None
    credentials = BotocoreCredentials(
        session.access_key_id, session.secret_access_key.get_secret_value(), token
    )
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(credentials, service, region).add_auth(request)
    return {name: str(value) for name, value in request.headers.items()}


async def _ecr_login(
    client: httpx.AsyncClient, key: AwsEcrKey, *, region: str, endpoint: str | None, options: RegistryOptions
) -> Credentials:
    session = _AwsSession(key.access_key_id, key.secret_access_key)
    if key.role_arn is not None:
        session = await _assume_role(client, key, region=region, endpoint=endpoint, options=options)
    url = _aws_url(endpoint, "ecr", region)
    body = b"{}"
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": ECR_TARGET}
    signed = _signed_headers(session, service="ecr", region=region, url=url, body=body, headers=headers)
    response = await _post(client, url, body=body, headers=signed)
    host = response.request.url.host
    if response.status_code != 200:
        raise _aws_failure(response, key, what="ECR")
    try:
        data = load_json(response.content)
        encoded = data["authorizationData"][0]["authorizationToken"]
        username, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (ValueError, KeyError, IndexError, TypeError, binascii.Error, UnicodeDecodeError):
        raise CloudLoginFailed(
            f"ECR ({host}) answered GetAuthorizationToken with no usable authorization token",
            provider="AWS",
            host=host,
        ) from None
    secret = SecretStr(password)
    options.on_secret(secret)
    return _credentials(username or ECR_USERNAME, secret, provider="AWS", host=host)


async def _assume_role(
    client: httpx.AsyncClient, key: AwsEcrKey, *, region: str, endpoint: str | None, options: RegistryOptions
) -> _AwsSession:
    assert key.role_arn is not None
    url = _aws_url(endpoint, "sts", region)
    form = {
        "Action": "AssumeRole",
        "Version": "2011-06-15",
        "RoleArn": key.role_arn,
        "RoleSessionName": ROLE_SESSION_NAME,
        "DurationSeconds": "900",
    }
    body = urlencode(form).encode("ascii")
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    base = _AwsSession(key.access_key_id, key.secret_access_key)
    signed = _signed_headers(base, service="sts", region=region, url=url, body=body, headers=headers)
    response = await _post(client, url, body=body, headers=signed)
    host = response.request.url.host
    if response.status_code != 200:
        raise _aws_failure(response, key, what="STS")
    access_key_id = _xml_text(response.content, "AccessKeyId")
    secret = _xml_text(response.content, "SecretAccessKey")
    token = _xml_text(response.content, "SessionToken")
    if not (access_key_id and secret and token):
        raise CloudLoginFailed(
            f"STS ({host}) answered AssumeRole without usable credentials", provider="AWS", host=host
        )
    assumed = _AwsSession(access_key_id, SecretStr(secret), SecretStr(token))
    options.on_secret(assumed.secret_access_key)
    assert assumed.session_token is not None
    options.on_secret(assumed.session_token)
    return assumed


def _aws_failure(response: httpx.Response, key: AwsEcrKey, *, what: str) -> Exception:
    host = response.request.url.host
    status = response.status_code
    # ECR speaks JSON (``__type``), STS and some AWS-compatible services XML (``<Code>``).
    error_type = _json_error_type(response.content) or _xml_text(response.content, "Code")
    kind = printable(error_type.rpartition("#")[2], 80) if error_type else f"HTTP {status}"
    if status >= 500 or status == 429:
        return CloudLoginFailed(
            f"{what} ({host}) answered {status} ({kind}); AWS may be unavailable, try again later",
            provider="AWS",
            host=host,
        )
    if error_type in _AWS_KEY_ERRORS:
        return CloudLoginRejected(
            f"AWS rejected the access key {key.masked_id} ({kind}); check the access key id and the "
            "secret access key",
            provider="AWS",
            host=host,
        )
    if what == "STS":
        return CloudLoginRejected(
            f"AWS refused to let the access key {key.masked_id} assume the role {key.role_arn} ({kind}); "
            "check the role's trust policy and the key's sts:AssumeRole permission",
            provider="AWS",
            host=host,
        )
    if error_type in ("AccessDenied", "AccessDeniedException"):
        who = f"the role {key.role_arn}" if key.role_arn else f"the access key {key.masked_id}"
        return CloudLoginRejected(
            f"AWS denied {who} ecr:GetAuthorizationToken ({kind}); allow it in its IAM policy",
            provider="AWS",
            host=host,
        )
    return CloudLoginRejected(
        f"AWS rejected the access key {key.masked_id} ({kind}); check the access key id, the secret "
        "access key and the region",
        provider="AWS",
        host=host,
    )


def _json_error_type(body: bytes) -> str | None:
    try:
        data = load_json(body)
    except ValueError:
        return None
    value = data.get("__type") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _xml_text(body: bytes, tag: str) -> str | None:
    """The text of the first element named ``tag`` (any namespace) of a small (capped) XML answer."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:  # AWS never sends them; refuse entity games
        return None
    try:
        root = ElementTree.fromstring(body)  # noqa: S314 - capped at 64 KiB, no DTD (checked above)
    except ElementTree.ParseError:
        return None
    for element in root.iter():
        if element.tag.rpartition("}")[2] == tag:
            return (element.text or "").strip() or None
    return None


# -- Google ------------------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed_assertion(key: GoogleKey, *, now: float | None = None) -> str:
    """The RS256 JWT a service account presents to its token endpoint (RFC 7523)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    issued = int(time.time() if now is None else now)
    header: dict[str, str] = {"alg": "RS256", "typ": "JWT"}
    if key.private_key_id:
        header["kid"] = key.private_key_id
    claims = {
        "iss": key.client_email,
        "scope": GOOGLE_SCOPE,
        "aud": key.token_uri,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME_S,
    }
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = key.private_key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64url(signature)


async def _google_login(
    client: httpx.AsyncClient, key: GoogleKey, *, options: RegistryOptions
) -> Credentials:
    assertion = signed_assertion(key)
    options.on_secret(SecretStr(assertion))
    body = urlencode({"grant_type": JWT_BEARER_GRANT, "assertion": assertion}).encode("ascii")
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    response = await _post(client, str(_check_token_uri(key.token_uri)), body=body, headers=headers)
    host = response.request.url.host
    try:
        data = load_json(response.content)
    except ValueError:
        data = None
    if response.status_code != 200:
        error = data.get("error") if isinstance(data, dict) else None
        description = data.get("error_description") if isinstance(data, dict) else None
        said = printable(f"{error}: {description}" if description else str(error), 160) if error else ""
        if response.status_code >= 500 or response.status_code == 429:
            raise CloudLoginFailed(
                f"Google's token endpoint {host} answered {response.status_code}; try again later",
                provider="Google",
                host=host,
            )
        raise CloudLoginRejected(
            f"Google's token endpoint {host} rejected the service account key of {key.client_email} "
            f"({said or f'HTTP {response.status_code}'}); check that the key is active and not deleted",
            provider="Google",
            host=host,
        )
    token = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise CloudLoginFailed(
            f"Google's token endpoint {host} answered without an access token", provider="Google", host=host
        )
    secret = SecretStr(token)
    options.on_secret(secret)
    return _credentials(GOOGLE_USERNAME, secret, provider="Google", host=host)


def _credentials(username: str, password: SecretStr, *, provider: str, host: str) -> Credentials:
    try:
        return Credentials(username, password)
    except InvalidCredentials:
        raise CloudLoginFailed(
            f"{provider} ({host}) issued a registry login that HTTP Basic cannot carry",
            provider=provider,
            host=host,
        ) from None
