"""Batches of events from an agent's Faust stream, taken straight from its channel queue.

Faust's ``Stream.take_events`` feeds its buffer through the stream's per-event
iteration (processors, an awaited processor call per event) and stops buffering
while its caller processes a batch. An agent that awaits the broker's
acknowledgement of its outputs leaves the consumer idle for that round trip, and
the next batch is only what the per-event loop adds within ``within`` afterwards:
a small batch. Every batch pays a fixed cost (one ``predict_proba`` call, for a
start), so throughput falls with the batch size.

:func:`batches` takes events from the queue that Faust's conductor fills for the
agent's channel, as many as are there, and does per event only the bookkeeping
that Faust's stream iteration does (``Stream._py_aiter``):

- events of an old consumer generation, or arriving while flow control is
  suspended (a rebalance), are skipped and acked, as Faust skips them;
- an event of an acking topic is tracked as unacked by the consumer, so offsets
  are committed only up to it until it is acked;
- the monitor's per-event sensors are called on the way in and on ack.

A batch is yielded when it holds ``max_events`` events, or ``within`` seconds after
its first event, whichever comes first. Under load the events that queued up
while the previous batch was processed are taken at once, so batches grow with
the load; when idle, one event waits at most ``within``. The conductor keeps
filling the queue meanwhile, up to Faust's stream buffer size, then applies back
pressure as it does for any agent.

A batch's events are acked when the caller asks for the next batch, that is
only after it has been processed. A batch whose processing raised, or that was
abandoned (the agent stopping), is not acked: its offsets are not committed and
its events are delivered again after a restart or rebalance (at-least-once).
``take_events`` acks in a ``finally`` and would commit such a batch.

With ``auto_ack=False`` the caller acks each batch itself, with :meth:`Batch.ack`,
whenever its results are durable, possibly after later batches were taken: an
agent can then process the next batch while the broker acknowledges the last
one's outputs. Faust commits an offset only once every event before it is acked,
so batches acked out of order still commit in order.

The sensors are told of a batch at once when Faust's own ``Monitor`` is the app's
only sensor (the default). Per event, its ``on_stream_event_in`` looked the stream
and its task up in two weak-key dictionaries, each lookup making a weak reference,
and the sensor delegate built a dict of states: together with
``on_stream_event_out`` a measurable share of a busy worker's time.
:class:`MonitorBatch` makes the same changes to the monitor's counts for a whole
batch, with one clock reading on the way in and one on the way out:

- of its events: events total, by stream, by task, active, the partitions' inbound
  times, one runtime per event;
- of its messages (``on_message_in`` / ``on_message_out``): received, by topic,
  active, the partitions' read offsets, each message's time in, out and total.

Any other sensor set gets the per-event calls, as Faust makes them.

Such a batch is also acked in one pass (:meth:`Batch.ack`): for each event, what
``Event.ack`` decides (``Message.ack``: drop the event's reference to its message;
the last one hands the message to the consumer's ``ack``, which marks its offset
committable), under Faust's ``ack_lock`` taken once for the batch rather than
three times per event. The consumer's ``ack`` itself is Faust's, per message.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable
from contextlib import nullcontext

from faust.sensors.monitor import Monitor
from faust.types import EventT, StreamT
from faust.types import tuples as faust_tuples

# Faust's lock around an ack's decisions (a reentrant threading lock); none in versions without it.
ACK_LOCK = getattr(faust_tuples, "ack_lock", None) or nullcontext()


class Batch(list):
    """A batch of events; :meth:`ack` acks them all, once."""

    __slots__ = ("_ack", "_ack_all", "acked", "sensed")

    def __init__(self, ack: Callable[[EventT], None], ack_all: Callable[[Batch], None]) -> None:
        super().__init__()
        self._ack = ack
        self._ack_all = ack_all
        self.acked = False
        self.sensed: MonitorBatch | None = None  # the monitor, told of the batch at once

    def ack(self) -> None:
        if not self.acked:
            self.acked = True
            if self.sensed is None:
                for event in self:
                    self._ack(event)
            else:
                self._ack_all(self)


class MonitorBatch:
    """What the monitor's ``on_stream_event_in`` / ``on_message_in`` record per event, and their
    ``_out`` counterparts, for a batch.

    The monitor's runtime of an event is the time from its ``in`` to its ``out``; here
    every event of the batch has the batch's, and every message the batch's times in
    and out. ``fresh`` are the batch's messages that were not tracked before it (Faust
    calls ``on_message_in`` once per message, when it starts tracking it).
    """

    __slots__ = ("monitor", "n", "time_in")

    def __init__(self, monitor: Monitor, stream: StreamT, events: list[EventT], fresh: list) -> None:
        self.monitor = monitor
        self.n = n = len(events)
        monitor.events_total += n
        now = time.monotonic()
        inbound = monitor.stream_inbound_time
        for event in events:
            inbound[event.message.tp] = now
        monitor.events_by_stream[_lookup(monitor.stream_lookup, stream)] += n
        monitor.events_by_task[_lookup(monitor.task_lookup, stream.task_owner)] += n
        monitor.events_active += n
        self.time_in = time_in = monitor.time()
        if fresh:
            monitor.messages_received_total += len(fresh)
            monitor.messages_active += len(fresh)
            by_topic = Counter()
            read = monitor.tp_read_offsets
            for message in fresh:
                by_topic[message.tp.topic] += 1
                read[message.tp] = message.offset
                message.time_in = time_in
            received = monitor.messages_received_by_topic
            for topic, count in by_topic.items():
                received[topic] += count

    def out(self, final: list) -> None:
        """The batch's events are done; ``final`` are the messages whose last reference that was."""
        monitor = self.monitor
        time_out = monitor.time()
        runtime = time_out - self.time_in
        monitor.events_active -= self.n
        monitor.events_runtime.extend([runtime] * self.n)
        monitor.messages_active -= len(final)
        for message in final:
            message.time_out = time_out
            if message.time_in is not None:
                message.time_total = time_out - message.time_in


def _lookup(names, key) -> str:
    """The monitor's cached ``str(key)`` (it stringifies a stream or task once)."""
    try:
        return names[key]
    except KeyError:
        name = names[key] = str(key)
        return name


def monitor_alone(stream: StreamT) -> Monitor | None:
    """The app's monitor when it is exactly Faust's ``Monitor`` and the stream's only sensor; else None."""
    app = stream.app
    sensors = getattr(app, "sensors", None)
    monitor = getattr(app, "monitor", None)
    if sensors is None or type(monitor) is not Monitor:
        return None
    if list(sensors) != [monitor]:
        return None
    hooks = (
        ("_on_stream_event_in", "on_stream_event_in"),
        ("_on_stream_event_out", "on_stream_event_out"),
        ("_on_message_in", "on_message_in"),
        ("_on_message_out", "on_message_out"),
    )
    if any(getattr(stream, ours) != getattr(sensors, theirs) for ours, theirs in hooks):
        return None
    return monitor


def batches(
    stream: StreamT,
    max_events: int,
    within: float,
    on_skip: Callable[[EventT, str], None] | None = None,
    auto_ack: bool = True,
) -> AsyncGenerator[Batch, None]:
    """Batches of at most ``max_events`` events, none waiting more than ``within`` seconds.

    ``on_skip(event, why)`` is called for each event skipped as Faust skips it, with
    ``why`` "suspended" (flow control is suspended: a rebalance is under way) or
    "generation" (fetched in an older consumer generation). With ``auto_ack`` a
    batch is acked when the next one is asked for; without, by its :meth:`Batch.ack`.
    """
    if max_events < 1 or within <= 0:
        raise ValueError(f"batches need max_events >= 1 and within > 0, not {max_events} and {within}")
    agen = _batches(stream, max_events, within, on_skip, auto_ack)
    # Registered like take_events' generators so that Stream.on_stop closes it.
    stream._active_agens.add(agen)
    return agen


async def _batches(stream, max_events: int, within: float, on_skip, auto_ack: bool) -> AsyncGenerator[Batch, None]:
    loop = asyncio.get_running_loop()
    app = stream.app
    channel = aiter(stream.channel)
    queue = channel.queue
    flow_control = app.flow_control
    acking_topics = app.topics.acking_topics
    track = app.consumer.unacked.add
    on_message_in = stream._on_message_in
    on_message_out = stream._on_message_out
    on_event_in = stream._on_stream_event_in
    on_event_out = stream._on_stream_event_out
    sensor_states: dict[int, object] = {}
    monitor: Monitor | None = None
    fresh: list = []  # the batch's newly tracked messages, when the monitor is told of it at once

    def ack(event: EventT) -> None:
        message = event.message
        last = event.ack()
        on_event_out(message.tp, message.offset, stream, event, sensor_states.pop(id(event), None))
        if last:
            on_message_out(message.tp, message.offset, message)

    def ack_all(batch: Batch) -> None:
        """``Event.ack`` of every event of a batch the monitor was told of at once, under one lock."""
        consumer = app.consumer
        final = []
        with ACK_LOCK:
            for event in batch:
                message = event.message
                if not message.acked:
                    refcount = message.refcount = max(message.refcount - 1, 0)
                    if not refcount and message.on_final_ack(consumer):
                        final.append(message)
        batch.sensed.out(final)

    def admit(event: EventT) -> bool:
        message = event.message
        if not flow_control.is_active() or message.generation_id != app.consumer_generation_id:
            ack(event)  # skipped, and acked so that the lag does not grow
            if on_skip is not None:
                on_skip(event, "generation" if flow_control.is_active() else "suspended")
            return False
        if message.topic in acking_topics and not message.tracked:
            message.tracked = True
            track(message)
            if monitor is None:
                on_message_in(message.tp, message.offset, message)
            else:
                fresh.append(message)
        if monitor is None:
            sensor_states[id(event)] = on_event_in(message.tp, message.offset, stream, event)
        return True

    started = await stream.maybe_start()
    try:
        while not stream.should_stop:
            batch = Batch(ack, ack_all)
            monitor = monitor_alone(stream)
            fresh = []
            deadline = 0.0
            while len(batch) < max_events:
                if not queue.empty():
                    event = queue.get_nowait()
                elif not batch:
                    event = await queue.get()
                else:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        event = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                if admit(event):
                    if not batch:
                        deadline = loop.time() + within
                    batch.append(event)
            if not batch:
                continue
            stream.events_total += len(batch)
            if monitor is not None:
                batch.sensed = MonitorBatch(monitor, stream, batch, fresh)
            yield batch
            if auto_ack:
                batch.ack()
    except StopAsyncIteration:
        # Faust ends a channel's iteration by throwing this into its queue.
        return
    finally:
        stream._channel_stop_iteration(channel)
        if started:
            await stream.stop()
            stream.service_reset()
