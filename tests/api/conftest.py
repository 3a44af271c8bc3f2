"""API tests against the registry lab: guara trusts the lab CA and may reach loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from guara.core.platform import Platform
from tests.conftest import build_platform
from tests.lab import Lab
from tests.support import ApiUser, make_client


@pytest.fixture
def lab_env(settings_env: dict[str, str], lab: Lab) -> dict[str, str]:
    return {**settings_env, "GUARA_EXTRA_CA_FILE": str(lab.ca_file)}


@pytest.fixture
def lab_platform(lab_env: dict[str, str]) -> Iterator[Platform]:
    platform = build_platform(lab_env)
    yield platform
    platform.db.dispose()


@pytest.fixture
def lab_client(lab_platform: Platform) -> Iterator[ApiUser]:
    with make_client(lab_platform) as http:
        yield ApiUser.sign_up(http, lab_platform, "owner@example.com")
