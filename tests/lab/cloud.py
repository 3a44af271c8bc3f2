"""Cloud registries' token services on loopback: moto for AWS (ECR, STS, IAM), and a Google token server.

- `start_moto_aws()`: moto in server mode (`ThreadedMotoServer`, plain HTTP on 127.0.0.1) with IAM
  authentication on: `puller` may call ecr:GetAuthorizationToken and assume the role `pull`, `nobody`
  may do nothing. ECR hands out `AWS` / `ECR_TOKEN_PASSWORD`, which the lab's Basic registry accepts.
- `GoogleTokenServer`: the OAuth2 JWT-bearer grant (RFC 7523) as Google's token endpoint speaks it. It
  checks the assertion's RS256 signature with the public half of the service account key it made, and
  its `iss`, `aud` and lifetime, then answers `access_token` = `GOOGLE_ACCESS_TOKEN` (unless told
  otherwise), which the lab's token issuer accepts as the password of `oauth2accesstoken`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import ClassVar
from urllib.parse import parse_qs

import jwt
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.lab.servers import LabServer, start_https_server

MOTO_ACCOUNT = "123456789012"
# moto's ECR answers every GetAuthorizationToken with base64("AWS:<account>-auth-token").
ECR_TOKEN_PASSWORD = f"{MOTO_ACCOUNT}-auth-token"  # noqa: S105 - the fake's fixed token
GOOGLE_ACCESS_TOKEN = "ya29.guara-lab-google-access-token"  # noqa: S105 - the fake's token
GOOGLE_TOKEN_PATH = "/token"  # noqa: S105 - a path
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True)
class AwsKey:
    access_key_id: str
    secret_access_key: str = field(repr=False)


@dataclass(frozen=True)
class MotoAws:
    """A running moto: its endpoint (GUARA_AWS_ENDPOINT_URL), two users' keys and a role."""

    url: str
    host: str
    port: int
    puller: AwsKey
    nobody: AwsKey
    role_arn: str


@contextlib.contextmanager
def start_moto_aws() -> Iterator[MotoAws]:
    """Start moto, make the users and the role, then turn IAM authentication on (off again at the end)."""
    import boto3
    from moto.core.authorization import enable_iam_authentication
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        iam = boto3.client(
            "iam",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's setup key, before auth is on
        )
        everything = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        iam.create_user(UserName="puller")
        iam.put_user_policy(UserName="puller", PolicyName="all", PolicyDocument=json.dumps(everything))
        puller = iam.create_access_key(UserName="puller")["AccessKey"]
        iam.create_user(UserName="nobody")
        nobody = iam.create_access_key(UserName="nobody")["AccessKey"]
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{MOTO_ACCOUNT}:user/puller"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        role = iam.create_role(RoleName="pull", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
        pull_only = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}],
        }
        iam.put_role_policy(RoleName="pull", PolicyName="pull", PolicyDocument=json.dumps(pull_only))
        with enable_iam_authentication():
            yield MotoAws(
                url=url,
                host=f"{host}:{port}",
                port=port,
                puller=AwsKey(puller["AccessKeyId"], puller["SecretAccessKey"]),
                nobody=AwsKey(nobody["AccessKeyId"], nobody["SecretAccessKey"]),
                role_arn=role["Arn"],
            )
    finally:
        server.stop()


@dataclass
class GoogleTokenRequest:
    """One request as the token server saw it (never the assertion)."""

    grant_type: str
    client_email: str | None
    status: int


class GoogleTokenServer:
    """Google's token endpoint for service accounts, on loopback with a lab certificate."""

    def __init__(self, ca: trustme.CA) -> None:
        self._private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.client_email = "puller@guara-lab.iam.gserviceaccount.com"
        self.private_key_id = "lab-key-1"
        self.access_token = GOOGLE_ACCESS_TOKEN
        self.requests: list[GoogleTokenRequest] = []
        self._lock = threading.Lock()
        self._server: LabServer = start_https_server(
            type("BoundGoogleHandler", (_GoogleHandler,), {"owner": self}), ca=ca
        )

    @property
    def token_uri(self) -> str:
        return self._server.url + GOOGLE_TOKEN_PATH

    @property
    def host(self) -> str:
        return self._server.host

    def stop(self) -> None:
        self._server.stop()

    def private_key_pem(self, key: rsa.RSAPrivateKey | None = None) -> str:
        return (
            (key or self._private_key)
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode("ascii")
        )

    def json_key(self, *, token_uri: str | None = None, other_key: bool = False) -> str:
        """A service account key file as Google's console downloads it (``other_key``: a key the
        server does not know, as if it had been deleted)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if other_key else None
        document = {
            "type": "service_account",
            "project_id": "guara-lab",
            "private_key_id": self.private_key_id,
            "private_key": self.private_key_pem(key),
            "client_email": self.client_email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri or self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        }
        return json.dumps(document, indent=2) + "\n"

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def verify(self, assertion: str) -> str:
        """The client email of a valid assertion; jwt.InvalidTokenError otherwise."""
        public = self._private_key.public_key()
        claims = jwt.decode(
            assertion,
            public,
            algorithms=["RS256"],
            audience=self.token_uri,
            issuer=self.client_email,
            options={"require": ["iss", "aud", "iat", "exp"]},
        )
        if claims["exp"] - claims["iat"] > 3600 or claims["iat"] > time.time() + 60:
            raise jwt.InvalidTokenError("assertion lifetime")
        return str(claims["iss"])

    def _record(self, entry: GoogleTokenRequest) -> None:
        with self._lock:
            self.requests.append(entry)


class _GoogleHandler(BaseHTTPRequestHandler):
    owner: ClassVar[GoogleTokenServer]
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(min(length, 64 * 1024)).decode("ascii", "replace"))
        grant = form.get("grant_type", [""])[0]
        assertion = form.get("assertion", [""])[0]
        email: str | None = None
        body: dict[str, object]
        if self.path != GOOGLE_TOKEN_PATH:
            status, body = 404, {"error": "not_found"}
        elif grant != JWT_BEARER_GRANT:
            status, body = 400, {"error": "unsupported_grant_type"}
        else:
            try:
                email = self.owner.verify(assertion)
            except jwt.InvalidTokenError:
                status, body = 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            else:
                status = 200
                body = {"access_token": self.owner.access_token, "expires_in": 3599, "token_type": "Bearer"}
        self.owner._record(GoogleTokenRequest(grant, email, status))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
