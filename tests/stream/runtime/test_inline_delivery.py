"""Inline delivery: the first step, the rest under Faust's wait_first, direct handlers and lean waits."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from faust.types import TP
from mode import Service
from mode.utils.queues import FlowControlEvent

from stream.runtime.inline_delivery import READY, direct_handler, first_step, lean_waits

pytestmark = pytest.mark.unit


class Conductor:
    """What the adaptation reads of Faust's conductor: its handler table, the lock around it, on_message."""

    def __init__(self) -> None:
        self._tp_to_callback_lock = asyncio.Lock()
        self._tp_to_callback = {}
        self.through_conductor = []

    async def on_message(self, message):
        self.through_conductor.append(message)
        async with self._tp_to_callback_lock:
            handler = self._tp_to_callback[message.tp]
        return await handler(message)


class Buffer:
    """Faust's producer buffer as its ebb check sees it."""

    max_messages = 2

    def __init__(self) -> None:
        self.pending = asyncio.Queue()
        self.flushes = 0

    async def wait_until_ebb(self) -> None:
        self.flushes += 1
        while self.pending.qsize() > self.max_messages:
            self.pending.get_nowait()


class App:
    def __init__(self) -> None:
        self.topics = Conductor()
        self.flow_control = FlowControlEvent(initially_suspended=False)
        self.conf = SimpleNamespace(producer_threaded=False)
        self.producer = SimpleNamespace(buffer=Buffer())

    def _new_consumer(self):
        return Consumer(self.topics.on_message)


class Consumer(Service):
    def __init__(self, callback) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()
        self.callback = callback


def consumer(app: App | None = None) -> Consumer:
    """A consumer as the worker's transport makes it: direct delivery, lean waits."""
    app = app or App()
    made = app._new_consumer()
    made.callback = direct_handler(app.topics)
    lean_waits(app)
    return made


async def test_a_delivery_that_need_not_wait_runs_inline():
    delivered = []

    async def deliver(x):
        delivered.append(x)
        return x

    tasks = len(asyncio.all_tasks())
    assert first_step(deliver(1)) is None
    assert delivered == [1]
    assert len(asyncio.all_tasks()) == tasks  # no task was made for it


async def test_a_delivery_that_waits_finishes_after_its_wait():
    c = consumer()
    gate = asyncio.get_running_loop().create_future()
    steps = []

    async def deliver(x):
        steps.append("before")
        steps.append(await gate)
        return x

    await c.start()
    try:
        rest = first_step(deliver(2))
        assert rest is not None and steps == ["before"]
        waiting = asyncio.ensure_future(Service.wait_first(c, rest, c.suspend_flow.wait()))
        await asyncio.sleep(0.01)
        assert steps == ["before"] and not waiting.done()
        gate.set_result("after")
        result = await asyncio.wait_for(waiting, 5)
        assert steps == ["before", "after"]  # the first step was not run twice
        assert result.results == [2] and not result.stopped
    finally:
        await c.stop()


async def test_a_waiting_delivery_is_abandoned_when_the_flow_is_suspended():
    c = consumer()
    cancelled = asyncio.Event()

    async def deliver(x):
        try:
            await asyncio.get_running_loop().create_future()  # never resolves
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await c.start()
    try:
        rest = first_step(deliver(3))
        waiting = asyncio.ensure_future(Service.wait_first(c, rest, c.suspend_flow.wait()))
        await asyncio.sleep(0.01)
        c.suspend_flow.set()
        await asyncio.wait_for(waiting, 5)
        await asyncio.wait_for(cancelled.wait(), 5)
    finally:
        await c.stop()


async def test_an_error_in_the_first_step_is_raised_by_it():
    async def deliver():
        raise ValueError("not decodable")

    with pytest.raises(ValueError, match="not decodable"):
        first_step(deliver())


async def test_a_partition_handler_is_called_directly_while_the_conductor_lock_is_free():
    app = App()
    c = consumer(app)
    conductor = app.topics
    handled = []

    async def handler(message):
        handled.append(message)
        return "queued"

    tp = TP("events", 0)
    conductor._tp_to_callback[tp] = handler
    free = SimpleNamespace(tp=tp)
    assert await c.callback(free) == "queued"
    assert handled == [free] and conductor.through_conductor == []

    # While a resubscription holds the lock, delivery waits for it, as Faust's on_message does.
    await conductor._tp_to_callback_lock.acquire()
    held = SimpleNamespace(tp=tp)
    delivery = asyncio.ensure_future(c.callback(held))
    await asyncio.sleep(0.01)
    assert not delivery.done() and conductor.through_conductor == [held]
    conductor._tp_to_callback_lock.release()
    assert await asyncio.wait_for(delivery, 5) == "queued"
    assert handled == [free, held]

    # A partition without a handler fails as it does in Faust.
    with pytest.raises(KeyError):
        await c.callback(SimpleNamespace(tp=TP("events", 9)))


async def test_flow_control_and_the_producer_buffer_are_awaited_only_when_they_would_wait():
    app = App()
    flow, buffer = app.flow_control, app.producer.buffer
    consumer(app)
    assert flow.acquire() is READY and buffer.wait_until_ebb() is READY
    await flow.acquire()
    await buffer.wait_until_ebb()
    assert buffer.flushes == 0

    for i in range(3):
        buffer.pending.put_nowait(i)
    await buffer.wait_until_ebb()  # over the high-water mark: Faust's flush runs
    assert buffer.flushes == 1 and buffer.pending.qsize() == 2

    flow.suspend()
    acquired = asyncio.ensure_future(flow.acquire())
    await asyncio.sleep(0.01)
    assert not acquired.done()  # suspended: it waits for the resume
    flow.resume()
    await asyncio.wait_for(acquired, 5)

    # A second consumer of the same app does not wrap them again.
    acquire, ebb = flow.acquire, buffer.wait_until_ebb
    consumer(app)
    assert flow.acquire is acquire and buffer.wait_until_ebb is ebb
