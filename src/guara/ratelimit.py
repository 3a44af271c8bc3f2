"""Preflight rate limit: a moving window per user, in memory or shared through Redis.

A Redis outage must not stop Test Connection for everyone, nor remove the limit: while Redis fails,
each process falls back to its own in-memory window (so the limit holds per process) and logs a
warning once per outage.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItemPerMinute, storage, strategies

from guara.config import redact_url

log = logging.getLogger(__name__)

PREFLIGHTS_PER_MINUTE = 5
# The wizard's anonymous "is this image private?" probe: no product limit, but bounded per user.
PROBES_PER_MINUTE = 30


class PreflightLimiter:
    """A per-user moving window; ``namespace`` keeps separate limits apart in one store."""

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
        self._degraded = False
        if redis_url:
            self._redis_display = redact_url(redis_url)
            self._shared = strategies.MovingWindowRateLimiter(
                storage.storage_from_string(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
            )

    @property
    def backend(self) -> str:
        return "redis" if self._shared is not None else "memory"

    def hit(self, user_key: str) -> int | None:
        """Count one preflight. None when allowed; otherwise seconds until one is allowed again."""
        limiter = self._memory
        if self._shared is not None:
            try:
                allowed = self._shared.hit(self.item, self.namespace, user_key)
            except Exception as exc:  # any Redis client failure: degrade, never block or crash
                self._note_outage(exc)
            else:
                self._note_recovery()
                if allowed:
                    return None
                return self._retry_after(self._shared, user_key)
        if limiter.hit(self.item, self.namespace, user_key):
            return None
        return self._retry_after(limiter, user_key)

    def _retry_after(self, limiter: strategies.MovingWindowRateLimiter, user_key: str) -> int:
        try:
            reset_at, _remaining = limiter.get_window_stats(self.item, self.namespace, user_key)
        except Exception:  # stats are advisory: a full window is the safe answer
            return 60
        return max(1, math.ceil(reset_at - time.time()))

    def _note_outage(self, exc: Exception) -> None:
        if not self._degraded:
            log.warning(
                "rate limit store %s unavailable (%s); limiting per process until it returns",
                self._redis_display,
                type(exc).__name__,
            )
        self._degraded = True

    def _note_recovery(self) -> None:
        if self._degraded:
            log.warning("rate limit store %s is back", self._redis_display)
        self._degraded = False
