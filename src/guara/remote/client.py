"""A small typed client over guara's JSON API (``/api/v1``), for the remote commands.

Answers are parsed into the few fields the commands use; every other field the API sends is kept
(``extra="allow"``), so ``--json`` prints the API's object whole. httpx errors are translated into
``RemoteError`` in one place, ``_transport_errors``."""

from __future__ import annotations

import contextlib
import ssl
import uuid
from collections.abc import Generator, Iterator
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, TypeAdapter, ValidationError

from guara.remote.errors import RemoteError
from guara.remote.login import API_PREFIX, Login

TIMEOUT_S = 30.0  # a Test Connection alone may take 8 s; a save with verification as long
MAX_MESSAGE = 500  # of an answer that is not guara's, shown in an error


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Project(Answer):
    id: uuid.UUID
    name: str
    role: str


class Credentials(Answer):
    registry: str
    username_masked: str
    verification: str


class Service(Answer):
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    image: str
    registry_credentials: Credentials | None
    url: str | None = None


class Preflight(Answer):
    ok: bool
    code: str | None
    message: str
    digest: str | None
    elapsed_ms: int


class Deployment(Answer):
    id: uuid.UUID
    service_id: uuid.UUID
    status: str
    digest: str | None
    code: str | None
    message: str
    url: str | None = None


class ServiceLogs(Answer):
    deployment_id: uuid.UUID
    lines: list[str]


class NewCredentials(BaseModel):
    registry: str
    username: str
    password: SecretStr


AnswerT = TypeVar("AnswerT", bound=Answer)


def _caused_by_tls(exc: BaseException) -> bool:
    """Whether an SSLError is in the chain (httpx wraps httpcore's error, which wraps ssl's)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextlib.contextmanager
def _transport_errors(base_url: str) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException:
        raise RemoteError("timeout", f"{base_url} did not answer in {TIMEOUT_S:.0f} s") from None
    except httpx.ConnectError as exc:
        if _caused_by_tls(exc):
            raise RemoteError(
                "tls_error", f"TLS with {base_url} failed: {exc} (a private CA? set SSL_CERT_FILE to its PEM)"
            ) from None
        raise RemoteError("unreachable", f"cannot connect to {base_url}: {exc}") from None
    except httpx.TransportError as exc:
        raise RemoteError("network_error", f"talking to {base_url}: {type(exc).__name__}: {exc}") from None


def _error(response: httpx.Response) -> RemoteError:
    """The API's error answer (``code``, ``message``), or a plain description of a foreign one."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str) and isinstance(body.get("message"), str):
        retry_after = body.get("retry_after")
        return RemoteError(
            body["code"],
            body["message"],
            status=response.status_code,
            retry_after=retry_after if isinstance(retry_after, int) else None,
        )
    if response.is_redirect:
        location = response.headers.get("location", "")[:MAX_MESSAGE]
        return RemoteError(
            "redirected",
            f"{response.request.url} redirects to {location}: log in with the server's own address "
            "(the token is not sent after a redirect)",
            status=response.status_code,
        )
    text = " ".join(response.text.split())[:MAX_MESSAGE]
    return RemoteError(
        f"http_{response.status_code}",
        f"{response.request.url} answered {response.status_code} {response.reason_phrase}, "
        f"not a guara error: {text or '(empty body)'}",
        status=response.status_code,
    )


class BearerToken(httpx.Auth):
    """The API token on every request. Given as the client's auth, it also keeps httpx from adding a
    ~/.netrc login of its own."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        yield request


class GuaraClient:
    """One login's view of a guara server. Use as a context manager (it holds a connection pool).

    Like any command-line HTTP client it honours HTTPS_PROXY / NO_PROXY and SSL_CERT_FILE (a guara
    behind a private CA). Redirects are not followed: the token goes to the server logged in to only."""

    def __init__(self, login: Login) -> None:
        self.base_url = login.url
        self._http = httpx.Client(
            base_url=login.url + API_PREFIX,
            auth=BearerToken(login.token),
            timeout=TIMEOUT_S,
            follow_redirects=False,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        with _transport_errors(self.base_url):
            response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        try:
            return response.json()
        except ValueError:
            raise _error(response) from None

    def _one(self, model: type[AnswerT], method: str, path: str, **kwargs: Any) -> AnswerT:
        body = self._call(method, path, **kwargs)
        try:
            return model.model_validate(body)
        except ValidationError:
            raise RemoteError(
                "bad_answer", f"{self.base_url}{API_PREFIX}{path}: not a {model.__name__}"
            ) from None

    def _many(self, model: type[AnswerT], path: str, **kwargs: Any) -> list[AnswerT]:
        body = self._call("GET", path, **kwargs)
        try:
            return TypeAdapter(list[model]).validate_python(body)  # type: ignore[valid-type]
        except ValidationError:
            raise RemoteError("bad_answer", f"{self.base_url}{API_PREFIX}{path}: not a list") from None

    # Projects
    def list_projects(self) -> list[Project]:
        return self._many(Project, "/projects")

    def get_project(self, project_id: uuid.UUID) -> Project:
        return self._one(Project, "GET", f"/projects/{project_id}")

    def create_project(self, name: str) -> Project:
        return self._one(Project, "POST", "/projects", json={"name": name})

    # Services
    def list_services(self, project_id: uuid.UUID) -> list[Service]:
        return self._many(Service, f"/projects/{project_id}/services")

    def get_service(self, service_id: uuid.UUID) -> Service:
        return self._one(Service, "GET", f"/services/{service_id}")

    def create_service(
        self,
        project_id: uuid.UUID,
        *,
        name: str,
        image: str,
        credentials: NewCredentials | None = None,
        skip_verification: bool = False,
    ) -> Service:
        body: dict[str, Any] = {"name": name, "image": image, "skip_verification": skip_verification}
        if credentials is not None:
            body["registry_credentials"] = {
                "registry": credentials.registry,
                "username": credentials.username,
                "password": credentials.password.get_secret_value(),
            }
        return self._one(Service, "POST", f"/projects/{project_id}/services", json=body)

    def test_connection(self, service: Service) -> Preflight:
        """Test Connection of the service's image with its stored credentials (anonymous without)."""
        body: dict[str, Any] = {"image": service.image, "service_id": str(service.id)}
        if service.registry_credentials is not None:
            body["registry"] = service.registry_credentials.registry
        return self._one(Preflight, "POST", "/registry/test", json=body)

    # Deployments
    def start_deployment(self, service_id: uuid.UUID) -> Deployment:
        return self._one(Deployment, "POST", f"/services/{service_id}/deployments")

    def get_deployment(self, service_id: uuid.UUID, deployment_id: uuid.UUID) -> Deployment:
        return self._one(Deployment, "GET", f"/services/{service_id}/deployments/{deployment_id}")

    def service_logs(self, service_id: uuid.UUID, *, tail: int) -> ServiceLogs:
        return self._one(ServiceLogs, "GET", f"/services/{service_id}/logs", params={"tail": tail})
