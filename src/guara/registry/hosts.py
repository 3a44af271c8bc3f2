"""Which hosts and ports the registry client talks to: one rule for what users type (image references,
the Registry URL field) and for what registries send back (token realms, redirect locations).

Each check returns None when the value is acceptable, or a sentence saying what is wrong with it, so
callers raise their own error type (user input: ``InvalidReference``/``InvalidRegistry``; a registry's
answer: ``ProtocolViolation``/``UnsupportedChallenge``) and nothing here raises.

The rule, and why:

- **Numeric hosts.** Parsers disagree on them: httpx refuses ``0177.0.0.1`` and ``999.1.1.1`` (an
  exception while building a request), the C resolver reads ``0177.0.0.1`` as octal 127.0.0.1 and
  ``127.1`` as 127.0.0.1, browsers (WHATWG URL) read any host whose last label is a number as IPv4 in
  one of several legacy spellings, and distribution/reference takes all of them for domain names. We
  keep the browsers' test of *what* is an address (the last label is decimal digits, or ``0x`` hex)
  and accept only the one spelling they all read alike: four decimal numbers from 0 to 255 without
  leading zeros. Anything else that ends in a number is refused, never guessed at.
- **Names.** RFC 1123 labels (letters, digits, inner hyphens; 1 to 63 characters; 253 in all; one
  trailing dot allowed). A name with an ``xn--`` label must be a valid IDNA name as a whole, checked
  with the ``idna`` package that httpx uses to read it (httpx raises ``IDNAError`` on the first use of
  such a URL otherwise).
- **IPv6** literals are what ``ipaddress`` accepts, without a zone (``%eth0``): a zone only names a
  link-local interface of this machine.
- **Ports** are 1 to 65535: socket layers raise ``OverflowError`` above that, or silently wrap
  (``getaddrinfo`` turns 99999 into 34463).
"""

from __future__ import annotations

import ipaddress
import re

import httpx
import idna

MAX_HOSTNAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
MIN_PORT, MAX_PORT = 1, 65535

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
# WHATWG's "ends in a number": decimal digits, or a 0x-prefixed hex number (even an empty one).
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
_DECIMAL_OCTET = re.compile(r"0|[1-9][0-9]{0,2}")
_PORT = re.compile(r"[0-9]{1,5}")
IPV4_ADVICE = "write four numbers from 0 to 255 without leading zeros, e.g. 203.0.113.7"


def host_problem(host: str) -> str | None:
    """What is wrong with ``host`` (a name, a dotted-quad IPv4 or an IPv6 literal without brackets),
    or None when it is acceptable."""
    if not host:
        return "the host is empty"
    if ":" in host:
        return _ipv6_problem(host)
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        if _is_dotted_quad(host):
            return None
        return f"{_shown(host)} is not a valid IPv4 address: {IPV4_ADVICE}"
    if len(name) > MAX_HOSTNAME_LENGTH:
        return f"the host is longer than {MAX_HOSTNAME_LENGTH} characters"
    for label in labels:
        if len(label) > MAX_LABEL_LENGTH:
            return f"a label of the host is longer than {MAX_LABEL_LENGTH} characters"
        if not _LABEL.fullmatch(label):
            return f"{_shown(host)} is not a valid host name"
    if any(label[:4].lower() == "xn--" for label in labels):
        try:
            idna.decode(host.lower())
        except UnicodeError:  # idna.IDNAError and its subclasses
            return f"{_shown(host)} is not a valid internationalized host name (a bad xn-- label)"
    return None


def port_problem(port: int) -> str | None:
    """What is wrong with a TCP port number, or None."""
    if MIN_PORT <= port <= MAX_PORT:
        return None
    shown = str(port) if abs(port) < 10**6 else "this large"
    return f"port {shown} is not a TCP port (1 to 65535)"


def authority_problem(authority: str) -> str | None:
    """What is wrong with ``host[:port]`` as written by a user (IPv6 in brackets), or None."""
    if authority.startswith("["):
        inside, close, after = authority[1:].partition("]")
        if not close:
            return f"{_shown(authority)} has an unclosed IPv6 bracket"
        if after and not after.startswith(":"):
            return f"{_shown(authority)} is malformed"
        problem = _ipv6_problem(inside)
        port_text = after[1:] if after else None
    else:
        host, colon, port_text_raw = authority.partition(":")
        problem = host_problem(host)
        port_text = port_text_raw if colon else None
    if problem is not None:
        return problem
    if port_text is not None and (not _PORT.fullmatch(port_text) or port_problem(int(port_text))):
        return f"the port in {_shown(authority)} must be a number from 1 to 65535"
    return None


def url_problem(url: httpx.URL) -> str | None:
    """What is wrong with the host or port of a URL httpx parsed (a realm, a redirect hop), or None."""
    host = url.raw_host.decode("ascii", "replace")
    problem = host_problem(host)
    if problem is None and url.port is not None:
        problem = port_problem(url.port)
    return problem


def _ipv6_problem(text: str) -> str | None:
    if "%" in text:
        return f"{_shown(text)} has an IPv6 zone (%...), which only names an interface of this machine"
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return f"{_shown(text)} is not a valid IPv6 address"
    return None


def _is_dotted_quad(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(_DECIMAL_OCTET.fullmatch(p) and int(p) <= 255 for p in parts)


def _shown(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
