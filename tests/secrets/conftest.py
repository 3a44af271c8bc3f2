"""Fixtures for the secrets tests: random keyrings and their project keys."""

from __future__ import annotations

import os

import pytest

from guara.secrets import MasterKeyring, ProjectKeys


def random_keyring(*versions: int) -> MasterKeyring:
    return MasterKeyring({version: os.urandom(32) for version in versions or (1,)})


@pytest.fixture
def anyio_backend() -> str:
    # The suite's conftest says the same; repeated so this directory also runs on its own.
    return "asyncio"


@pytest.fixture
def keyring() -> MasterKeyring:
    return random_keyring(1)


@pytest.fixture
def keys(keyring: MasterKeyring) -> ProjectKeys:
    return ProjectKeys(keyring)
