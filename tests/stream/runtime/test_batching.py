"""Batches taken from an agent's channel queue: acked only once processed, never when processing raised.

A unit test of :func:`stream.batching.batches` alone, against a stand-in for the few
parts of a Faust stream it touches (queue, flow control, generation, sensors).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from faust.sensors import Monitor, Sensor, SensorDelegate
from faust.types import TP
from support import wait_until

from stream.runtime.batching import batches

pytestmark = pytest.mark.unit


class Message:
    """Faust's message as far as acking goes: a reference per stream, the last ack goes to the consumer."""

    def __init__(self, offset: int, generation: int = 1) -> None:
        self.topic = "events"
        self.tp = TP("events", 0)
        self.offset = offset
        self.generation_id = generation
        self.tracked = False
        self.acked = False
        self.refcount = 1
        self.final_acks = 0
        self.time_in = self.time_out = self.time_total = None

    def ack(self, consumer) -> bool:  # Message.ack
        if not self.acked:
            self.refcount = max(self.refcount - 1, 0)
            if not self.refcount:
                return self.on_final_ack(consumer)
        return False

    def on_final_ack(self, consumer) -> bool:  # ConsumerMessage.on_final_ack
        return consumer.ack(self)


class Consumer:
    """The consumer's side of an ack: the message is no longer unacked, its offset committable."""

    def __init__(self) -> None:
        self.unacked: set = set()
        self.acked: list[int] = []

    def ack(self, message: Message) -> bool:
        if message.acked:
            return False
        message.acked = True
        message.final_acks += 1
        self.unacked.discard(message)
        self.acked.append(message.offset)
        return True


class Event:
    def __init__(self, offset: int, generation: int = 1, consumer: Consumer | None = None) -> None:
        self.message = Message(offset, generation)
        self.acked = 0
        self.consumer = consumer or Consumer()

    def ack(self) -> bool:  # Event.ack: counted here, decided by the message
        self.acked += 1
        return self.message.ack(self.consumer)


class Channel:
    """Iterating a Faust channel gives an iterator that holds the queue the conductor fills."""

    def __init__(self, queue: asyncio.Queue) -> None:
        self.queue = queue

    def __aiter__(self):
        return self

    async def __anext__(self):  # never used: batches() reads the queue directly
        raise AssertionError("batches() must take events from the queue")


class Stream:
    """What ``batches`` reads of a Faust stream."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.consumer = Consumer()
        self.unacked: set = self.consumer.unacked
        self.sensed_in: list[int] = []
        self.sensed_out: list[int] = []
        self.app = SimpleNamespace(
            flow_control=SimpleNamespace(is_active=lambda: True),
            consumer_generation_id=1,
            topics=SimpleNamespace(acking_topics={"events"}),
            consumer=self.consumer,
        )
        self.channel = Channel(self.queue)
        self.should_stop = False
        self.events_total = 0
        self._active_agens: set = set()
        self.stopped = False

    def _on_message_in(self, tp, offset, message) -> None:
        pass

    def _on_message_out(self, tp, offset, message) -> None:
        assert message not in self.unacked  # the consumer's ack went first

    def _on_stream_event_in(self, tp, offset, stream, event):
        self.sensed_in.append(offset)
        return offset

    def _on_stream_event_out(self, tp, offset, stream, event, state) -> None:
        # the state from the way in comes back on ack (None for a skipped event, never sensed in)
        assert state == (offset if offset in self.sensed_in else None)
        self.sensed_out.append(offset)

    async def maybe_start(self) -> bool:
        return False

    def _channel_stop_iteration(self, channel) -> None:
        self.stopped = True


@pytest.fixture
def stream():
    return Stream()


def fill(stream: Stream, events: list[Event]) -> None:
    for e in events:
        e.consumer = stream.consumer
        stream.queue.put_nowait(e)


async def test_a_batch_is_acked_when_the_next_is_asked_for_not_before(stream):
    events = [Event(i) for i in range(5)]
    fill(stream, events)
    agen = batches(stream, max_events=3, within=0.01)
    first = await asyncio.wait_for(anext(agen), 2)
    assert [e.message.offset for e in first] == [0, 1, 2]
    assert all(e.acked == 0 for e in events)
    assert {e.message for e in first} <= stream.unacked  # tracked: commits stop at them
    second = await asyncio.wait_for(anext(agen), 2)
    assert [e.message.offset for e in second] == [3, 4]  # the rest, after `within`
    assert [e.acked for e in events] == [1, 1, 1, 0, 0]
    assert stream.sensed_out == [0, 1, 2]
    await agen.aclose()
    assert [e.acked for e in events] == [1, 1, 1, 0, 0]  # abandoned: the open batch stays unacked
    assert stream.stopped


async def test_without_auto_ack_a_batch_is_acked_by_its_caller_in_any_order(stream):
    events = [Event(i) for i in range(4)]
    fill(stream, events)
    agen = batches(stream, max_events=2, within=0.01, auto_ack=False)
    first = await asyncio.wait_for(anext(agen), 2)
    second = await asyncio.wait_for(anext(agen), 2)
    assert [e.acked for e in events] == [0, 0, 0, 0]  # asking for the next batch acks nothing
    second.ack()
    second.ack()
    assert [e.acked for e in events] == [0, 0, 1, 1]  # once, though asked twice
    first.ack()
    assert [e.acked for e in events] == [1, 1, 1, 1]
    assert stream.sensed_out == [2, 3, 0, 1]
    await agen.aclose()


async def test_a_batch_whose_processing_raised_is_never_acked(stream):
    events = [Event(i) for i in range(4)]
    fill(stream, events)

    agen = batches(stream, max_events=10, within=0.01)

    async def agent():
        async for batch in agen:
            raise RuntimeError(f"scoring failed on {len(batch)} events")

    with pytest.raises(RuntimeError, match="4 events"):
        await asyncio.wait_for(agent(), 2)
    assert agen in stream._active_agens
    await agen.aclose()  # what Faust's Stream.on_stop does with the generators it holds
    assert [e.acked for e in events] == [0, 0, 0, 0]
    assert {e.message for e in events} <= stream.unacked  # their offsets are not committed
    assert stream.sensed_out == []


async def test_events_of_an_old_generation_are_skipped_and_acked(stream):
    stale, fresh = Event(0, generation=0), Event(1)
    fill(stream, [stale, fresh])
    skips = []
    agen = batches(stream, max_events=10, within=0.01, on_skip=lambda e, why: skips.append((e, why)))
    batch = await asyncio.wait_for(anext(agen), 2)
    assert batch == [fresh]
    assert stale.acked == 1 and fresh.acked == 0
    assert stream.sensed_in == [1] and stream.sensed_out == [0]
    assert skips == [(stale, "generation")]
    await agen.aclose()


async def test_events_while_flow_control_is_suspended_are_skipped_and_acked(stream):
    suspended = [True]
    stream.app.flow_control.is_active = lambda: not suspended[0]
    during, after = Event(0), Event(1)
    fill(stream, [during])
    skips = []
    agen = batches(stream, max_events=10, within=0.01, on_skip=lambda e, why: skips.append((e, why)))
    pending = asyncio.ensure_future(anext(agen))
    await wait_until(lambda: skips)
    assert skips == [(during, "suspended")] and during.acked == 1
    suspended[0] = False
    fill(stream, [after])
    assert await asyncio.wait_for(pending, 2) == [after]
    assert after.acked == 0
    await agen.aclose()


async def test_batches_need_a_size_and_a_wait():
    with pytest.raises(ValueError, match="max_events >= 1"):
        batches(Stream(), max_events=0, within=0.01)


class Owner:
    """Stands in for the agent's task: the monitor keeps it in a weak-key dictionary."""

    def __str__(self) -> str:
        return "task:featurize"


class MonitoredStream(Stream):
    """A stream whose app has Faust's sensor delegate, holding Faust's monitor, and maybe more."""

    def __init__(self, *extra_sensors) -> None:
        super().__init__()
        self.task_owner = Owner()
        self.app.monitor = Monitor()
        self.app.beacon = SimpleNamespace(new=lambda sensor: None)
        self.app.sensors = SensorDelegate(self.app)
        for sensor in (self.app.monitor, *extra_sensors):
            self.app.sensors.add(sensor)
        self._on_stream_event_in = self.app.sensors.on_stream_event_in
        self._on_stream_event_out = self.app.sensors.on_stream_event_out
        self._on_message_in = self.app.sensors.on_message_in
        self._on_message_out = self.app.sensors.on_message_out

    def __hash__(self) -> int:
        return id(self)

    def __str__(self) -> str:
        return "stream:events"


def monitor_counts(monitor: Monitor) -> dict:
    return {
        "total": monitor.events_total,
        "active": monitor.events_active,
        "by_stream": dict(monitor.events_by_stream),
        "by_task": dict(monitor.events_by_task),
        "partitions": set(monitor.stream_inbound_time),
        "runtimes": len(monitor.events_runtime),
        "messages": monitor.messages_received_total,
        "messages_active": monitor.messages_active,
        "messages_by_topic": dict(monitor.messages_received_by_topic),
        "read": dict(monitor.tp_read_offsets),
    }


async def test_the_monitor_counts_a_batch_as_it_counts_its_events_one_by_one():
    per_event, batched = MonitoredStream(), MonitoredStream()
    per_event.task_owner = batched.task_owner  # one agent task, looked up by both monitors

    def events() -> list[Event]:
        out = [Event(i) for i in range(6)]
        for e in out[3:]:
            e.message.tp = TP("events", 1)
        out[0].message.refcount = 2  # another stream holds it too
        return out

    one_by_one, together = events(), events()
    fill(per_event, one_by_one)
    fill(batched, together)
    per_event_monitor, batched_monitor = per_event.app.monitor, batched.app.monitor

    # The per-event path: what Faust's stream iteration calls, by hand.
    for e in one_by_one:
        e.message.tracked = True
        per_event.unacked.add(e.message)
        per_event._on_message_in(e.message.tp, e.message.offset, e.message)
    states = [per_event._on_stream_event_in(e.message.tp, e.message.offset, per_event, e) for e in one_by_one]
    agen = batches(batched, max_events=6, within=0.01, auto_ack=False)
    batch = await asyncio.wait_for(anext(agen), 2)
    assert batch.sensed is not None  # the monitor alone: told of the batch at once
    assert monitor_counts(batched_monitor) == monitor_counts(per_event_monitor)
    assert monitor_counts(batched_monitor)["active"] == 6 and monitor_counts(batched_monitor)["messages_active"] == 6
    assert all(e.message.time_in is not None for e in together)

    for e, state in zip(one_by_one, states):
        per_event._on_stream_event_out(e.message.tp, e.message.offset, per_event, e, state)
        if e.ack():
            per_event._on_message_out(e.message.tp, e.message.offset, e.message)
    batch.ack()
    assert monitor_counts(batched_monitor) == monitor_counts(per_event_monitor)
    assert monitor_counts(batched_monitor)["active"] == 0 and monitor_counts(batched_monitor)["runtimes"] == 6
    # The message the other stream still holds is not the consumer's to commit yet; the rest are.
    assert batched.consumer.acked == per_event.consumer.acked == [1, 2, 3, 4, 5]
    assert batched.unacked == {together[0].message} and together[0].message.refcount == 1
    assert monitor_counts(batched_monitor)["messages_active"] == 1
    assert all(e.message.time_total is not None for e in together[1:]) and together[0].message.time_out is None
    assert all(e.acked == 0 for e in together)  # acked in one pass, not through Event.ack
    batch.ack()
    assert batched.consumer.acked == [1, 2, 3, 4, 5] and together[0].message.refcount == 1  # once
    await agen.aclose()


async def test_another_sensor_gets_every_event_one_by_one():
    seen_in, seen_out = [], []

    class Counting(Sensor):
        def on_stream_event_in(self, tp, offset, stream, event):
            seen_in.append(offset)
            return offset

        def on_stream_event_out(self, tp, offset, stream, event, state=None):
            seen_out.append(state)

    stream = MonitoredStream(Counting())
    fill(stream, [Event(i) for i in range(3)])
    agen = batches(stream, max_events=3, within=0.01, auto_ack=False)
    batch = await asyncio.wait_for(anext(agen), 2)
    assert batch.sensed is None and seen_in == [0, 1, 2]
    assert stream.app.monitor.events_total == 3  # the monitor too, per event
    batch.ack()
    assert seen_out == [0, 1, 2] and stream.app.monitor.events_active == 0
    await agen.aclose()
