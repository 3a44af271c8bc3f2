"""Per-user moving-window limits (Test Connection, the wizard's probe, deploys, sign-in).

In memory by default; shared through Redis when ``GUARA_REDIS_URL`` is set, so several guara processes
share one limit. A Redis outage must not stop everyone, nor remove the limit: while Redis fails, each
process falls back to its own in-memory window (the limit holds per process), logs one warning per
outage, and leaves Redis alone for ``REDIS_RETRY_AFTER_S`` so a hung server costs one timeout, not one
per request. Async callers use ``hit_async``: Redis I/O never runs on the event loop.
"""

from __future__ import annotations

import logging
import math
import threading
import time

import anyio.to_thread
from limits import RateLimitItemPerMinute, storage, strategies

from guara.config import redact_url

log = logging.getLogger(__name__)

PREFLIGHTS_PER_MINUTE = 5
# The wizard's anonymous "is this image private?" probe: no product limit, but bounded per user.
PROBES_PER_MINUTE = 30
DEPLOYS_PER_MINUTE = 10
SIGN_INS_PER_MINUTE = 10
REDIS_RETRY_AFTER_S = 30.0


class PreflightLimiter:
    """A per-key moving window; ``namespace`` keeps separate limits apart in one store."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        per_minute: int = PREFLIGHTS_PER_MINUTE,
        namespace: str = "preflight",
    ) -> None:
        self.item = RateLimitItemPerMinute(per_minute)
        self.namespace = namespace
        self._memory = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._shared: strategies.MovingWindowRateLimiter | None = None
        self._lock = threading.Lock()
        self._redis_down_until = 0.0
        if redis_url:
            self._redis_display = redact_url(redis_url)
            self._shared = strategies.MovingWindowRateLimiter(
                storage.storage_from_string(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
            )

    @property
    def backend(self) -> str:
        return "redis" if self._shared is not None else "memory"

    async def hit_async(self, key: str) -> int | None:
        return await anyio.to_thread.run_sync(self.hit, key)

    def hit(self, key: str) -> int | None:
        """Count one event. None when allowed; otherwise seconds until one is allowed again."""
        if self._shared is not None and time.monotonic() >= self._redis_down_until:
            try:
                allowed = self._shared.hit(self.item, self.namespace, key)
            except Exception as exc:  # any Redis client failure: degrade, never block or crash
                self._note_outage(exc)
            else:
                self._note_recovery()
                return None if allowed else self._retry_after(self._shared, key)
        if self._memory.hit(self.item, self.namespace, key):
            return None
        return self._retry_after(self._memory, key)

    def _retry_after(self, limiter: strategies.MovingWindowRateLimiter, key: str) -> int:
        try:
            reset_at, _remaining = limiter.get_window_stats(self.item, self.namespace, key)
        except Exception:  # stats are advisory: a full window is the safe answer
            return 60
        return max(1, math.ceil(reset_at - time.time()))

    def _note_outage(self, exc: Exception) -> None:
        with self._lock:
            first = self._redis_down_until == 0.0
            self._redis_down_until = time.monotonic() + REDIS_RETRY_AFTER_S
        if first:
            log.warning(
                "rate limit store %s unavailable (%s); limiting per process until it returns",
                self._redis_display,
                type(exc).__name__,
            )

    def _note_recovery(self) -> None:
        with self._lock:
            was_down = self._redis_down_until != 0.0
            self._redis_down_until = 0.0
        if was_down:
            log.warning("rate limit store %s is back", self._redis_display)
