"""The dashboard's JSON endpoints on hostile host names: a friendly refusal, never a 500.

Every host is refused by the parser before any lookup or connection.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from guara.context import AppContext
from tests.support import make_client
from tests.web.support import WebUser

HOSTS = ["0177.0.0.1", "999.1.1.1", "1.2.3.04", "xn--zz.example"]


@pytest.fixture
def web_user(context: AppContext) -> Iterator[WebUser]:
    with make_client(context) as http:
        yield WebUser.sign_in(http, context, "web@example.com")


@pytest.mark.parametrize("host", HOSTS)
def test_image_check_says_the_image_is_invalid(web_user: WebUser, host: str) -> None:
    response = web_user.post_json("/-/image-check", {"image": f"{host}/x:y", "probe": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["valid"] is False
    assert host in body["message"]


@pytest.mark.parametrize("host", HOSTS)
def test_test_connection_is_a_friendly_refusal(web_user: WebUser, host: str) -> None:
    response = web_user.post_json(
        "/-/test-connection", {"image": f"{host}/x:y", "registry": host, "username": "u", "password": "p"}
    )
    assert response.status_code == 422, response.text
    assert host in response.json()["message"]
