"""Pacing: :func:`paced` replays an event stream no faster than an accelerated event-time clock."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from schemas.events import AccountEvent
from stream.pipeline.features import DAY


def paced(
    events: Iterable[AccountEvent],
    seconds_per_day: float | Callable[[], float],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    *,
    start: datetime | float | None = None,
) -> Iterator[AccountEvent]:
    """Yield events no faster than the accelerated event-time clock.

    One simulated day passes every ``seconds_per_day`` wall seconds (0 = as fast
    as possible); pass a function to change the pace while the stream runs (it is read
    at every event). The event-time clock starts at ``start`` (default: the first
    event's time) when the first event arrives; events before ``start`` pass
    without waiting. For a :class:`Simulator` stream pass
    ``start=config.start`` so the backdated signups do not replay years of
    event time.

    >>> from producers.simulator import SimConfig, Simulator
    >>> now = [0.0]
    >>> waits = []
    >>> def fake_sleep(s): waits.append(s); now[0] += s
    >>> sim = Simulator(SimConfig(n_customers=2, days=2))
    >>> n = sum(1 for _ in paced(sim.events(), 10.0, lambda: now[0], fake_sleep, start=sim.config.start))
    >>> now[0] <= 20.0 and all(w > 0 for w in waits)
    True
    """
    rate = seconds_per_day if callable(seconds_per_day) else (lambda: seconds_per_day)
    first = rate()
    if not math.isfinite(first) or first < 0:
        raise ValueError(f"seconds_per_day must be a finite number >= 0, got {first}")
    if first == 0 and not callable(seconds_per_day):
        yield from events
        return
    anchor = start.timestamp() if isinstance(start, datetime) else start
    due: float | None = None  # the wall time at which event time ``anchor`` is due
    for event in events:
        ts = event.ts.timestamp()
        if due is None:
            due = clock()
            if anchor is None:
                anchor = ts
        if ts > anchor:
            # Each stretch of event time costs the pace read when it is crossed, so a pace
            # that changes mid-stream applies from then on, not to the time already past.
            due += (ts - anchor) / DAY * rate()
            anchor = ts
            wait = due - clock()
            if wait > 0:
                sleep(wait)
        yield event
