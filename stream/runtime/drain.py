"""Faust's fetch loop with its fetch step written into it: no generator per fetched message.

Faust's ``Consumer._drain_messages`` takes each fetched record from
``Consumer.getmany``, an async generator that turns a fetch's records into
messages one at a time; the seek guard (:mod:`stream.runtime.seek_guard`) wraps ``getmany``
in a generator of its own, to know when the loop holds a message; and each
delivery made a coroutine for the flow's suspension event only to close it when
the delivery did not wait (:mod:`stream.runtime.inline_delivery`). So every message resumed
two generators and made and closed a coroutine before the conductor saw it.

:class:`stream.runtime.transport.Consumer`'s ``_drain_messages`` is
:func:`drain_messages`: the same loop with ``getmany``'s body, the seek guard's flag
and the inline delivery written into it. Per fetch and per message it does what
they did, in their order:

- a fetch: yield to the loop; unless the consumer is stopping, wait for records
  (Faust's ``_wait_next_records``); with the flow stopped, seek back to the committed
  offsets instead, as ``getmany`` does;
- a record: stop taking the fetch's records once the flow stops or the consumer
  generation changes; skip a partition that is no longer active; record the
  partition's end offset for the monitor; make the message;
- the seek guard's flag: not idle from making the message until its read offset is
  set, so a seek waits for the message in hand;
- the message: yield to the loop every 100 messages; drop one below the partition's
  read offset; record a gap in an acking partition; commit every ``commit_every``
  acks; deliver; set the read offset;
- the delivery: while the flow is not suspended, its first step inline and, if it has
  to wait, the rest under Faust's ``wait_first`` with the flow's suspension
  (:func:`stream.inline_delivery.first_step`); otherwise the consumer's ``wait_first``.

Errors end the loop as they end Faust's: quietly when the app is stopping, logged and
raised otherwise. A consumer that lacks any name of :data:`NEEDED` stops the worker's
start (:func:`stream.runtime.versions.require`).
"""

from __future__ import annotations

import asyncio
import logging

from faust.transport.consumer import CONSUMER_FETCHING
from mode import Service

from stream.runtime.inline_delivery import first_step
from stream.runtime.seek_guard import SeekGuard

log = logging.getLogger(__name__)

#: What the loop reads from Faust's consumer; without any of them Faust's own loop is kept.
NEEDED = (
    "_wait_next_records",
    "_to_message",
    "scheduler",
    "highwater",
    "_read_offset",
    "diag",
    "_commit_every",
    "suspend_flow",
    "_add_gap",
    "commit",
    "consumer_stopped_errors",
    "flow_active",
    "_buffered_partitions",
    "callback",
    "wait_first",
    "perform_seek",
    "transport",
    "_stopped",
    "sleep",
)

YIELD_EVERY = 100  # messages between two yields to the event loop, as in Faust


async def drain_messages(consumer, fetcher: Service, guard: SeekGuard) -> None:
    """Fetch and deliver until the consumer or the fetcher stops (``Consumer._drain_messages``)."""
    app = consumer.app
    callback = consumer.callback
    consumer_should_stop = consumer._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    get_read_offset = consumer._read_offset.__getitem__
    set_read_offset = consumer._read_offset.__setitem__
    set_flag = consumer.diag.set_flag
    unset_flag = consumer.diag.unset_flag
    commit_every = consumer._commit_every
    acks_enabled_for = app.topics.acks_enabled_for
    suspend_flow = consumer.suspend_flow
    to_message = consumer._to_message
    highwater = consumer.highwater
    idle = guard.idle
    sleep = asyncio.sleep
    since_yield = 0
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            await consumer.sleep(0)
            if consumer.should_stop:
                continue
            idle.set()
            records, active = await consumer._wait_next_records(1.0)
            generation_id = app.consumer_generation_id
            if records is None or consumer.should_stop:
                unset_flag(CONSUMER_FETCHING)
                continue
            if not consumer.flow_active:
                consumer.log.dev("getmany called while flow not active. Seek back to committed offsets.")
                try:
                    await consumer.perform_seek()
                except Exception as exc:
                    consumer.log.warning(f"exception performing seek when flow not active {exc}")
                unset_flag(CONSUMER_FETCHING)
                continue
            track_end_offset = app.monitor.track_tp_end_offset
            for tp, record in consumer.scheduler.iterate(records):
                if not consumer.flow_active:
                    break
                if app.consumer_generation_id != generation_id:
                    consumer.log.dev(
                        "Generation id changed from %r to %r. Cancelling getmany.",
                        generation_id,
                        app.consumer_generation_id,
                    )
                    break
                if active is not None and tp not in active and tp not in consumer._buffered_partitions:
                    continue
                track_end_offset(tp, highwater(tp))
                message = to_message(tp, record)
                idle.clear()
                try:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await sleep(0)
                        since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        if offset - (r_offset or 0) > 1 and r_offset and acks_enabled_for(message.topic):
                            await consumer._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and consumer._n_acked >= commit_every:
                            consumer._n_acked = 0
                            await consumer.commit()
                        if suspend_flow.is_set():
                            await consumer.wait_first(callback(message), suspend_flow.wait())
                        else:
                            rest = first_step(callback(message))
                            if rest is not None:
                                await Service.wait_first(consumer, rest, suspend_flow.wait())
                        set_read_offset(tp, offset)
                    else:
                        consumer.log.dev("DROPPED MESSAGE ROFF %r: k=%r v=%r", offset, message.key, message.value)
                finally:
                    idle.set()
            unset_flag(CONSUMER_FETCHING)
    except consumer.consumer_stopped_errors:
        if consumer.transport.app.should_stop:
            consumer.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if consumer.transport.app.should_stop:
            consumer.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        consumer.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)
