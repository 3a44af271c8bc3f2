"""The preflight rate limit: memory, Redis, two processes sharing Redis, and a Redis outage."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from guara import ratelimit
from guara.ratelimit import LocalWindow, RateLimiter
from tests.support import ManualClock


def _exhaust(limiter: RateLimiter, user: str) -> list[int | None]:
    return [limiter.hit(user) for _ in range(6)]


def test_memory_limit_is_five_per_minute_per_user() -> None:
    limiter = RateLimiter()
    assert limiter.backend == "memory"
    results = _exhaust(limiter, "u1")
    assert results[:5] == [None] * 5
    assert results[5] is not None and 1 <= results[5] <= 60
    assert limiter.hit("u2") is None


def test_local_window_moves_event_by_event() -> None:
    clock = ManualClock()
    window = LocalWindow(limit=3, seconds=60, clock=clock)
    for _ in range(3):
        assert window.hit("u")
        clock.now += 10  # events at 1000, 1010, 1020
    assert not window.has_room("u")
    assert not window.hit("u")  # refused: nothing counted
    assert window.retry_after("u") == pytest.approx(30)  # 1000 + 60 - 1030
    clock.now = 1060.0  # the first event leaves the window exactly now
    assert window.has_room("u")
    assert window.retry_after("u") == 0
    assert window.hit("u")
    assert not window.hit("u")
    assert window.retry_after("u") == pytest.approx(10)  # the event at 1010 leaves at 1070
    assert window.hit("other")


def test_local_window_forgets_keys_whose_events_left_it() -> None:
    clock = ManualClock()
    window = LocalWindow(limit=5, seconds=60, clock=clock)
    for i in range(10_000):
        assert window.hit(f"user-{i}")
        clock.now += 0.1  # 100 s in all: keys older than 60 s are swept as the table grows
    assert len(window._events) <= 2048
    assert window.hit("user-9999")  # a recent key is still counted...
    assert [window.hit("user-9999") for _ in range(4)] == [True, True, True, False]


def test_memory_limit_says_when_to_retry() -> None:
    clock = ManualClock()
    limiter = RateLimiter(per_minute=2, clock=clock)
    assert [limiter.hit("u"), limiter.hit("u")] == [None, None]
    clock.now += 45
    assert limiter.hit("u") == 15
    clock.now += 14.5
    assert limiter.hit("u") == 1  # rounded up: never "retry in 0 seconds"
    clock.now += 0.5
    assert limiter.hit("u") is None


@pytest.mark.redis
def test_redis_limit_is_shared_between_limiters(redis_url: str) -> None:
    user = f"user-{uuid.uuid4()}"
    process_a = RateLimiter(redis_url)
    process_b = RateLimiter(redis_url)
    assert process_a.backend == "redis"
    assert [process_a.hit(user) for _ in range(3)] == [None] * 3
    assert [process_b.hit(user) for _ in range(2)] == [None] * 2
    retry_after = process_a.hit(user)
    assert retry_after is not None and 1 <= retry_after <= 60
    assert process_b.hit(user) is not None


def test_a_hung_redis_is_asked_once_per_outage_not_once_per_request() -> None:
    """A Redis that accepts connections and never answers: one timeout, then the breaker holds."""
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(64)
    try:
        limiter = RateLimiter(f"redis://127.0.0.1:{mute.getsockname()[1]}/0")
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
    limiter = RateLimiter("redis://:sekrit-pw@127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING, logger="guara.ratelimit"):
        results = _exhaust(limiter, "u1")
    assert results[:5] == [None] * 5
    assert results[5] is not None
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "unavailable" in warnings[0]
    assert "sekrit-pw" not in warnings[0]


class CuttableProxy:
    """A loopback TCP proxy in front of Redis: ``cut()`` is an outage (connections reset, new ones
    refused), ``restore()`` brings it back on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            sockets, self._open = [*self._open], []
            listener, self._listener = self._listener, None
        for sock in [*sockets, *([listener] if listener else [])]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[CuttableProxy]:
    parsed = urlsplit(redis_url)
    proxy = CuttableProxy((parsed.hostname or "127.0.0.1", parsed.port or 6379))
    proxy.restore()
    yield proxy
    proxy.cut()


@pytest.mark.redis
def test_an_outage_does_not_hand_out_a_fresh_window(redis_proxy: CuttableProxy) -> None:
    user = f"user-{uuid.uuid4()}"
    limiter = RateLimiter(redis_proxy.url)
    assert [limiter.hit(user) for _ in range(3)] == [None] * 3
    redis_proxy.cut()
    # 2 more in this minute, not 5: the per-process window already holds the 3 it admitted.
    results = [limiter.hit(user) for _ in range(3)]
    assert results[:2] == [None, None]
    assert results[2] is not None and 1 <= results[2] <= 60


@pytest.mark.redis
def test_redis_coming_back_empty_does_not_hand_out_a_fresh_window(
    redis_proxy: CuttableProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ratelimit, "REDIS_RETRY_AFTER_S", 0.0)  # ask Redis again on every hit
    user = f"user-{uuid.uuid4()}"
    redis_proxy.cut()
    limiter = RateLimiter(redis_proxy.url)
    assert [limiter.hit(user) for _ in range(5)] == [None] * 5  # counted in this process only
    redis_proxy.restore()
    assert limiter.hit(user) is not None  # Redis has never seen them; this process has
    assert limiter.backend == "redis"


@pytest.mark.redis
def test_during_an_outage_each_process_admits_at_most_the_limit(redis_proxy: CuttableProxy) -> None:
    """What the README promises for N replicas: 5 a minute per process, so at most 5 times N in all."""
    user = f"user-{uuid.uuid4()}"
    process_a = RateLimiter(redis_proxy.url)
    process_b = RateLimiter(redis_proxy.url)
    assert [process_a.hit(user) for _ in range(3)] == [None] * 3
    assert [process_b.hit(user) for _ in range(2)] == [None] * 2
    assert process_a.hit(user) is not None and process_b.hit(user) is not None  # shared: 5 used
    redis_proxy.cut()
    admitted_a = sum(process_a.hit(user) is None for _ in range(10))
    admitted_b = sum(process_b.hit(user) is None for _ in range(10))
    assert (admitted_a, admitted_b) == (2, 3)  # 5 each in the minute: 10 with two processes
