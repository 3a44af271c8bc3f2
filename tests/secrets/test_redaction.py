"""Log redaction: the patterns, the per-request secret registry, the filter and its installation."""

from __future__ import annotations

import base64
import contextvars
import io
import json
import logging
import uuid
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import anyio
import httpx
import pytest
from pydantic import SecretStr

from guara.secrets import (
    REDACTED,
    RedactingFilter,
    install_log_redaction,
    redact_text,
    register_secret,
    secret_scope,
)

CANARY = 'c4nary p@ss/wörd:"q"&x=1'


def b64url_json(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


JWT = f"{b64url_json({'alg': 'HS256', 'typ': 'JWT'})}.{b64url_json({'sub': 'bob', 'exp': 1})}.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [REDACTED]"),
        ("authorization: Bearer abc.def-ghi", "authorization: Bearer [REDACTED]"),
        ("Proxy-Authorization: Bearer tok123", "Proxy-Authorization: Bearer [REDACTED]"),
        ("Authorization: rawtoken123 more", "Authorization: [REDACTED]"),
        ("Authorization=token-in-form&next=1", "Authorization=[REDACTED]"),
        (
            "headers={'Authorization': 'Bearer s3cr3t', 'Host': 'x'}",
            "headers={'Authorization': 'Bearer [REDACTED]', 'Host': 'x'}",
        ),
        ('{"authorization": "Basic Zm9vOmJhcg=="}', '{"authorization": "Basic [REDACTED]"}'),
        ("[(b'Authorization', b'Basic Zm9vOmJhcg==')]", "[(b'Authorization', b'Basic [REDACTED]')]"),
        (
            "GET /v2/ HTTP/1.1\r\nAuthorization: Basic Zm9v\r\nHost: r",
            "GET /v2/ HTTP/1.1\r\nAuthorization: Basic [REDACTED]\r\nHost: r",
        ),
        (
            "pulling https://alice:s3cr3t@registry.example.com/v2/",
            "pulling https://[REDACTED]@registry.example.com/v2/",
        ),
        ("https://ghp_abc123@ghcr.io/v2/", "https://[REDACTED]@ghcr.io/v2/"),
        ("http://user:p@ss@host:5000/x?y=z@w", "http://[REDACTED]@host:5000/x?y=z@w"),
        (
            "GET /token?scope=repository:a:pull&password=hunter2&account=bob",
            "GET /token?scope=repository:a:pull&password=[REDACTED]&account=[REDACTED]",
        ),
        # what httpx logs at INFO for every token exchange: the registry user name in the query
        (
            "HTTP Request: GET https://auth.example/token?service=registry&scope=repository%3Aacme%2Fapi"
            '%3Apull&account=alice%40example.com "HTTP/1.1 200 OK"',
            "HTTP Request: GET https://auth.example/token?service=registry&scope=repository%3Aacme%2Fapi"
            '%3Apull&account=[REDACTED] "HTTP/1.1 200 OK"',
        ),
        ("/token?account=robot%24ci&scope=x", "/token?account=[REDACTED]&scope=x"),
        ("https://alice@registry.example.com/v2/", "https://[REDACTED]@registry.example.com/v2/"),
        ("access_token=abc123&expires_in=300", "access_token=[REDACTED]&expires_in=300"),
        (
            "grant_type=password&username=bob&password=s%40cret",
            "grant_type=password&username=[REDACTED]&password=[REDACTED]",
        ),
        (
            "refresh_token=r1 id_token=i2 client_secret=c3",
            f"refresh_token={REDACTED} id_token={REDACTED} client_secret={REDACTED}",
        ),
        ('{"token": "opaque-value", "expires_in": 300}', '{"token": "[REDACTED]", "expires_in": 300}'),
        (
            "secret=a&api_key=b&apikey=c&passwd=d&pwd=e&page=2",
            "secret=[REDACTED]&api_key=[REDACTED]&apikey=[REDACTED]&passwd=[REDACTED]&pwd=[REDACTED]&page=2",
        ),
        ('{"access_token":"a\\"b","x":1}', '{"access_token":"[REDACTED]","x":1}'),
        (
            "{'registry_password': 'pa\\'ss', 'username': 'bob'}",
            "{'registry_password': '[REDACTED]', 'username': '[REDACTED]'}",
        ),
        ("Creds(username='bob', password='pa ss')", "Creds(username=[REDACTED], password=[REDACTED])"),
        (
            '{"registry_username": "bob", "account": "bob"}',
            '{"registry_username": "[REDACTED]", "account": "[REDACTED]"}',
        ),
        (
            'body: {"user": "bob", "password": "hunter2-cut-sh',
            'body: {"user": "bob", "password": "[REDACTED]',
        ),
        ('{"password": "ends\\\nnext": "line"}', '{"password": "[REDACTED]\nnext": "line"}'),
        ("{'Authorization': 'Bearer cut-sh\r\nnext", "{'Authorization': 'Bearer [REDACTED]\r\nnext"),
        (f"token issued: {JWT} for bob", "token issued: [REDACTED] for bob"),
    ],
)
def test_patterns_are_redacted(text: str, expected: str) -> None:
    assert redact_text(text) == expected
    assert redact_text(expected) == expected  # idempotent: safe to apply once per handler


@pytest.mark.parametrize(
    "text",
    [
        'WWW-Authenticate: Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull"',
        "pulled docker.io/library/alpine:3.20@sha256:" + "ab" * 32,
        "user bob@example.com logged in from 203.0.113.7",
        "password reset requested for bob",
        "token bucket has 5 tokens left",
        "accounts: 3, usernames are shown masked",
        "account_id=42 username_masked=bo•••b",
        "preflight ok: code=None elapsed_ms=120",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


# --- registered secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        CANARY,
        quote(CANARY, safe=""),
        quote_plus(CANARY),
        json.dumps(CANARY)[1:-1],
        json.dumps(CANARY, ensure_ascii=False)[1:-1],
        repr(CANARY)[1:-1],
    ],
    ids=["raw", "percent", "plus", "json-ascii", "json", "repr"],
)
def test_registered_secret_is_scrubbed_in_every_spelling(spelling: str) -> None:
    with secret_scope():
        register_secret(CANARY)
        assert redact_text(f"before <{spelling}> after") == f"before <{REDACTED}> after"


def test_registered_secret_is_forgotten_when_the_scope_ends() -> None:
    with secret_scope():
        register_secret(SecretStr("s3cr3t-value"))
        assert redact_text("x s3cr3t-value") == f"x {REDACTED}"
    assert redact_text("x s3cr3t-value") == "x s3cr3t-value"


def test_nested_scopes_keep_outer_secrets() -> None:
    with secret_scope():
        register_secret("outer-secret")
        with secret_scope():
            register_secret("inner-secret")
            assert redact_text("outer-secret inner-secret") == f"{REDACTED} {REDACTED}"
        assert redact_text("outer-secret inner-secret") == f"{REDACTED} inner-secret"


def test_empty_secret_is_ignored() -> None:
    with secret_scope():
        register_secret("")
        assert redact_text("abc") == "abc"


def test_registration_outside_a_scope_lasts_for_its_context() -> None:
    def inside() -> str:
        register_secret("context-secret")
        return redact_text("context-secret")

    assert contextvars.copy_context().run(inside) == REDACTED
    assert redact_text("context-secret") == "context-secret"


@pytest.mark.anyio
async def test_scope_covers_child_tasks_and_threads() -> None:
    seen: list[str] = []

    async def child() -> None:
        register_secret("child-secret")
        seen.append(redact_text("parent-secret"))

    with secret_scope():
        register_secret("parent-secret")
        async with anyio.create_task_group() as group:
            group.start_soon(child)
        seen.append(redact_text("child-secret"))
        seen.append(await anyio.to_thread.run_sync(redact_text, "parent-secret child-secret"))
    assert seen == [REDACTED, REDACTED, f"{REDACTED} {REDACTED}"]


# --- the filter --------------------------------------------------------------------------------------


class RecordCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO, RecordCollector]]:
    """A private logger whose stream handler redacts; a collector sees the records afterwards."""
    logger = logging.getLogger(f"tests.secrets.redaction.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    collector = RecordCollector()
    logger.addHandler(handler)
    logger.addHandler(collector)
    yield logger, stream, collector
    logger.handlers.clear()


def test_filter_redacts_the_formatted_message(
    logged: tuple[logging.Logger, io.StringIO, RecordCollector],
) -> None:
    logger, stream, collector = logged
    with secret_scope():
        register_secret(CANARY)
        logger.info("login %s with %s", "bob", CANARY)
        logger.info("%(who)s sent %(pw)s", {"who": "bob", "pw": CANARY})
        logger.info("Authorization: %s %s", "Bearer", "tok-from-args")
        logger.info({"password": "dict-as-message"})
    assert stream.getvalue().splitlines() == [
        f"INFO login bob with {REDACTED}",
        f"INFO bob sent {REDACTED}",
        f"INFO Authorization: Bearer {REDACTED}",
        f"INFO {{'password': '{REDACTED}'}}",
    ]
    assert all(record.args is None for record in collector.records)


def test_filter_redacts_tracebacks(logged: tuple[logging.Logger, io.StringIO, RecordCollector]) -> None:
    logger, stream, collector = logged
    with secret_scope():
        register_secret(CANARY)
        try:
            try:
                raise KeyError(f"lookup {CANARY}")
            except KeyError as inner:
                raise ValueError(f"rejected https://bob:url-pass@127.0.0.1/v2/ with {CANARY}") from inner
        except ValueError:
            logger.exception("preflight failed for %s", CANARY)
    output = stream.getvalue()
    assert f"ERROR preflight failed for {REDACTED}" in output
    assert f"ValueError: rejected https://{REDACTED}@127.0.0.1/v2/ with {REDACTED}" in output
    assert f"KeyError: 'lookup {REDACTED}'" in output
    assert "Traceback (most recent call last)" in output
    assert "c4nary" not in output
    assert "url-pass" not in output
    # The raw exception is gone from the record, so no later handler can render it again.
    (record,) = collector.records
    assert record.exc_info is None
    assert record.exc_text is not None
    assert "c4nary" not in record.exc_text


def test_filter_redacts_stack_info(logged: tuple[logging.Logger, io.StringIO, RecordCollector]) -> None:
    logger, stream, _ = logged
    logger.info("where", stack_info=True)  # password=in-source-line
    output = stream.getvalue()
    assert "Stack (most recent call last)" in output
    assert f"password={REDACTED}" in output
    assert "in-source-line" not in output


def test_filter_survives_a_bad_format_string(
    logged: tuple[logging.Logger, io.StringIO, RecordCollector], capsys: pytest.CaptureFixture[str]
) -> None:
    logger, stream, _ = logged
    with secret_scope():
        register_secret(CANARY)
        logger.info("%d items", CANARY)
    assert stream.getvalue() == "INFO %d items [arguments not shown: they did not fit the format]\n"
    assert "Logging error" not in capsys.readouterr().err


def test_filter_is_idempotent_across_handlers(
    logged: tuple[logging.Logger, io.StringIO, RecordCollector],
) -> None:
    logger, stream, _ = logged
    second = io.StringIO()
    handler = logging.StreamHandler(second)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        raise RuntimeError("token=in-exception")
    except RuntimeError:
        logger.exception("GET https://u:p@127.0.0.1/?access_token=zz")
    assert stream.getvalue() == second.getvalue()
    assert f"GET https://{REDACTED}@127.0.0.1/?access_token={REDACTED}" in second.getvalue()
    assert f"RuntimeError: token={REDACTED}" in second.getvalue()


# --- installation ------------------------------------------------------------------------------------


def _filterers() -> list[logging.Filterer]:
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    return [*loggers, *(handler for logger in loggers for handler in logger.handlers)]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    before = {id(filterer): list(filterer.filters) for filterer in _filterers()}
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    httpx_level = logging.getLogger("httpx").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(httpx_level)
    for filterer in _filterers():
        filterer.filters[:] = before.get(
            id(filterer), [f for f in filterer.filters if not isinstance(f, RedactingFilter)]
        )


def _redacting_filters(filterer: logging.Filterer) -> int:
    return sum(isinstance(f, RedactingFilter) for f in filterer.filters)


def test_install_covers_handlers_and_http_loggers(restore_logging: None) -> None:
    root_handler = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(root_handler)
    access = logging.getLogger(f"tests.secrets.access.{uuid.uuid4().hex}")
    access.propagate = False
    access_handler = logging.StreamHandler(io.StringIO())
    access.addHandler(access_handler)
    http11 = logging.getLogger("httpcore.http11")

    returned = install_log_redaction()
    install_log_redaction()  # idempotent

    assert isinstance(returned, RedactingFilter)
    for filterer in (
        root_handler,
        access_handler,
        logging.getLogger("httpx"),
        logging.getLogger("httpcore"),
        http11,
    ):
        assert _redacting_filters(filterer) == 1
    access.removeHandler(access_handler)


def test_installed_redaction_scrubs_real_httpx_logs(restore_logging: None) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger("httpx").setLevel(logging.INFO)
    install_log_redaction()

    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"token": JWT}))
    with httpx.Client(transport=transport) as client:
        response = client.get(
            "https://alice:url-s3cr3t@127.0.0.1/token?service=registry&access_token=query-s3cr3t"
            "&account=registry-user-7",
            headers={"Authorization": "Bearer header-s3cr3t"},
        )
    logging.getLogger("tests.secrets").warning("token response: %s", response.text)

    output = stream.getvalue()
    assert (
        f"httpx HTTP Request: GET https://{REDACTED}@127.0.0.1/token?service=registry&access_token={REDACTED}"
        f"&account={REDACTED}" in output
    )
    assert f'token response: {{"token":"{REDACTED}"}}' in output
    for secret in ("url-s3cr3t", "query-s3cr3t", "header-s3cr3t", JWT[:20], "registry-user-7", "alice"):
        assert secret not in output
