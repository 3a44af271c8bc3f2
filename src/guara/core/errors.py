"""Errors raised by the use cases. Each carries a stable machine ``code`` and a human ``message``.

GuaraError
├── InvalidInput            code "invalid_input" (or a more precise one, e.g. "invalid_image")
├── NotAuthenticated        code "not_authenticated"
├── NotFound                code "not_found" — also for other users' objects, so nothing leaks
├── Forbidden               code "forbidden": a member whose role does not allow the action
├── Conflict                code "conflict" (a racing save, a taken name, setup already done)
├── RateLimited             code "rate_limited", with ``retry_after`` seconds
├── PreflightFailed         code = the preflight's code (auth_failed, timeout, …)
└── CredentialsUnreadable   code "credentials_unreadable" (a stored secret failed to open)

The API maps each class to one HTTP status in one place (``guara.api.errors``).
"""

from __future__ import annotations


class GuaraError(Exception):
    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(GuaraError):
    code = "invalid_input"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class NotAuthenticated(GuaraError):
    code = "not_authenticated"


class NotFound(GuaraError):
    code = "not_found"


class Forbidden(GuaraError):
    code = "forbidden"


class Conflict(GuaraError):
    code = "conflict"


class RateLimited(GuaraError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PreflightFailed(GuaraError):
    def __init__(self, message: str, *, code: str, elapsed_ms: int) -> None:
        super().__init__(message, code=code)
        self.elapsed_ms = elapsed_ms


class CredentialsUnreadable(GuaraError):
    code = "credentials_unreadable"
