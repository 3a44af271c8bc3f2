"""Per-user moving-window limits (Test Connection, the wizard's probe, deploys, sign-in).

In memory by default; shared through Redis when ``GUARA_REDIS_URL`` is set, so several guara processes
share one limit. A Redis outage must not stop everyone, nor remove the limit.

Each process counts every event it admits in its own in-memory window, all the time, and admits an
event only when that window has room *and* Redis (when it answers) agrees: the larger count wins.
While Redis is healthy the shared count is the larger one, so the limit is shared. When Redis fails,
the local window is already warm with what this process admitted in the last minute, so the switch
hands out no fresh allowance; when Redis comes back empty, the local window still holds the outage's
events. The guarantee: in any window, a process admits at most the limit; with N processes and Redis
down, a user gets at most N times the limit (the limit itself with one process).

On failure the limiter logs one warning per outage and leaves Redis alone for ``REDIS_RETRY_AFTER_S``,
so a hung server costs one timeout, not one per request. Async callers use ``hit_async``: Redis I/O
never runs on the event loop.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

import anyio.to_thread
from limits import RateLimitItemPerMinute, storage, strategies

from guara import metrics
from guara.config import redact_url

log = logging.getLogger(__name__)

PREFLIGHTS_PER_MINUTE = 5
# The wizard's anonymous "is this image private?" probe: no product limit, but bounded per user.
PROBES_PER_MINUTE = 30
DEPLOYS_PER_MINUTE = 10
SIGN_INS_PER_MINUTE = 10
REDIS_RETRY_AFTER_S = 30.0


class LocalWindow:
    """A moving window per key in this process's memory: the times of the events it admitted.

    Why not ``limits``' MemoryStorage: it starts a timer thread (10 ms) on nearly every hit to expire
    old events, which under load cost the event loop a thread start per request. Here each key is
    trimmed when it is used, and the whole table is swept when it has grown, so memory stays bounded
    by the keys seen in the last window."""

    def __init__(self, limit: int, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.seconds = seconds
        self._clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._sweep_at = 1024

    def _current(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            return deque()
        while events and events[0] <= now - self.seconds:
            events.popleft()
        return events

    def has_room(self, key: str) -> bool:
        with self._lock:
            return len(self._current(key, self._clock())) < self.limit

    def hit(self, key: str) -> bool:
        """Count one event for ``key`` if the window has room; False (nothing counted) when full."""
        with self._lock:
            now = self._clock()
            events = self._current(key, now)
            if len(events) >= self.limit:
                return False
            events.append(now)
            self._events[key] = events
            if len(self._events) >= self._sweep_at:
                self._sweep(now)
            return True

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` has room again (0 when it has room now)."""
        with self._lock:
            now = self._clock()
            events = self._current(key, now)
            if len(events) < self.limit:
                return 0.0
            return events[-self.limit] + self.seconds - now

    def _sweep(self, now: float) -> None:
        for key in [key for key, events in self._events.items() if not self._current(key, now)]:
            del self._events[key]
        self._sweep_at = max(1024, 2 * len(self._events))


class RateLimiter:
    """A per-key moving window; ``namespace`` keeps separate limits apart in one store; ``clock`` times
    the local window (tests pass their own)."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        per_minute: int = PREFLIGHTS_PER_MINUTE,
        namespace: str = "preflight",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.item = RateLimitItemPerMinute(per_minute)
        self.namespace = namespace
        # This process's own window: counts every admitted event, Redis or not (see the module doc).
        self._local = LocalWindow(per_minute, self.item.get_expiry(), clock)
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
        """``hit`` for async callers: Redis I/O runs in a worker thread; the in-memory window alone is
        a few microseconds of work, done in place."""
        if self._shared is None:
            return self.hit(key)
        return await anyio.to_thread.run_sync(self.hit, key)

    def hit(self, key: str) -> int | None:
        """Count one event. None when allowed; otherwise seconds until one is allowed again."""
        retry_after = self._hit(key)
        if retry_after is not None:
            metrics.count_rate_limited(self.namespace)
        return retry_after

    def _hit(self, key: str) -> int | None:
        # Local first, without counting: a full local window must not spend a shared slot.
        if not self._local.has_room(key):
            return self._local_retry_after(key)
        if self._shared is not None and time.monotonic() >= self._redis_down_until:
            try:
                allowed = self._shared.hit(self.item, self.namespace, key)
            except Exception as exc:  # any Redis client failure: degrade, never block or crash
                self._note_outage(exc)
            else:
                self._note_recovery()
                if not allowed:
                    return self._shared_retry_after(key)
        # Counted locally whatever Redis said, so the window is warm if Redis fails. A concurrent hit
        # of the same key may fill it since the test: then this one is refused (stricter, never looser).
        if self._local.hit(key):
            return None
        return self._local_retry_after(key)

    def _local_retry_after(self, key: str) -> int:
        return max(1, math.ceil(self._local.retry_after(key)))

    def _shared_retry_after(self, key: str) -> int:
        assert self._shared is not None
        try:
            reset_at, _remaining = self._shared.get_window_stats(self.item, self.namespace, key)
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
