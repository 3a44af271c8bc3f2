"""Log set-up: plain text for people, or one JSON object a line for log pipelines, always redacted.

The request a line belongs to, and the caller when known, travel in context variables set by the HTTP
layer (``guara.http.telemetry``, ``guara.http.auth``); work a request starts in the background (a
deploy) keeps them.
"""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("guara_request_id", default=None)
user_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("guara_user_id", default=None)


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, request_id and user_id (when known), and the traceback text.

    Runs after the redacting filter, which has already rewritten the message and the traceback text
    (``exc_text``), so only those are written, never the raw arguments or exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid, uid = request_id.get(), user_id.get()
        if rid is not None:
            line["request_id"] = rid
        if uid is not None:
            line["user_id"] = uid
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Root logging at ``level`` in ``log_format``, with the redacting filter on every handler."""
    from guara.secrets import install_log_redaction

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])  # no-op where logging is set up already
    install_log_redaction()
