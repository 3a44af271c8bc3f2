"""The one error the remote commands raise, shaped like the API's error answers.

RemoteError            code + message (+ retry_after), printed as ``guara: <code>: <message>``
  raised for: an API error answer (its own code), the server unreachable or timing out, an answer
  that is not guara's, no login, a name that matches no object or several
"""

from __future__ import annotations


class RemoteError(Exception):
    def __init__(self, code: str, message: str, *, status: int | None = None, retry_after: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after
