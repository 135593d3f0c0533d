"""A token bucket that caps a producer at ``rate`` events per second.

The clock and sleep are injectable, so the limiter is testable without waiting:

>>> now = [0.0]
>>> bucket = TokenBucket(10, burst=1, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
>>> slept = sum(bucket.acquire() for _ in range(11))
>>> round(now[0], 3)
1.0
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Allow ``rate`` acquisitions per second on average, ``burst`` at once; ``rate=0`` is unlimited."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0 (0 means unlimited)")
        self.rate = float(rate)
        # Default burst: a tenth of a second's worth, at least one event.
        self.burst = float(burst) if burst is not None else max(1.0, self.rate / 10)
        if self.burst < 1:
            raise ValueError("burst must be >= 1")
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()

    def acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens``, sleeping until they are available; the seconds slept."""
        if self.rate == 0:
            return 0.0
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= tokens:
            self._tokens -= tokens
            return 0.0
        wait = (tokens - self._tokens) / self.rate
        self._sleep(wait)
        # The tokens that accrue until now + wait are exactly the ones taken; oversleeping
        # is credited at the next call because refills count from now + wait.
        self._tokens = 0.0
        self._last = now + wait
        return wait
