"""Seek guard: a seek stops an active flow, waits for the fetch loop's message, and leaves the flow to Faust."""

from __future__ import annotations

import asyncio

import pytest

from stream.runtime.seek_guard import SeekGuard

pytestmark = pytest.mark.unit


class Consumer:
    """The parts of Faust's consumer the guard uses, recording what happens in order."""

    def __init__(self, messages=(), seek_error: BaseException | None = None) -> None:
        self.flow_active = True
        self.messages = list(messages)
        self.seek_error = seek_error
        self.log: list[str] = []
        self.fetched = asyncio.Event()  # a fetch from the broker: returns when set
        self.fetched.set()

    def stop_flow(self) -> None:
        self.flow_active = False
        self.log.append("stop_flow")

    def resume_flow(self) -> None:
        self.flow_active = True
        self.log.append("resume_flow")

    async def getmany(self, timeout: float):
        await self.fetched.wait()
        for message in self.messages:
            if not self.flow_active:  # as Faust's getmany: no message once the flow is stopped
                return
            yield message

    async def perform_seek(self) -> None:
        self.log.append(f"seek (flow {'active' if self.flow_active else 'stopped'})")
        if self.seek_error is not None:
            raise self.seek_error


def guarded(consumer: Consumer) -> Consumer:
    """``consumer`` with Faust's getmany and perform_seek behind the guard, as the worker's consumer has them."""
    guard = SeekGuard(consumer)
    consumer.getmany = guard.getmany
    consumer.perform_seek = guard.perform_seek
    return consumer


async def test_a_seek_stops_an_active_flow_before_seeking_and_leaves_it_stopped():
    c = guarded(Consumer())
    await c.perform_seek()
    assert c.log == ["stop_flow", "seek (flow stopped)"]
    assert not c.flow_active  # Faust's recovery resumes it once it has cleared the queues


async def test_a_seek_with_the_flow_already_stopped_changes_nothing():
    c = guarded(Consumer())
    c.flow_active = False
    await c.perform_seek()
    assert c.log == ["seek (flow stopped)"]


async def test_a_seek_waits_until_the_fetch_loop_has_finished_its_message():
    c = guarded(Consumer(messages=["m1", "m2"]))
    fetched = aiter(c.getmany(timeout=1.0))
    assert await anext(fetched) == "m1"  # the fetch loop holds m1: delivering it, then setting its read offset
    seek = asyncio.ensure_future(c.perform_seek())
    for _ in range(5):
        await asyncio.sleep(0)
    assert c.log == ["stop_flow"] and not seek.done()
    c.log.append("read offset of m1")
    with pytest.raises(StopAsyncIteration):  # asking for the next: none, the flow is stopped
        await anext(fetched)
    await asyncio.wait_for(seek, 5)
    assert c.log == ["stop_flow", "read offset of m1", "seek (flow stopped)"]


async def test_a_fetch_loop_that_dropped_its_message_does_not_block_the_next_seek():
    c = guarded(Consumer(messages=["m1", "m2"]))
    abandoned = aiter(c.getmany(timeout=1.0))
    await anext(abandoned)  # a fetch loop cancelled while holding m1 never asks again
    c.fetched.clear()
    fresh = asyncio.ensure_future(anext(aiter(c.getmany(timeout=1.0))))  # the next loop waits on a fetch
    for _ in range(5):
        await asyncio.sleep(0)
    assert not fresh.done()
    await asyncio.wait_for(c.perform_seek(), 5)
    assert c.log == ["stop_flow", "seek (flow stopped)"]
    fresh.cancel()


async def test_a_failed_seek_resumes_the_flow_it_stopped():
    c = guarded(Consumer(seek_error=TimeoutError("offsets not fetched")))
    with pytest.raises(TimeoutError):
        await c.perform_seek()
    assert c.log == ["stop_flow", "seek (flow stopped)", "resume_flow"] and c.flow_active
