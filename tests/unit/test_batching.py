"""Batches taken from an agent's channel queue: acked only once processed, never when processing raised.

A unit test of :func:`stream.batching.batches` alone, against a stand-in for the few
parts of a Faust stream it touches (queue, flow control, generation, sensors).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from faust.sensors import Monitor, Sensor, SensorDelegate

from stream.batching import batches

pytestmark = pytest.mark.unit


class Message:
    def __init__(self, offset: int, generation: int = 1) -> None:
        self.topic = "events"
        self.tp = ("events", 0)
        self.offset = offset
        self.generation_id = generation
        self.tracked = False


class Event:
    def __init__(self, offset: int, generation: int = 1) -> None:
        self.message = Message(offset, generation)
        self.acked = 0

    def ack(self) -> bool:
        self.acked += 1
        return True


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
        self.unacked: set = set()
        self.sensed_in: list[int] = []
        self.sensed_out: list[int] = []
        self.app = SimpleNamespace(
            flow_control=SimpleNamespace(is_active=lambda: True),
            consumer_generation_id=1,
            topics=SimpleNamespace(acking_topics={"events"}),
            consumer=SimpleNamespace(unacked=self.unacked),
        )
        self.channel = Channel(self.queue)
        self.should_stop = False
        self.events_total = 0
        self._active_agens: set = set()
        self.stopped = False

    def _on_message_in(self, tp, offset, message) -> None:
        pass

    def _on_message_out(self, tp, offset, message) -> None:
        self.unacked.discard(message)

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
        stream.queue.put_nowait(e)


async def wait_until(condition, timeout: float = 2.0) -> None:
    """Let the loop run until ``condition()`` holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


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

    def __hash__(self) -> int:
        return id(self)

    def __str__(self) -> str:
        return "stream:events"


def monitor_counts(monitor: Monitor) -> dict:
    return {
        "total": monitor.events_total, "active": monitor.events_active,
        "by_stream": dict(monitor.events_by_stream), "by_task": dict(monitor.events_by_task),
        "partitions": set(monitor.stream_inbound_time), "runtimes": len(monitor.events_runtime),
    }


async def test_the_monitor_counts_a_batch_as_it_counts_its_events_one_by_one():
    per_event, batched = MonitoredStream(), MonitoredStream()
    per_event.task_owner = batched.task_owner  # one agent task, looked up by both monitors

    def events() -> list[Event]:
        out = [Event(i) for i in range(6)]
        for e in out[3:]:
            e.message.tp = ("events", 1)
        return out

    one_by_one, together = events(), events()
    for e in one_by_one:
        per_event.queue.put_nowait(e)
    for e in together:
        batched.queue.put_nowait(e)
    per_event_monitor, batched_monitor = per_event.app.monitor, batched.app.monitor

    # The per-event path: what Faust's stream iteration calls, by hand.
    states = [per_event._on_stream_event_in(e.message.tp, e.message.offset, per_event, e) for e in one_by_one]
    agen = batches(batched, max_events=6, within=0.01, auto_ack=False)
    batch = await asyncio.wait_for(anext(agen), 2)
    assert batch.sensed is not None  # the monitor alone: told of the batch at once
    assert monitor_counts(batched_monitor) == monitor_counts(per_event_monitor)
    assert monitor_counts(batched_monitor)["active"] == 6

    for e, state in zip(one_by_one, states):
        per_event._on_stream_event_out(e.message.tp, e.message.offset, per_event, e, state)
    batch.ack()
    assert monitor_counts(batched_monitor) == monitor_counts(per_event_monitor)
    assert monitor_counts(batched_monitor)["active"] == 0 and monitor_counts(batched_monitor)["runtimes"] == 6
    assert all(e.acked == 1 for e in together)
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
    for e in [Event(i) for i in range(3)]:
        stream.queue.put_nowait(e)
    agen = batches(stream, max_events=3, within=0.01, auto_ack=False)
    batch = await asyncio.wait_for(anext(agen), 2)
    assert batch.sensed is None and seen_in == [0, 1, 2]
    assert stream.app.monitor.events_total == 3  # the monitor too, per event
    batch.ack()
    assert seen_out == [0, 1, 2] and stream.app.monitor.events_active == 0
    await agen.aclose()
