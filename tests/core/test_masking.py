"""Masked usernames reveal at most a third of the name and never more than 4 characters; names of 3
characters or fewer are fully masked."""

from __future__ import annotations

import pytest

from guara.core.credentials import mask_username


@pytest.mark.parametrize(
    ("username", "masked"),
    [
        ("x", "•••"),
        ("bob", "•••"),
        ("abcd", "a•••"),
        ("alice", "a•••"),
        ("abcdef", "a•••f"),
        ("oauth2accesstoken", "oa•••en"),
        ("robot$project+deployer-of-everything", "ro•••ng"),
    ],
)
def test_masks(username: str, masked: str) -> None:
    assert mask_username(username) == masked


@pytest.mark.parametrize("length", range(1, 80))
def test_never_more_than_a_third_nor_four(length: int) -> None:
    name = "".join(chr(ord("a") + i % 26) for i in range(length))
    shown = mask_username(name).replace("•••", "")
    assert len(shown) <= min(4, length // 3)
    assert len(shown) == 0 or length > 3
