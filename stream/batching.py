"""Micro-batches of a Faust stream, cut when nothing more is ready.

``stream.take_events(n, within=t)`` yields when ``n`` events are buffered or when
its free-running ``t`` timer fires, so a partial batch waits for the timer: each
agent hop added up to ``t`` to the event-to-score latency, and at low rates every
batch was partial.

:func:`ready_batches` yields a batch as soon as no further event is ready in the
stream's channel (or ``max_events`` are collected). At a low rate a batch is one
event and goes out at once; under load events pile up in the channel while the
previous batch is processed, so batches grow on their own. ``wait`` (seconds)
optionally lets a partial batch wait that long after its first event for more.

Acks: a batch's events are acked only when the caller asks for the next batch, so
the consumer commits only offsets whose outputs are published. Unlike
``take_events``, a batch whose processing raised is never acked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator


async def ready_batches(stream, max_events: int, wait: float = 0.0) -> AsyncIterator[list]:
    """Lists of the stream's events, each as large as is ready (at most ``max_events``)."""
    stream.enable_acks = False  # acked below, once the caller is done with the batch
    channel = stream.channel
    ack = stream.ack
    loop = asyncio.get_running_loop()
    batch: list = []
    deadline = 0.0
    async for event in stream.events():
        batch.append(event)
        if wait and len(batch) == 1:
            deadline = loop.time() + wait
        if len(batch) < max_events:
            if not channel.empty():
                continue
            # Let the consumer hand over the rest of a fetch before the batch is cut.
            await asyncio.sleep(0)
            if not channel.empty():
                continue
            remaining = deadline - loop.time() if wait else 0.0
            if remaining > 0:
                await asyncio.sleep(remaining)
                if not channel.empty():
                    continue
        yield batch
        # Resumed: the caller is done with the batch. (A caller that raises never
        # resumes us, and its events stay unacked, so they are not committed.)
        for done in batch:
            await ack(done)
        batch = []
