"""Finishing batches in the background, in order, while the agent takes the next one.

A featurize batch ends with two broker round trips: its outputs must be
acknowledged before its table writes go out (outputs before state), and its
changelog records before its events are acked (state before offsets). Each trip
is a wait on the broker, and the worker sat idle through both: even on loopback
with the embedded broker, a large part of a small batch's time.

:class:`CommitChain` runs each batch's finish as a task that begins its ordered
part only when the previous batch's finish has completed, so finishes complete in
the order of their batches and the two rules hold across batches as within one.
The agent meanwhile processes the next batch; it waits only while ``depth``
finishes are unfinished. A finish that fails fails every finish after it (none of
them writes or acks anything), and the agent gets the error at its next
:meth:`CommitChain.add`, as it would have from an awaited finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Finish = Callable[[], Awaitable[None]]


class CommitChain:
    """Ordered background finishes, at most ``depth`` unfinished at a time."""

    def __init__(self, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"a commit chain needs depth >= 1, not {depth}")
        self.depth = depth
        self._tasks: deque[asyncio.Task] = deque()

    def __len__(self) -> int:
        """Finishes not yet completed or not yet seen to complete."""
        return len(self._tasks)

    async def add(self, finish: Finish) -> None:
        """Schedule ``finish`` after every earlier one; wait first while ``depth`` are unfinished.

        Raises the error of an earlier finish that failed (``finish`` is then not scheduled).
        """
        self._reap()
        while len(self._tasks) >= self.depth:
            # asyncio.wait, not await: cancelling the agent must not cancel a finish.
            await asyncio.wait({self._tasks[0]})
            self._reap()
        previous = self._tasks[-1] if self._tasks else None
        gate = None if previous is None else _gate(previous)
        self._tasks.append(asyncio.ensure_future(_after(previous, gate, finish)))

    def _reap(self) -> None:
        """Drop completed finishes from the front; raise the first error among them."""
        error = None
        while self._tasks and self._tasks[0].done() and error is None:
            task = self._tasks.popleft()
            if task.cancelled():  # nobody but settle() cancels: its events would stay unacked for good
                error = RuntimeError("a batch's finish was cancelled; its events were not acked")
            else:
                error = task.exception()
        if error is not None:
            # Every later finish fails with the same error: collect them, so none is left unretrieved.
            for task in self._tasks:
                task.add_done_callback(_retrieve)
            self._tasks.clear()
            raise error

    async def settle(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the unfinished finishes; cancel the rest.

        Returns how many did not complete (failed, cancelled or timed out). Errors are
        logged, not raised: this is for an agent that is stopping anyway.
        """
        tasks, self._tasks = list(self._tasks), deque()
        if not tasks:
            return 0
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        failed = [t for t in done if t.cancelled() or t.exception() is not None]
        errors = {repr(t.exception()) for t in failed if not t.cancelled()}
        if failed or pending:
            log.warning(
                "%d of %d batches were not finished when the agent stopped (%s); their events are delivered again",
                len(failed) + len(pending),
                len(tasks),
                "; ".join(sorted(errors)) or "timed out",
            )
        return len(failed) + len(pending)


def _gate(previous: asyncio.Task) -> asyncio.Future:
    """A future that completes with ``previous``, through a callback registered now.

    A finish waits on its gate, not on ``previous`` itself: the gate's callback is
    registered when the finish is added, before the agent registers its own wait on
    ``previous`` at a later :meth:`CommitChain.add`. Callbacks run in the order they
    were registered, so when ``previous`` completes the next finish is woken before
    the agent and has sent its table records by the time the agent goes on to its
    next batch. Woken after the agent (as with ``asyncio.wait`` on ``previous``), it
    began only at the agent's next wait, a whole batch later.
    """
    gate = asyncio.get_running_loop().create_future()

    def open_gate(_: asyncio.Task) -> None:
        if not gate.done():  # a finish cancelled while it waited cancelled its gate
            gate.set_result(None)

    previous.add_done_callback(open_gate)
    return gate


async def _after(previous: asyncio.Task | None, gate: asyncio.Future | None, finish: Finish) -> None:
    if previous is not None:
        await gate
        if previous.cancelled():
            raise asyncio.CancelledError("an earlier batch's finish was cancelled")
        if previous.exception() is not None:
            raise previous.exception()
    await finish()


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()
