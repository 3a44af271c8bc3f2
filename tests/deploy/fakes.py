"""Fakes for deploy tests: a registry that hangs on the manifest, and a tiny Kubernetes API server.

Both are stdlib handlers served by the lab's `start_https_server` on loopback.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit


def hanging_registry(release: threading.Event) -> type[BaseHTTPRequestHandler]:
    """Answers `GET /v2/` with 200 (no auth), then never answers a manifest request until `release`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            if self.path == "/v2/":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                return
            release.wait(30)

        do_HEAD = do_GET

    return Handler


@dataclass
class ApplyRequest:
    """One request the fake API server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    authorization: str
    body: dict[str, Any]


@dataclass
class FakeKubernetes:
    """Records server-side applies and answers like the API server would (the applied object back).

    `refuse[path_suffix] = (status, message)` makes requests whose path ends with it fail with a
    Kubernetes Status."""

    requests: list[ApplyRequest] = field(default_factory=list)
    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)
    # When set: the first apply is held until ``hold_first_apply`` is set; ``first_apply_arrived``
    # tells the test it is being held (a deploy caught in the middle of applying).
    hold_first_apply: threading.Event | None = None
    first_apply_arrived: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _reply(self, status: int, value: object) -> None:
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PATCH(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                parts = urlsplit(self.path)
                seen = ApplyRequest(
                    method="PATCH",
                    path=parts.path,
                    query=parse_qs(parts.query),
                    content_type=self.headers.get("Content-Type", ""),
                    authorization=self.headers.get("Authorization", ""),
                    body=json.loads(raw),
                )
                with fake._lock:
                    first = not any(r.method == "PATCH" for r in fake.requests)
                    fake.requests.append(seen)
                if first and fake.hold_first_apply is not None:
                    fake.first_apply_arrived.set()
                    fake.hold_first_apply.wait(30)
                for suffix, (status, message) in fake.refuse.items():
                    if parts.path.endswith(suffix):
                        self._reply(
                            status,
                            {
                                "kind": "Status",
                                "apiVersion": "v1",
                                "status": "Failure",
                                "message": message,
                                "reason": "Invalid",
                                "code": status,
                            },
                        )
                        return
                answer = dict(seen.body)
                answer["metadata"] = {**answer.get("metadata", {}), "uid": "0000", "resourceVersion": "1"}
                self._reply(200, answer)

            def do_GET(self) -> None:
                self._reply(404, {"kind": "Status", "status": "Failure", "code": 404, "message": "not here"})

            def do_DELETE(self) -> None:
                parts = urlsplit(self.path)
                seen = ApplyRequest(
                    method="DELETE",
                    path=parts.path,
                    query=parse_qs(parts.query),
                    content_type=self.headers.get("Content-Type", ""),
                    authorization=self.headers.get("Authorization", ""),
                    body={},
                )
                with fake._lock:
                    existed = any(r.method == "PATCH" and r.path == parts.path for r in fake.requests)
                    fake.requests.append(seen)
                if existed:
                    self._reply(200, {"kind": "Status", "status": "Success", "code": 200})
                else:
                    self._reply(
                        404, {"kind": "Status", "status": "Failure", "code": 404, "message": "not found"}
                    )

        return Handler

    def kinds(self) -> list[str]:
        """The kinds applied, in order (deletions are in ``deleted()``)."""
        return [request.body.get("kind", "?") for request in self.requests if request.method == "PATCH"]

    def deleted(self) -> list[str]:
        return [request.path for request in self.requests if request.method == "DELETE"]

    def holds(self, path_suffix: str) -> bool:
        """Whether the object at this path exists now: its last request was an apply, not a delete."""
        methods = [r.method for r in self.requests if r.path.endswith(path_suffix)]
        return bool(methods) and methods[-1] == "PATCH"


def kubeconfig(server_url: str, token: str = "fake-cluster-token") -> str:
    """A kubeconfig (JSON is YAML) for one cluster at `server_url` with a bearer token."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": server_url}}],
            "users": [{"name": "fake", "user": {"token": token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
    )


def static_registry(routes: dict[str, tuple[int, str, bytes]]) -> type[BaseHTTPRequestHandler]:
    """An anonymous registry serving `routes[path] = (status, content type, body)`; 404 elsewhere."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            status, content_type, body = routes.get(self.path.split("?")[0], (404, "application/json", b"{}"))
            if self.path == "/v2/":
                status, content_type, body = 200, "application/json", b"{}"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_HEAD = do_GET

    return Handler
