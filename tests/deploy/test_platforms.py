"""Platform strings and picking a manifest out of an index (containerd's matching rules)."""

from __future__ import annotations

from typing import Any

import pytest

from guara.deploy import InvalidPlatform, NoMatchingPlatform, PlatformSpec, parse_platform, select_platform


@pytest.mark.parametrize(
    ("text", "expected", "shown"),
    [
        ("linux/amd64", PlatformSpec("linux", "amd64"), "linux/amd64"),
        ("Linux/X86_64", PlatformSpec("linux", "amd64"), "linux/amd64"),
        ("linux/aarch64", PlatformSpec("linux", "arm64", "v8"), "linux/arm64"),
        ("linux/arm64/v8", PlatformSpec("linux", "arm64", "v8"), "linux/arm64"),
        ("linux/arm", PlatformSpec("linux", "arm", "v7"), "linux/arm"),
        ("linux/arm/v6", PlatformSpec("linux", "arm", "v6"), "linux/arm/v6"),
        ("windows/amd64", PlatformSpec("windows", "amd64"), "windows/amd64"),
    ],
)
def test_parse_platform(text: str, expected: PlatformSpec, shown: str) -> None:
    assert parse_platform(text) == expected
    assert str(parse_platform(text)) == shown


@pytest.mark.parametrize(
    "text", ["", "linux", "linux/", "/amd64", "linux/amd64/v1/x", "linux amd64", "a/b c"]
)
def test_malformed_platforms_are_refused(text: str) -> None:
    with pytest.raises(InvalidPlatform):
        parse_platform(text)


def _entry(digest: str, os: str, arch: str, variant: str | None = None) -> dict[str, Any]:
    platform = {"os": os, "architecture": arch, **({"variant": variant} if variant else {})}
    return {"digest": digest, "platform": platform}


INDEX = [
    _entry("amd", "linux", "amd64"),
    _entry("arm7", "linux", "arm", "v7"),
    _entry("arm6", "linux", "arm", "v6"),
    _entry("arm64", "linux", "arm64", "v8"),
    _entry("att", "unknown", "unknown"),
    _entry("win", "windows", "amd64"),
]


@pytest.mark.parametrize(
    ("wanted", "digest"),
    [
        ("linux/amd64", "amd"),
        ("linux/arm64", "arm64"),
        ("linux/arm", "arm7"),
        ("linux/arm/v6", "arm6"),
        ("windows/amd64", "win"),
    ],
)
def test_select_platform(wanted: str, digest: str) -> None:
    assert select_platform(INDEX, parse_platform(wanted))["digest"] == digest


def test_arm64_entry_without_variant_matches() -> None:
    assert select_platform([_entry("a", "linux", "arm64")], parse_platform("linux/arm64/v8"))["digest"] == "a"


def test_missing_platform_names_what_exists_and_skips_attestations() -> None:
    with pytest.raises(NoMatchingPlatform) as caught:
        select_platform(INDEX, parse_platform("linux/s390x"))
    assert caught.value.available == (
        "linux/amd64",
        "linux/arm",
        "linux/arm/v6",
        "linux/arm64",
        "windows/amd64",
    )
    assert "unknown" not in str(caught.value)
    assert "linux/s390x" in str(caught.value)


def test_entries_without_platform_never_match() -> None:
    with pytest.raises(NoMatchingPlatform):
        select_platform(
            [{"digest": "x"}, {"digest": "y", "platform": "linux/amd64"}], parse_platform("linux/amd64")
        )
