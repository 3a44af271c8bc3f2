"""Helpers for API tests: signed-in clients over the real ASGI app."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.testclient import TestClient

from guara.app import create_app
from guara.core import accounts
from guara.core.platform import Platform


@contextlib.contextmanager
def make_client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(platform), raise_server_exceptions=False) as test_client:
        yield test_client


@dataclass
class ApiUser:
    http: TestClient
    email: str
    token: str

    @classmethod
    def sign_up(
        cls, http: TestClient, platform: Platform, email: str, password: str = "correct horse 1"
    ) -> ApiUser:
        with platform.db.session() as session:
            accounts.create_user(session, email=email, password=password)
            token = accounts.create_api_token(session, email=email)
        return cls(http, email, token)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.http.request(method, "/api/v1" + path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def project(self, name: str = "demo") -> str:
        response = self.post("/projects", json={"name": name})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def service(self, project_id: str, name: str = "api", image: str = "ghcr.io/acme/api:v1") -> str:
        response = self.post(f"/projects/{project_id}/services", json={"name": name, "image": image})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])
