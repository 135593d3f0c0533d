"""Deliver fetched messages to the agents' queues without a task per message.

Faust's consumer hands every fetched message to the conductor with::

    await self.wait_first(callback(message), self.suspend_flow.wait())

so that a delivery blocked while the consumer's flow is suspended (a rebalance)
is abandoned. ``wait_first`` wraps both coroutines in tasks, adds two more for the
service's stopped and crashed events, and waits on the four with
``asyncio.wait``: per message. On this machine that bounded a worker at about
2,500 events/s, whatever the agents did.

The delivery almost never waits: it waits only when flow control is suspended, the
producer buffer is over its high-water mark, or the agent's queue is full.
:func:`install` makes the app's consumer run the delivery coroutine inline, one step,
when the flow is not suspended. If it finishes in that step (the common case) the
result is the same as Faust's, without the tasks. If it has to wait, the rest of it
runs as a task under Faust's own ``wait_first``, exactly as before; the step it
already took (deserializing the message and queueing it for some channels) is
not repeated.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Coroutine
from typing import Any

from mode import Service
from mode.services import WaitResults

from stream.consumer_hooks import adapt_consumers

log = logging.getLogger(__name__)


@types.coroutine
def _resume(coro: Coroutine, yielded: Any):
    """Go on running ``coro``, which yielded ``yielded`` on its first step."""
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:  # cancellation and errors go into the coroutine
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


async def _rest(coro: Coroutine, yielded: Any):
    return await _resume(coro, yielded)


def _is_flow_wait(coro: Any) -> bool:
    return getattr(getattr(coro, "cr_code", None), "co_name", "") == "wait"


def install(app) -> None:
    """Make ``app``'s consumer deliver each message inline when it need not wait."""

    def adapt(consumer) -> None:
        suspend_flow = getattr(consumer, "suspend_flow", None)
        if suspend_flow is None:
            log.warning("inline delivery not installed: %s has no suspend_flow", type(consumer).__name__)
            return

        async def wait_first(self, *coros, timeout=None):
            # Only the drain loop's call has this shape: a delivery and the flow event's wait.
            if len(coros) != 2 or timeout is not None or not _is_flow_wait(coros[1]) or suspend_flow.is_set():
                return await Service.wait_first(self, *coros, timeout=timeout)
            delivery, flow_wait = coros
            try:
                yielded = delivery.send(None)
            except StopIteration as stop:
                flow_wait.close()
                return WaitResults([delivery], [stop.value], False)
            except BaseException:
                flow_wait.close()
                raise
            return await Service.wait_first(self, _rest(delivery, yielded), flow_wait)

        consumer.wait_first = types.MethodType(wait_first, consumer)

    adapt_consumers(app, adapt)
