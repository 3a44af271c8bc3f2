"""One wall-clock budget shared by every request of an operation.

httpx's per-phase timeouts restart on each read, so a server trickling a byte a second never trips
them; the budget is therefore enforced twice: an anyio cancel scope around the whole operation (the
authority), and the remaining time handed to httpx for each request (so sockets give up on time too).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import anyio
import httpx

from .errors import DeadlineExceeded


class Deadline:
    """A point in monotonic time. Create it when the operation starts: ``Deadline(8.0)``."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if seconds <= 0:
            raise ValueError("a deadline needs a positive number of seconds")
        self._clock = clock
        self.seconds = seconds
        self.started = clock()
        self.expires = self.started + seconds

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(self.expires - self._clock(), 0.0)

    def elapsed(self) -> float:
        return self._clock() - self.started

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def httpx_timeout(self) -> httpx.Timeout:
        """Every phase of the next request may take at most what is left."""
        left = self.remaining()
        if left <= 0.0:
            raise DeadlineExceeded(f"the {self.seconds:g} s deadline passed")
        return httpx.Timeout(left)

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Cancel whatever runs inside once the deadline passes; raise DeadlineExceeded then."""
        try:
            with anyio.fail_after(self.remaining()):
                yield
        except TimeoutError as exc:
            if isinstance(exc, DeadlineExceeded):
                raise
            raise DeadlineExceeded(f"the {self.seconds:g} s deadline passed") from exc

    def __repr__(self) -> str:
        return f"Deadline(seconds={self.seconds:g}, remaining={self.remaining():.3f})"
