"""The token bucket behind Publisher(rate=...), on a fake clock."""

from __future__ import annotations

import pytest

from producers.ratelimit import TokenBucket

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


def test_rate_caps_average_throughput() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, clock=clock, sleep=clock.sleep)  # burst 10
    for _ in range(1010):
        bucket.acquire()
    assert clock.now == pytest.approx(10.0)


def test_idle_time_refills_only_up_to_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=5, clock=clock, sleep=clock.sleep)
    clock.now = 100.0
    assert sum(bucket.acquire() for _ in range(5)) == 0
    assert bucket.acquire() == pytest.approx(0.1)


def test_zero_rate_is_unlimited() -> None:
    clock = FakeClock()
    bucket = TokenBucket(0, clock=clock, sleep=clock.sleep)
    assert sum(bucket.acquire() for _ in range(10_000)) == 0
    assert clock.now == 0


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        TokenBucket(-1)
    with pytest.raises(ValueError):
        TokenBucket(10, burst=0.5)
