"""Log redaction: a logging filter that scrubs credentials from every record it sees.

What is replaced by ``[REDACTED]``:

- the value of an ``Authorization`` or ``Proxy-Authorization`` header, in header form
  (``Authorization: Basic ...``, up to the end of the line) or quoted in a dict/tuple repr or JSON;
  a well-known scheme word (Basic, Bearer, ...) is kept so the log still says which kind it was;
- the userinfo of a URL, user name included (``https://user:pass@host`` and ``https://user@host``
  become ``https://[REDACTED]@host``);
- values of ``password``, ``passwd``, ``pwd``, ``secret``, ``client_secret``, ``token``, ``access_token``,
  ``refresh_token``, ``id_token``, ``api_key``, ``apikey``, and of the user-name fields ``username``
  and ``account`` (the token request's query parameter), also with a prefix such as
  ``registry_password``, as ``name=value`` query, form or keyword text, and as quoted keys in
  JSON or dict reprs;
- JWT-looking strings (``eyJ...`` ``.`` ``eyJ...`` ``.`` signature);
- every string registered with ``register_secret`` in the current context, plus its percent-encoded,
  JSON-escaped and repr-escaped spellings.

The filter formats the message with its arguments first and redacts the result, then renders the
exception traceback once, redacts it into ``record.exc_text`` and clears ``record.exc_info``, so no
later formatter can render the raw exception again. It does not look at custom ``extra=`` attributes.

Secrets registered with ``register_secret`` live in a context variable: a request handler opens
``secret_scope()`` and everything logged from that request (its tasks and threads included, as they
copy the context) is scrubbed of them; they are forgotten when the scope ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from urllib.parse import quote, quote_plus

from pydantic import SecretStr

REDACTED = "[REDACTED]"

_KNOWN_SCHEMES = frozenset({"basic", "bearer", "digest", "token", "negotiate", "ntlm"})
_CREDENTIAL_FIELDS = (
    r"password|passwd|pwd|client_secret|secret|access_token|refresh_token|id_token|token|api_key|apikey"
)
# Registry user names are not secrets, but they name people and robot accounts, and every token
# request carries one (``account=``) in the URL httpx logs at INFO: logs never need them.
_IDENTITY_NAMES = r"username|account"
_SENSITIVE_NAMES = rf"(?:{_CREDENTIAL_FIELDS}|{_IDENTITY_NAMES})"
_ALREADY_REDACTED = re.escape(REDACTED)

# A quoted value ends at its closing quote, or at the end of the line when a log cut it short.
_AUTH_QUOTED = re.compile(
    r"""\b((?:proxy-)?authorization["']?\s*[:=,]\s*b?)(["'])((?:(?!\2)[^\r\n])*)(\2|(?=[\r\n])|\Z)""",
    re.IGNORECASE,
)
_AUTH_HEADER = re.compile(r"\b((?:proxy-)?authorization[ \t]*[:=][ \t]*)([^\r\n]*)", re.IGNORECASE)
_SCHEME_AND_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9-]*)([ \t]+)\S")
# The scheme length is bounded so that long runs of dots and dashes cannot make the search quadratic.
_URL_USERINFO = re.compile(r"([a-z][a-z0-9+.-]{0,31}://)[^\s/?#]*@", re.IGNORECASE)
_QUOTED_FIELD = re.compile(
    r"""(["'])((?:[A-Za-z0-9]+[_-])*"""
    + _SENSITIVE_NAMES
    + r""")\1(\s*:\s*b?)(["'])((?:(?!\4)[^\r\n\\]|\\[^\r\n]|\\(?=[\r\n]|\Z))*)(\4|(?=[\r\n])|\Z)""",
    re.IGNORECASE,
)
_ASSIGNED_FIELD = re.compile(
    r"(?<![A-Za-z0-9])("
    + _SENSITIVE_NAMES
    + r")=("
    + _ALREADY_REDACTED
    + r"""|"[^"\r\n]*"|'[^'\r\n]*'|[^&\s"',;)}\]]*)""",
    re.IGNORECASE,
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


class _ScopeSecrets(set[str]):
    """The set a ``secret_scope`` owns: child tasks and threads of the scope add to it in place."""


_known_secrets: ContextVar[set[str] | None] = ContextVar("guara_known_secrets", default=None)


def register_secret(value: str | SecretStr) -> None:
    """Scrub ``value`` (and its encoded spellings) from every log record of the current context.

    Call it as soon as a password or token enters a request. Outside ``secret_scope()`` the secret is
    kept for the rest of the current context (a task, a thread, or the whole program).
    """
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not text:
        return
    secrets = _known_secrets.get()
    if isinstance(secrets, _ScopeSecrets):
        secrets.update(_spellings(text))
    else:
        # Outside a scope, copy on write: a copied context must not add to its parent's set.
        _known_secrets.set((secrets or set()) | set(_spellings(text)))


@contextlib.contextmanager
def secret_scope() -> Iterator[None]:
    """Secrets registered inside are scrubbed until the scope ends (secrets of outer scopes stay)."""
    outer = _known_secrets.get()
    token = _known_secrets.set(_ScopeSecrets(outer or ()))
    try:
        yield
    finally:
        _known_secrets.reset(token)


def redact_text(text: str) -> str:
    """``text`` with every credential this module recognises replaced by ``[REDACTED]``."""
    secrets = _known_secrets.get()
    if secrets:
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
    text = _AUTH_QUOTED.sub(lambda m: f"{m[1]}{m[2]}{_redact_credentials(m[3])}{m[4]}", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m[1]}{_redact_credentials(m[2])}", text)
    text = _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _QUOTED_FIELD.sub(lambda m: f"{m[1]}{m[2]}{m[1]}{m[3]}{m[4]}{REDACTED}{m[6]}", text)
    text = _ASSIGNED_FIELD.sub(rf"\1={REDACTED}", text)
    return _JWT.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """Rewrites each record with its message, traceback and stack redacted; never drops a record."""

    _traceback_formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(_formatted_message(record))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._traceback_formatter.formatException(record.exc_info)
        record.exc_info = None
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install_log_redaction(*, loggers: Iterable[str] = ("httpx", "httpcore")) -> RedactingFilter:
    """Attach the redacting filter to every handler configured now, and to ``loggers`` and their children.

    Idempotent. Handlers added later (say, by a logging config applied afterwards) are not covered:
    call it again after reconfiguring logging.
    """
    names = tuple(loggers)
    existing = [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    for logger in [logging.getLogger(), *existing]:
        for handler in logger.handlers:
            _attach(handler)
    for name in names:
        _attach(logging.getLogger(name))
    for logger in existing:
        if logger.name.startswith(tuple(f"{name}." for name in names)):
            _attach(logger)
    return _FILTER


def _attach(filterer: logging.Handler | logging.Logger) -> None:
    if not any(isinstance(existing, RedactingFilter) for existing in filterer.filters):
        filterer.addFilter(_FILTER)


def _formatted_message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a bad format string must not crash the caller, nor let its arguments through
        try:
            template = str(record.msg)
        except Exception:
            template = "<unprintable log message>"
        return f"{template} [arguments not shown: they did not fit the format]"


def _redact_credentials(value: str) -> str:
    if not value.strip():
        return value
    match = _SCHEME_AND_CREDENTIALS.match(value)
    if match is not None and match[1].lower() in _KNOWN_SCHEMES:
        return f"{match[1]}{match[2]}{REDACTED}"
    return REDACTED


def _spellings(secret: str) -> set[str]:
    spellings = {
        secret,
        quote(secret, safe="", errors="surrogatepass"),
        quote_plus(secret, safe="", errors="surrogatepass"),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
    }
    return {spelling for spelling in spellings if spelling}
