"""``WWW-Authenticate`` challenges (RFC 9110 §11.6.1), parsed into data.

Grammar::

    header     = #challenge                      ; comma-separated, empty elements allowed
    challenge  = scheme [ 1*SP ( token68 / #auth-param ) ]
    auth-param = token BWS "=" BWS ( token / quoted-string / empty )

One left-to-right scan with an index, no backtracking: linear in the header length. Anything that
does not fit raises ValueError; no other exception escapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NoReturn

# RFC 9110 tchar
_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_TOKEN68_CHARS = frozenset("-._~+/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_WHITESPACE = frozenset(" \t")


@dataclass(frozen=True)
class Challenge:
    """One challenge: ``scheme`` lower-case, ``params`` with lower-case keys (values as sent),
    ``token68`` for the rare schemes that carry a bare token instead of parameters."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse one ``WWW-Authenticate`` header value into its challenges (possibly several)."""
    if not isinstance(header, str):
        raise ValueError("a WWW-Authenticate header must be text")
    return _Parser(header).parse()


def parse_www_authenticate_headers(headers: Iterable[str]) -> list[Challenge]:
    """Parse several ``WWW-Authenticate`` header lines (a response may repeat the header): all their
    challenges in order."""
    challenges: list[Challenge] = []
    for header in headers:
        challenges.extend(parse_www_authenticate(header))
    return challenges


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.end = len(text)

    def parse(self) -> list[Challenge]:
        challenges: list[Challenge] = []
        self._skip_list_separators()
        while self.pos < self.end:
            challenges.append(self._challenge())
            self._skip_list_separators()
        return challenges

    # -- grammar --

    def _challenge(self) -> Challenge:
        scheme = self._token()
        if not scheme:
            self._fail("expected an authentication scheme")
        if self.pos < self.end and self.text[self.pos] not in _WHITESPACE and self.text[self.pos] != ",":
            self._fail("expected a space after the scheme")
        self._skip_ows()
        if self.pos >= self.end or self.text[self.pos] == ",":
            return Challenge(scheme=scheme.lower())
        token68 = self._try_token68()
        if token68 is not None:
            return Challenge(scheme=scheme.lower(), token68=token68)
        params: dict[str, str] = {}
        while True:
            name, value = self._param()
            if name in params:
                self._fail(f"parameter {name!r} given twice")
            params[name] = value
            # After a parameter: end, or a comma followed by another parameter or the next challenge.
            self._skip_ows()
            if self.pos >= self.end:
                break
            if self.text[self.pos] != ",":
                self._fail("expected a comma between parameters")
            self._skip_list_separators()
            if self.pos >= self.end or not self._param_follows():
                break
        return Challenge(scheme=scheme.lower(), params=params)

    def _param(self) -> tuple[str, str]:
        name = self._token()
        if not name:
            self._fail("expected a parameter name")
        self._skip_ows()
        if self.pos >= self.end or self.text[self.pos] != "=":
            self._fail(f"expected '=' after {name!r}")
        self.pos += 1
        self._skip_ows()
        if self.pos >= self.end or self.text[self.pos] == ",":
            return name.lower(), ""
        if self.text[self.pos] == '"':
            return name.lower(), self._quoted_string()
        value = self._token()
        if not value:
            self._fail(f"expected a value for {name!r}")
        return name.lower(), value

    def _param_follows(self) -> bool:
        """Look ahead: is the next element ``token BWS =`` (a parameter) rather than a new scheme?"""
        pos = self.pos
        while pos < self.end and self.text[pos] in _TCHARS:
            pos += 1
        if pos == self.pos:
            return False
        while pos < self.end and self.text[pos] in _WHITESPACE:
            pos += 1
        return pos < self.end and self.text[pos] == "="

    def _try_token68(self) -> str | None:
        """A token68 is ``1*tchar68 *"="`` ending the challenge. ``name=value`` is a parameter, and a
        single ``name=`` at the end is read as a parameter with an empty value."""
        start = pos = self.pos
        while pos < self.end and self.text[pos] in _TOKEN68_CHARS:
            pos += 1
        if pos == start:
            return None
        body_end = pos
        while pos < self.end and self.text[pos] == "=":
            pos += 1
        equals = pos - body_end
        after = pos
        while after < self.end and self.text[after] in _WHITESPACE:
            after += 1
        if after < self.end and self.text[after] != ",":
            return None
        if equals == 1 and all(c in _TCHARS for c in self.text[start:body_end]):
            return None  # "name=" : an empty parameter
        self.pos = after
        return self.text[start:pos]

    # -- lexical --

    def _token(self) -> str:
        start = self.pos
        while self.pos < self.end and self.text[self.pos] in _TCHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def _quoted_string(self) -> str:
        self.pos += 1  # opening quote
        parts: list[str] = []
        chunk_start = self.pos
        while self.pos < self.end:
            char = self.text[self.pos]
            if char == '"':
                parts.append(self.text[chunk_start : self.pos])
                self.pos += 1
                return "".join(parts)
            if char == "\\":
                parts.append(self.text[chunk_start : self.pos])
                if self.pos + 1 >= self.end:
                    break
                parts.append(self.text[self.pos + 1])
                self.pos += 2
                chunk_start = self.pos
                continue
            if char in "\r\n\x00":
                self._fail("control character inside a quoted string")
            self.pos += 1
        self._fail("unterminated quoted string")

    def _skip_ows(self) -> None:
        while self.pos < self.end and self.text[self.pos] in _WHITESPACE:
            self.pos += 1

    def _skip_list_separators(self) -> None:
        while self.pos < self.end and (self.text[self.pos] in _WHITESPACE or self.text[self.pos] == ","):
            self.pos += 1

    def _fail(self, what: str) -> NoReturn:
        raise ValueError(f"malformed WWW-Authenticate header at character {self.pos}: {what}")
