"""Batches finished in the background: in order, at most ``depth`` unfinished, a failure stops the rest."""

from __future__ import annotations

import asyncio

import pytest
from support import wait_until

from stream.runtime.commit_chain import CommitChain

pytestmark = pytest.mark.unit


class Finishes:
    """Finishes that record their start and end and complete when released."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.ended: list[int] = []
        self.gates: dict[int, asyncio.Future] = {}

    def __call__(self, n: int, error: Exception | None = None):
        self.gates[n] = asyncio.get_running_loop().create_future()

        async def finish() -> None:
            self.started.append(n)
            await self.gates[n]
            if error is not None:
                raise error
            self.ended.append(n)

        return finish

    def release(self, n: int) -> None:
        self.gates[n].set_result(None)


async def test_a_finish_begins_only_after_the_one_before_it_ended():
    chain, f = CommitChain(depth=4), Finishes()
    await chain.add(f(1))
    await chain.add(f(2))
    await wait_until(lambda: f.started == [1])
    await asyncio.sleep(0.01)
    assert f.started == [1]  # 2 waits for 1, though nothing holds 2 itself
    f.release(2)
    await asyncio.sleep(0.01)
    assert f.ended == []
    f.release(1)
    await wait_until(lambda: f.ended == [1, 2])
    assert await chain.settle(timeout=1) == 0


async def test_add_waits_while_depth_finishes_are_unfinished():
    chain, f = CommitChain(depth=2), Finishes()
    await chain.add(f(1))
    await chain.add(f(2))
    third = asyncio.ensure_future(chain.add(f(3)))
    await asyncio.sleep(0.02)
    assert not third.done() and len(chain) == 2
    f.release(1)
    await asyncio.wait_for(third, 1)
    assert len(chain) == 2  # 2 and 3
    f.release(2)
    f.release(3)
    await wait_until(lambda: f.ended == [1, 2, 3])
    assert await chain.settle(timeout=1) == 0


async def test_the_next_finish_begins_before_the_agent_goes_on():
    # The agent adds batch 3 straight after batch 2, without yielding, and waits for 1 to end. When
    # it goes on, 2 must have begun: otherwise 2 begins only when the agent next waits, and its
    # round trips to the broker add to that wait instead of overlapping the agent's next batch.
    chain, f = CommitChain(depth=2), Finishes()
    await chain.add(f(1))
    await wait_until(lambda: f.started == [1])
    await chain.add(f(2))
    asyncio.get_running_loop().call_later(0.01, f.release, 1)
    await chain.add(f(3))
    assert f.started == [1, 2]
    f.release(2)
    f.release(3)
    await wait_until(lambda: f.ended == [1, 2, 3])
    assert await chain.settle(timeout=1) == 0


async def test_a_failed_finish_stops_the_ones_after_it_and_is_raised_at_the_next_add():
    chain, f = CommitChain(depth=4), Finishes()
    await chain.add(f(1, error=RuntimeError("outputs not delivered")))
    await chain.add(f(2))
    f.release(2)
    f.release(1)
    await wait_until(lambda: all(t.done() for t in chain._tasks))
    assert f.started == [1] and f.ended == []  # 2 never ran: nothing after a failure is written or acked
    with pytest.raises(RuntimeError, match="outputs not delivered"):
        await chain.add(f(3))
    assert f.started == [1] and len(chain) == 0
    assert await chain.settle(timeout=1) == 0


async def test_cancelling_the_agent_while_it_waits_leaves_the_finishes_running():
    chain, f = CommitChain(depth=1), Finishes()
    await chain.add(f(1))
    waiting = asyncio.ensure_future(chain.add(f(2)))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    f.release(1)
    await wait_until(lambda: f.ended == [1])
    assert f.started == [1]  # 2 was never added
    assert await chain.settle(timeout=1) == 0


async def test_settle_waits_for_the_unfinished_and_cancels_what_outlasts_the_timeout():
    chain, f = CommitChain(depth=4), Finishes()
    await chain.add(f(1))
    await chain.add(f(2))
    asyncio.get_running_loop().call_later(0.02, f.release, 1)
    assert await chain.settle(timeout=0.2) == 1  # 1 finished in time, 2 was still held
    assert f.ended == [1]
    assert len(chain) == 0


async def test_a_chain_needs_a_depth():
    with pytest.raises(ValueError, match="depth >= 1"):
        CommitChain(depth=0)
