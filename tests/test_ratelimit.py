"""The preflight rate limit: memory, Redis, two processes sharing Redis, and a Redis outage."""

from __future__ import annotations

import logging
import uuid

import pytest

from guara.ratelimit import PreflightLimiter


def _exhaust(limiter: PreflightLimiter, user: str) -> list[int | None]:
    return [limiter.hit(user) for _ in range(6)]


def test_memory_limit_is_five_per_minute_per_user() -> None:
    limiter = PreflightLimiter()
    assert limiter.backend == "memory"
    results = _exhaust(limiter, "u1")
    assert results[:5] == [None] * 5
    assert results[5] is not None and 1 <= results[5] <= 60
    assert limiter.hit("u2") is None


@pytest.mark.redis
def test_redis_limit_is_shared_between_limiters(redis_url: str) -> None:
    user = f"user-{uuid.uuid4()}"
    process_a = PreflightLimiter(redis_url)
    process_b = PreflightLimiter(redis_url)
    assert process_a.backend == "redis"
    assert [process_a.hit(user) for _ in range(3)] == [None] * 3
    assert [process_b.hit(user) for _ in range(2)] == [None] * 2
    retry_after = process_a.hit(user)
    assert retry_after is not None and 1 <= retry_after <= 60
    assert process_b.hit(user) is not None


def test_a_hung_redis_is_asked_once_per_outage_not_once_per_request() -> None:
    """A Redis that accepts connections and never answers: one timeout, then the breaker holds."""
    import socket

    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(64)
    try:
        limiter = PreflightLimiter(f"redis://127.0.0.1:{mute.getsockname()[1]}/0")
        results = _exhaust(limiter, "u1")
        mute.settimeout(0.1)
        attempts = 0
        while True:
            try:
                mute.accept()[0].close()
            except TimeoutError:
                break
            attempts += 1
    finally:
        mute.close()
    assert results[:5] == [None] * 5
    assert results[5] is not None
    assert attempts == 1


def test_redis_outage_falls_back_to_a_per_process_limit(caplog: pytest.LogCaptureFixture) -> None:
    limiter = PreflightLimiter("redis://:sekrit-pw@127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING, logger="guara.ratelimit"):
        results = _exhaust(limiter, "u1")
    assert results[:5] == [None] * 5
    assert results[5] is not None
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "unavailable" in warnings[0]
    assert "sekrit-pw" not in warnings[0]
