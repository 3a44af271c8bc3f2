"""Container log text: what a log line can no longer do once cleaned, and the bounds."""

from __future__ import annotations

import pytest

from guara.deploy.logtext import bound_lines, clean_log_line, clean_log_lines


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain line", "plain line"),
        ("tab\tkept", "tab\tkept"),
        ("\x1b[31mred\x1b[0m", "red"),
        ("\x1b[2K\x1b[1Gerased", "erased"),
        ("\x1b]0;title\x07after", "after"),
        ("\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x1bPdcs payload\x1b\\x", "x"),
        ("\x1bc reset", " reset"),
        ("\x9b31mC1 csi", "C1 csi"),
        ("over\rwritten", "overwritten"),
        ("bell\x07 null\x00 del\x7f", "bell null del"),
        ("vt\x0bff\x0cfs\x1cnel\x85", "vtfffsnel"),
        ("line\u2028sep\u2029para", "lineseppara"),
        ("admin\u202egnp.exe", "admingnp.exe"),
        ("ünïcödé ✓", "ünïcödé ✓"),
    ],
)
def test_clean_log_line(raw: str, clean: str) -> None:
    assert clean_log_line(raw) == clean


def test_lines_split_on_newlines_only_and_decode_with_replacement() -> None:
    raw = b"one\r\ntwo\x0bstill two\xff\nthree" + "\u2028".encode() + b"\n"
    assert clean_log_lines(raw) == ["one", "twostill two\ufffd", "three"]
    assert clean_log_lines(b"") == []
    assert clean_log_lines(b"no newline at the end") == ["no newline at the end"]
    assert clean_log_lines(b"\n\n") == ["", ""]


def test_bound_lines() -> None:
    lines = [f"line {i}" for i in range(100)]
    assert bound_lines(lines, max_lines=3, max_bytes=1000) == ("line 97", "line 98", "line 99")
    # 8 bytes each with the newline: 3 fit in 24 bytes, not 4
    assert bound_lines(lines, max_lines=50, max_bytes=24) == ("line 97", "line 98", "line 99")
    assert bound_lines(["x" * 10_000], max_lines=5, max_bytes=100) == ("x" * 99,)
    assert bound_lines(["é" * 100], max_lines=5, max_bytes=11) == ("é" * 5,)
    assert bound_lines([], max_lines=5, max_bytes=100) == ()
    assert bound_lines(lines, max_lines=0, max_bytes=100) == ()
