"""API tests against the registry lab: guara trusts the lab CA and may reach loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from guara.context import AppContext
from tests.conftest import build_context
from tests.lab import Lab
from tests.support import ApiUser, make_client


@pytest.fixture
def lab_env(settings_env: dict[str, str], lab: Lab) -> dict[str, str]:
    return {**settings_env, "GUARA_EXTRA_CA_FILE": str(lab.ca_file)}


@pytest.fixture
def lab_context(lab_env: dict[str, str]) -> Iterator[AppContext]:
    context = build_context(lab_env)
    yield context
    context.db.dispose()


@pytest.fixture
def lab_client(lab_context: AppContext) -> Iterator[ApiUser]:
    with make_client(lab_context) as http:
        yield ApiUser.sign_up(http, lab_context, "owner@example.com")
