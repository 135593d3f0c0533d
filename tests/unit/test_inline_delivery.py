"""Inline delivery: Faust's drain-loop call gives the same outcome, with or without waiting."""

from __future__ import annotations

import asyncio

import pytest
from mode import Service

from stream.inline_delivery import install

pytestmark = pytest.mark.unit


class Consumer(Service):
    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()


class App:
    def __init__(self) -> None:
        self._new_consumer = Consumer


def consumer() -> Consumer:
    app = App()
    install(app)
    return app._new_consumer()


async def test_a_delivery_that_need_not_wait_runs_inline():
    c = consumer()
    delivered = []

    async def deliver(x):
        delivered.append(x)
        return x

    await c.start()
    try:
        tasks = len(asyncio.all_tasks())
        result = await c.wait_first(deliver(1), c.suspend_flow.wait())
        assert delivered == [1] and result.results == [1] and not result.stopped
        assert len(asyncio.all_tasks()) == tasks  # no task was left behind for the flow wait
    finally:
        await c.stop()


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
        waiting = asyncio.ensure_future(c.wait_first(deliver(2), c.suspend_flow.wait()))
        await asyncio.sleep(0.01)
        assert steps == ["before"] and not waiting.done()
        gate.set_result("after")
        await asyncio.wait_for(waiting, 5)
        assert steps == ["before", "after"]  # the first step was not run twice
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
        waiting = asyncio.ensure_future(c.wait_first(deliver(3), c.suspend_flow.wait()))
        await asyncio.sleep(0.01)
        c.suspend_flow.set()
        await asyncio.wait_for(waiting, 5)
        await asyncio.wait_for(cancelled.wait(), 5)
    finally:
        await c.stop()
