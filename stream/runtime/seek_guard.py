"""Stream partitions are sought to their committed offsets with the consumer's flow stopped.

When a rebalance assigns partitions, Faust's recovery (0.15,
``Recovery.on_recovery_completed``) does, in order:

1. resume the consumer's flow and the app's flow control (to read changelogs);
2. resume the stream partitions;
3. seek them to their committed offsets (``Consumer.perform_seek``), which also
   resets the consumer's read offsets;
4. resume the app's flow control, which clears every stream's queue;
5. resume the consumer's flow.

Between 3 and 4 the consumer's flow is already live: the fetcher fetches from the
sought offsets, queues the messages for the agents and moves its read offsets past
them. Step 4 then drops those no agent has taken yet, and nothing fetches them
again. Those events are never processed. Their offsets are never acked either, so
when two or more in a row are dropped, the partition's commits stop at the gap for
good.

Observed: a worker that took over two partitions left one event unscored, and its
group's lag stayed at 5,520 events. With a 1.5 s pause after the seek, it left 100
events unscored (the 100 queued when the queues were cleared) and its commits
stalled.

:class:`SeekGuard` makes the consumer's ``perform_seek`` (:class:`stream.runtime.transport.Consumer`) stop the consumer's flow
first, when it is active, and wait until the fetch loop has finished the message
it holds; only then does it seek. From the seek to step 5 nothing is fetched or
delivered. Faust's recovery resumes the flow itself, after clearing the queues.
Messages queued before the seek and cleared are fetched again, because the seek
set the read offsets last. Messages an agent took and processed before the seek
are delivered again, and are skipped as duplicates (at-least-once). A seek that
fails or is cancelled resumes the flow it stopped, leaving things as Faust would
have.

The consumer's own seek when it finds its flow stopped (``getmany``) is left as it
is: there the flow is not active.

The worker's fetch loop (:mod:`stream.runtime.drain`) keeps the guard's ``idle`` flag itself,
as :meth:`SeekGuard.getmany` keeps it, without a generator per message; the guarded
``getmany`` serves Faust's own loop, where that one is kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

log = logging.getLogger(__name__)


class SeekGuard:
    """``getmany`` and ``perform_seek`` for one consumer: seeks wait for a stopped, idle fetch loop."""

    #: How long a seek waits for the fetch loop to finish the message it holds before
    #: seeking anyway (as Faust would); Faust gives the whole seek its request timeout.
    idle_timeout_s = 30.0

    def __init__(self, consumer, getmany=None, perform_seek=None) -> None:
        """Guard ``consumer``'s seeks; ``getmany`` and ``perform_seek`` are Faust's (by default the consumer's)."""
        self.consumer = consumer
        self._getmany = getmany or consumer.getmany
        self._perform_seek = perform_seek or consumer.perform_seek
        self.idle = asyncio.Event()
        self.idle.set()

    async def getmany(self, timeout: float) -> AsyncIterator:
        """The consumer's messages; not idle from handing one out until the next is asked for.

        The fetch loop sets a message's read offset after delivering it and before
        asking for the next, so once idle, no read offset moves until the next message.
        """
        idle = self.idle
        idle.set()  # the fetch loop asks again only once done with the last call's messages
        async for item in self._getmany(timeout=timeout):
            idle.clear()
            try:
                yield item
            finally:
                idle.set()

    async def perform_seek(self) -> None:
        consumer = self.consumer
        stopped_here = consumer.flow_active
        if stopped_here:
            consumer.stop_flow()
        try:
            if not self.idle.is_set():
                try:
                    await asyncio.wait_for(self.idle.wait(), self.idle_timeout_s)
                except TimeoutError:
                    log.warning(
                        "the fetch loop still holds a message after %.0f s; seeking anyway", self.idle_timeout_s
                    )
            await self._perform_seek()
        except BaseException:
            if stopped_here:
                consumer.resume_flow()
            raise


#: What the guard reads and replaces on Faust's consumer.
NEEDED = ("getmany", "perform_seek", "stop_flow", "resume_flow", "flow_active")
