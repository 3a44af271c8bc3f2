"""Dashboard fixtures: the API tests' lab platform (lab CA trusted, loopback allowed), reused here, and a
signed-in owner on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from guara.context import AppContext
from tests.api.conftest import lab_context, lab_env
from tests.support import make_client
from tests.web.support import WebUser

__all__ = ["lab_context", "lab_env", "owner"]


@pytest.fixture
def owner(lab_context: AppContext) -> Iterator[WebUser]:
    """A dashboard user signed in on the lab platform, through the sign-in form."""
    with make_client(lab_context) as http:
        yield WebUser.sign_in(http, lab_context, "owner@example.com")
