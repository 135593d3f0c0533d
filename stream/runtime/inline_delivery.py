"""Deliver fetched messages to the agents' queues without a task per message.

Faust's consumer hands every fetched message to the conductor with::

    await self.wait_first(callback(message), self.suspend_flow.wait())

so that a delivery blocked while the consumer's flow is suspended (a rebalance)
is abandoned. ``wait_first`` wraps both coroutines in tasks, adds two more for the
service's stopped and crashed events, and waits on the four with
``asyncio.wait``: per message. That machinery set a ceiling on a worker's events/s,
whatever the agents did.

The delivery almost never waits: it waits only when flow control is suspended, the
producer buffer is over its high-water mark, or the agent's queue is full. The
worker's fetch loop (:mod:`stream.runtime.drain`) runs the delivery coroutine inline, one
step (:func:`first_step`), when the flow is not suspended. If it finishes in that
step (the common case) the result is the same as Faust's, without the tasks. If it
has to wait, the rest of it runs as a task under Faust's own ``wait_first``, exactly
as before; the step it already took (deserializing the message and queueing it for
some channels) is not repeated.

The delivery itself also awaited three things per message that are nearly always
ready, each a coroutine of its own: the conductor's lock around its table of
per-partition handlers (held only while it resubscribes), flow control (suspended
only during a rebalance) and the producer buffer's ebb, which read a Faust setting
on every call (a lookup through Faust's settings registry). Together a measurable
share of a busy worker's time. :class:`stream.runtime.transport.Consumer` makes, with
:func:`direct_handler` and :func:`lean_waits`:

- the consumer call the partition's handler directly while the conductor's lock is
  free, and go through the conductor (lock and all) otherwise;
- flow control's ``acquire`` and the buffer's ``wait_until_ebb``, as the handlers
  bind them when partitions are assigned, return a finished awaitable when there is
  nothing to wait for, and Faust's own coroutine when there is.

Each check is the condition the replaced code tests first, read at the same moment
(the delivery's first step), so the delivery waits exactly when it waited before.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

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


def first_step(delivery: Coroutine) -> Awaitable | None:
    """Run ``delivery`` to its first wait: ``None`` when it finished there, else an awaitable of the rest.

    An error of that step is the delivery's, and is raised here.
    """
    try:
        yielded = delivery.send(None)
    except StopIteration:
        return None
    return _rest(delivery, yielded)


class _Ready:
    """An awaitable that is already done: awaiting it returns None at once, and no coroutine is made."""

    __slots__ = ()

    def __await__(self):
        return iter(())


READY = _Ready()

#: What :func:`direct_handler` reads of Faust's conductor.
CONDUCTOR_NEEDED = ("_tp_to_callback", "_tp_to_callback_lock", "on_message")


def direct_handler(conductor) -> Callable[[Any], Awaitable]:
    """The conductor's ``on_message``, calling the partition's handler without the lock while no one holds it.

    Faust's ``on_message`` takes the lock only to look the handler up, then awaits
    the handler outside it. While the lock is free taking it does not wait, so
    looking up without it is the same lookup. A partition without a handler, or a
    held lock, goes through Faust's ``on_message``, which raises or waits as before.
    """
    lock = conductor._tp_to_callback_lock
    handlers = conductor._tp_to_callback
    on_message = conductor.on_message

    def deliver(message) -> Awaitable:
        if not lock.locked():
            handler = handlers.get(message.tp)
            if handler is not None:
                return handler(message)
        return on_message(message)

    return deliver


def ready_unless(must_wait: Callable[[], bool], wait: Callable[[], Awaitable]) -> Callable[[], Awaitable]:
    """``wait`` when ``must_wait()``, else a finished awaitable."""

    def maybe_wait() -> Awaitable:
        return wait() if must_wait() else READY

    return maybe_wait


def lean_waits(app) -> None:
    """Flow control's ``acquire`` and the producer buffer's ``wait_until_ebb`` without a coroutine when ready."""
    flow = app.flow_control
    if "acquire" in vars(flow):
        return  # adapted for an earlier consumer of this app
    flow.acquire = ready_unless(lambda: not flow.is_active(), flow.acquire)
    if app.conf.producer_threaded:
        return  # its buffer counts another queue; left as Faust has it
    buffer = app.producer.buffer
    # ProducerBuffer.size without the setting it reads per call: the pending queue's length.
    buffer.wait_until_ebb = ready_unless(
        lambda: len(buffer.pending._queue) > buffer.max_messages, buffer.wait_until_ebb
    )
