"""ready_batches on a fake stream: batches are what is ready, acks follow the caller."""

from __future__ import annotations

import asyncio

import pytest

from stream.batching import ready_batches

pytestmark = pytest.mark.unit


class FakeStream:
    """A channel fed in the background: each burst is ready at once, the next after a pause."""

    def __init__(self, bursts: list[list[int]], pause: float = 0.01) -> None:
        self.bursts = bursts
        self.pause = pause
        self.queue: list[int] = []
        self.acked: list[int] = []
        self.enable_acks = True
        self.channel = self
        self.fed = False

    def empty(self) -> bool:
        return not self.queue

    async def _feed(self) -> None:
        for burst in self.bursts:
            self.queue.extend(burst)
            await asyncio.sleep(self.pause)
        self.fed = True

    async def events(self):
        feeder = asyncio.create_task(self._feed())
        while self.queue or not self.fed:
            if self.queue:
                yield self.queue.pop(0)
            else:
                await asyncio.sleep(0.001)
        await feeder

    async def ack(self, event: int) -> bool:
        self.acked.append(event)
        return True


async def test_a_batch_is_what_is_ready_up_to_the_maximum():
    stream = FakeStream([[1], [2, 3, 4, 5, 6], [7, 8]])
    batches = [list(b) async for b in ready_batches(stream, max_events=3)]
    assert batches == [[1], [2, 3, 4], [5, 6], [7, 8]]
    assert stream.enable_acks is False


async def test_events_are_acked_only_when_the_next_batch_is_asked_for():
    stream = FakeStream([[1, 2], [3]])
    batches = ready_batches(stream, max_events=10)
    assert await anext(batches) == [1, 2]
    assert stream.acked == []
    assert await anext(batches) == [3]
    assert stream.acked == [1, 2]


async def test_a_batch_whose_processing_raised_is_not_acked():
    stream = FakeStream([[1, 2], [3]])
    with pytest.raises(RuntimeError):
        async for _ in ready_batches(stream, max_events=10):
            raise RuntimeError("scoring failed")
    assert stream.acked == []


async def test_wait_lets_a_partial_batch_collect_the_next_burst():
    stream = FakeStream([[1], [2], [3]], pause=0.005)
    batches = [list(b) async for b in ready_batches(stream, max_events=10, wait=1.0)]
    assert batches == [[1, 2, 3]]
