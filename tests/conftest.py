"""Shared fixtures for the whole suite."""

from __future__ import annotations

import pytest

# Suite-wide plugins: the registry lab (real registries on loopback) and the socket audit.
pytest_plugins = ["tests.lab.fixtures", "tests.socket_audit"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
