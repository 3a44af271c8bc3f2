"""Container log text made safe to show: decoded, split, cleaned and bounded.

A container writes whatever it likes to its log; what guara shows of it (dashboard, API, a failed
deployment's message) must not be able to move a terminal's cursor, recolour a page, hide text
behind a bidi override or forge a line of its own. Secrets are not this module's business: the
caller redacts them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, erase line
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]?"  # any other escape
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_REMOVED_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def clean_log_line(line: str) -> str:
    """Escape sequences removed, then every control character (tab kept), line and paragraph
    separator, and bidi control."""
    line = _ESCAPES.sub("", line)
    return "".join(
        ch
        for ch in line
        if ch == "\t" or (unicodedata.category(ch) not in _REMOVED_CATEGORIES and ch not in _BIDI_CONTROLS)
    )


def clean_log_lines(raw: bytes) -> list[str]:
    """Decode (what is not UTF-8 becomes U+FFFD), split on ``\\n`` only, clean each line."""
    lines = raw.decode("utf-8", "replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [clean_log_line(line) for line in lines]


def bound_lines(lines: Sequence[str], *, max_lines: int, max_bytes: int) -> tuple[str, ...]:
    """The last lines within both bounds, counting each line's UTF-8 bytes and its newline. A last
    line longer than ``max_bytes`` alone keeps its end."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines[-max_lines:] if max_lines > 0 else []):
        encoded = line.encode()
        if size + len(encoded) + 1 > max_bytes:
            if not kept and max_bytes > 1:
                kept.append(encoded[-(max_bytes - 1) :].decode("utf-8", "ignore"))
            break
        kept.append(line)
        size += len(encoded) + 1
    return tuple(reversed(kept))
