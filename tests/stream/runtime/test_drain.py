"""The fetch loop: what Faust's own loop and getmany do, message for message, behind the seek guard.

Each scenario runs twice on identical fake consumers: once through Faust 0.15's
``Consumer._drain_messages`` and ``Consumer.getmany`` (the functions themselves),
with the seek guard wrapping ``getmany`` as the worker had it; once through
:func:`stream.drain.drain_messages`. Both must leave the same trace: every delivery
(with the partition's read offset and the guard's flag at that moment), end offsets
recorded, gaps, commits, seeks and waits.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.utils import DefaultSchedulingStrategy
from faust.types import TP
from mode import Service

from stream.runtime.drain import drain_messages
from stream.runtime.seek_guard import SeekGuard

pytestmark = pytest.mark.unit

A0, A1, B0 = TP("a", 0), TP("a", 1), TP("b", 0)


@dataclass
class Record:
    offset: int
    key: bytes = b"k"
    value: bytes = b"v"


@dataclass
class Message:
    tp: TP
    offset: int
    key: bytes
    value: bytes

    @property
    def topic(self) -> str:
        return self.tp.topic


class Log:
    def __init__(self, trace: list) -> None:
        self.trace = trace

    def dev(self, fmt, *args):
        self.trace.append(("dev", fmt.split(" ")[0]))

    def warning(self, text, *args):
        self.trace.append(("warning", text))

    def info(self, text, *args):
        self.trace.append(("info", text))

    def exception(self, text, *args):
        self.trace.append(("exception", text))


class Diag:
    def __init__(self) -> None:
        self.flags: set[str] = set()

    def set_flag(self, flag):
        self.flags.add(flag)

    def unset_flag(self, flag):
        self.flags.discard(flag)


class Monitor:
    def __init__(self, trace: list) -> None:
        self.trace = trace

    def track_tp_end_offset(self, tp, offset):
        self.trace.append(("end", tp.topic, tp.partition, offset))


class App:
    def __init__(self, trace: list, acking: set[str]) -> None:
        self.consumer_generation_id = 1
        self.monitor = Monitor(trace)
        self.topics = type("Topics", (), {"acks_enabled_for": staticmethod(lambda topic: topic in acking)})()
        self.should_stop = False


class Consumer(Service):
    """The parts of Faust's consumer both loops use; fetches come from a script."""

    getmany = FaustConsumer.getmany
    faust_drain = FaustConsumer._drain_messages
    consumer_stopped_errors = (ConnectionError,)

    def __init__(self, fetches, on_deliver=None, commit_every=None, acking=("a",), waits=()) -> None:
        super().__init__()
        self.trace: list = []
        self.app = App(self.trace, set(acking))
        self.transport = type("Transport", (), {"app": self.app})()
        self.log = Log(self.trace)
        self.diag = Diag()
        self.scheduler = DefaultSchedulingStrategy()
        self.suspend_flow = asyncio.Event()
        self.flow_active = True
        self._fetches = list(fetches)
        self._read_offset = defaultdict(lambda: None)
        self._buffered_partitions: set[TP] = set()
        self._commit_every = commit_every
        self._n_acked = 0
        self._on_deliver = on_deliver or (lambda consumer, message: None)
        self._waits = set(waits)  # offsets whose delivery has to wait
        self.callback = self.deliver
        self.guard = SeekGuard(self)
        self.getmany = self.guard.getmany
        self.perform_seek = self.guard.perform_seek

    async def _wait_next_records(self, timeout):
        if not self._fetches:
            self._stopped.set()
            return None, None
        records, active, *before = self._fetches.pop(0)
        for step in before:
            step(self)
        self.trace.append(("fetch", len(self._fetches)))
        return records, active

    def _to_message(self, tp, record):
        return Message(tp, record.offset, record.key, record.value)

    def highwater(self, tp):
        return 1000 + tp.partition

    async def deliver(self, message):
        read = self._read_offset[message.tp]
        self.trace.append(
            ("deliver", message.tp.topic, message.tp.partition, message.offset, read, self.guard.idle.is_set())
        )
        self._on_deliver(self, message)
        if message.offset in self._waits:
            await asyncio.sleep(0.001)
            self.trace.append(("delivered after a wait", message.offset))

    async def _add_gap(self, tp, start, end):
        self.trace.append(("gap", tp.topic, tp.partition, start, end))

    async def commit(self):
        self.trace.append(("commit",))

    def stop_flow(self):
        self.flow_active = False
        self.trace.append(("stop_flow",))

    def resume_flow(self):
        self.flow_active = True
        self.trace.append(("resume_flow",))

    async def perform_seek(self):
        self.trace.append(("seek",))
        self.resume_flow()


async def traces(make) -> tuple[list, list]:
    """The trace of Faust's loop and of :func:`drain_messages`, each on a fresh consumer from ``make``."""
    out = []
    for ours in (False, True):
        consumer = make()
        fetcher = Service()
        if ours:
            await asyncio.wait_for(drain_messages(consumer, fetcher, consumer.guard), 10)
        else:
            await asyncio.wait_for(consumer.faust_drain(fetcher), 10)
        out.append(consumer.trace)
    return out[0], out[1]


def records(tp_offsets: dict[TP, list[int]]):
    return {tp: [Record(o) for o in offsets] for tp, offsets in tp_offsets.items()}


async def test_fetched_messages_are_delivered_round_robin_with_read_offsets_and_the_guard_busy():
    faust, ours = await traces(
        lambda: Consumer(
            [
                (records({A0: [0, 1, 2], A1: [5, 6], B0: [0]}), None),
                (records({A0: [3], B0: [1, 2]}), {A0, B0}),
            ]
        )
    )
    assert ours == faust
    delivered = [t for t in ours if t[0] == "deliver"]
    assert len(delivered) == 9
    assert all(idle is False for *_, idle in delivered)  # a seek would wait for each of them
    assert ("deliver", "a", 0, 3, 2, False) in delivered  # read offset of the message before


async def test_gaps_drops_and_partitions_no_longer_active_as_faust_has_them():
    faust, ours = await traces(
        lambda: Consumer(
            [
                (records({A0: [0, 1, 5, 3, 6], A1: [0], B0: [0, 4]}), {A0, B0}),  # a gap, a drop; A1 not active
                (records({A1: [1], B0: [9]}), {B0}, lambda c: c._buffered_partitions.add(A1)),  # A1 buffered now
            ]
        )
    )
    assert ours == faust
    assert ("gap", "a", 0, 2, 5) in ours and ("dev", "DROPPED") in ours
    assert not any(t[0] == "gap" and t[1] == "b" for t in ours)  # b does not ack: no gap 5..9
    assert ("deliver", "a", 1, 1, None, False) in ours
    assert not any(t[:4] == ("deliver", "a", 1, 0) for t in ours)


async def test_a_new_consumer_generation_or_a_stopped_flow_ends_the_fetch_and_a_stopped_flow_seeks():
    def regenerate(consumer, message):
        if message.offset == 1 and message.tp == A0:
            consumer.app.consumer_generation_id += 1

    def stop(consumer, message):
        if message.offset == 2:
            consumer.stop_flow()

    for on_deliver in (regenerate, stop):
        faust, ours = await traces(
            lambda on_deliver=on_deliver: Consumer(
                [
                    (records({A0: [0, 1, 2, 3], A1: [0, 1, 2]}), None),
                    (records({A0: [4]}), None),
                ],
                on_deliver=on_deliver,
            )
        )
        assert ours == faust
    assert ("seek",) in ours and ours.index(("stop_flow",)) < ours.index(("seek",))


async def test_commits_every_n_acks_and_deliveries_that_wait():
    def ack(consumer, message):
        consumer._n_acked += 1

    faust, ours = await traces(
        lambda: Consumer([(records({A0: list(range(8))}), None)], on_deliver=ack, commit_every=3, waits={2, 5})
    )
    assert ours == faust
    assert ours.count(("commit",)) == 2
    assert ("delivered after a wait", 5) in ours


async def test_a_suspended_flow_delivers_through_wait_first():
    def suspend(consumer, message):
        if message.offset == 1:
            consumer.suspend_flow.set()

    faust, ours = await traces(lambda: Consumer([(records({A0: [0, 1, 2, 3]}), None)], on_deliver=suspend))
    assert ours == faust
    assert [t[3] for t in ours if t[0] == "deliver"] == [0, 1, 2, 3]


async def test_long_fetches_and_a_stopped_broker_end_as_in_faust():
    faust, ours = await traces(lambda: Consumer([(records({A0: list(range(250)), B0: list(range(120))}), None)]))
    assert ours == faust and sum(t[0] == "deliver" for t in ours) == 370

    def broker_gone(consumer, message):
        if message.offset == 3:
            raise ConnectionError("broker stopped")

    def make(stopping: bool) -> Consumer:
        consumer = Consumer([(records({A0: [0, 1, 2, 3, 4]}), None)], on_deliver=broker_gone)
        consumer.app.should_stop = stopping
        return consumer

    faust, ours = await traces(lambda: make(True))
    assert ours == faust and ("info", "Broker stopped consumer, shutting down...") in ours
    for run in (lambda c: c.faust_drain(Service()), lambda c: drain_messages(c, Service(), c.guard)):
        consumer = make(False)
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(run(consumer), 10)
        assert not any(t[0] == "info" for t in consumer.trace)
