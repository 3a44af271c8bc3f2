"""The one table of registry-aware help: which host gets which notes, the advice per failure code, and
the README's table, which is made from it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from guara.registry.known import (
    KNOWN_REGISTRIES,
    advice_for,
    known_registries_json,
    notes_for,
    registry_named,
    supported_registries_table,
)

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(
    ("registry", "key"),
    [
        ("docker.io", "docker-hub"),
        ("index.docker.io", "docker-hub"),
        ("https://registry-1.docker.io/", "docker-hub"),
        ("ghcr.io", "ghcr"),
        ("GHCR.IO", "ghcr"),
        ("https://ghcr.io:443", "ghcr"),
        ("ghcr.io.", "ghcr"),
        ("registry.gitlab.com", "gitlab"),
        ("registry.gitlab.example.com:5050", "gitlab"),
        ("gcr.io", "google"),
        ("eu.gcr.io", "google"),
        ("europe-west1-docker.pkg.dev", "google"),
        ("quay.io", "quay"),
        ("harbor.example.com", "harbor"),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "ecr"),
        ("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com", "ecr"),
        ("myregistry.azurecr.io", "acr"),
    ],
)
def test_well_known_hosts(registry: str, key: str) -> None:
    notes = notes_for(registry)
    assert notes is not None and notes.key == key


@pytest.mark.parametrize(
    "registry",
    [
        "registry.example.com",
        "127.0.0.1:5000",
        "[::1]:5000",
        "ghcr.io.evil.example",  # look-alikes get no trusted-sounding advice
        "evilghcr.io",
        "gitlab.com",  # the GitLab web host is not its registry
        "docker.io.example.com",
        "pkg.dev",
        "x.dkr.ecr.eu-west-1.amazonaws.com",
        "not a registry",
        "ghcr.io/acme",  # a path: not a Registry URL
        "",
    ],
)
def test_other_hosts_get_the_generic_help(registry: str) -> None:
    assert notes_for(registry) is None


def test_advice_is_per_registry_and_code() -> None:
    advice = advice_for("ghcr.io", "auth_failed")
    assert advice is not None and "read:packages" in advice
    hub = advice_for("docker.io", "auth_failed")
    assert hub is not None and "two-factor" in hub and "personal access token" in hub
    private = advice_for("docker.io", "manifest_not_found")
    assert private is not None and "private to another account" in private
    assert advice_for("ghcr.io", "timeout") is None
    assert advice_for("registry.example.com", "auth_failed") is None
    assert advice_for("ghcr.io", None) is None


def test_the_registry_a_test_names() -> None:
    assert registry_named("quay.io", "ghcr.io/acme/api:v1") == "quay.io"
    assert registry_named(None, "ghcr.io/acme/api:v1") == "ghcr.io"
    assert registry_named(None, "busybox") == "docker.io"
    assert registry_named("", "Not A Reference") is None
    assert registry_named(None, None) is None


def test_every_entry_is_complete_and_its_pattern_works_in_javascript_too() -> None:
    keys = [notes.key for notes in KNOWN_REGISTRIES]
    assert len(keys) == len(set(keys))
    for notes in KNOWN_REGISTRIES:
        assert notes.username_help and notes.credential_help and notes.advice.get("auth_failed")
        assert notes_for(notes.example_host) == notes
        # guara.js builds RegExp(`^(?:${pattern})$`): no Python-only syntax.
        assert not re.search(r"\(\?P|\(\?<|\\A|\\Z|\(\?[aiLmsux]", notes.host_pattern)
    shipped = json.loads(known_registries_json())
    assert [entry["pattern"] for entry in shipped] == [notes.host_pattern for notes in KNOWN_REGISTRIES]


def test_the_readme_table_is_the_codes_table() -> None:
    assert supported_registries_table() in README.read_text()
