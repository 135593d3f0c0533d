"""Table writes a batch at a time, and the raw-bytes schema of the input topics.

:func:`write_tables` does what ``table[key] = value`` does for a whole batch, setting
Faust's current-event context (private ``faust.streams._current_event``) for the
RocksDB store, which files a key under the current event's partition.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import faust
from faust.stores.memory import Store as MemoryStore
from faust.streams import _current_event
from faust.types import TP

from stream.kafka.partitioning import partition_for
from stream.runtime.batch_producer import BatchProducer


@dataclass
class _Message:
    key: bytes
    topic: str
    partition: int


@dataclass
class KeyContext:
    """Stands in for the event of a key written outside stream iteration (a timer):
    all a table write reads of an event is its message's key, topic and partition."""

    message: _Message


def key_context(key: bytes, topic: str, partitions: int) -> KeyContext:
    return KeyContext(_Message(key, topic, partition_for(key, partitions)))


async def write_tables(
    producer: BatchProducer, writes: list[tuple[faust.Table, dict[bytes, bytes]]], events: list
) -> None:
    """Write a batch's table values and their changelog records, and wait for the broker.

    This is what ``table[key] = value`` does, minus its per-record trip through
    Faust's producer buffer: that buffer sends one record per event-loop turn, and
    while it holds more than 100 records Faust's conductor stops delivering events
    and drains it with a ``wait_for`` per record. Here a batch's records go to the
    producer in one pass, in the order written, and the batch waits for their
    acknowledgement before its events are acked, so a committed offset never runs
    ahead of the state recorded for it. A store that persists offsets (RocksDB) learns
    the highest offset per changelog partition as Faust's own changelog callback does
    (``set_persisted_offset``); recovery reads the changelog as it always does.

    Each key is written to the RocksDB store in the context of the last event of that
    key: after a batch no event is current, and that store files a key under the
    partition of the current event. The memory store does not look (a write is a dict
    assignment), so it takes a batch's values in one update. The changelog record goes
    where the partitioner puts the key (``use_partitioner``), which is the event's
    partition too.
    """
    writes = [(table, values) for table, values in writes if values]
    if not writes:
        return
    by_event = []
    for table, values in writes:
        if isinstance(table.data, MemoryStore):
            table.data.update(values)
        else:
            by_event.append((table.data, values))
    if by_event:
        last = {e.message.key: e for e in events}
        fallback = events[-1]
        token = _current_event.set(None)
        try:
            for store, values in by_event:
                for key, value in values.items():
                    _current_event.set(weakref.ref(last.get(key, fallback)))
                    store[key] = value
        finally:
            _current_event.reset(token)
    records, persisting = [], {}
    for table, values in writes:
        topic = table.changelog_topic.get_topic_name()
        if not isinstance(table.data, MemoryStore):
            persisting[topic] = table.data
        records.extend((topic, key, value, None) for key, value in values.items())
    # Only a store that persists offsets needs the delivery reports read (a memory store recovers from
    # the start of its changelog): counting them is cheaper, about 1 µs per record.
    offsets = await producer.submit(records, offsets=bool(persisting))
    for (topic, partition), offset in offsets.items():
        if topic in persisting:
            persisting[topic].set_persisted_offset(TP(topic, partition), offset)


class RawSchema(faust.Schema):
    """Keys and values as the broker's bytes, decoded without Faust's serializer registry.

    The "raw" serializer returns the bytes it is given, but reaching it through the
    registry (codec lookup, payload preparation, key and value decode errors) was a
    noticeable share of a busy worker's time. Validation happens at the featurize edge
    anyway.
    The event is built as ``App.create_event`` builds it, with the event class read
    from the settings once rather than per message (a settings read is a lookup
    through Faust's settings registry, not an attribute read).
    """

    def compile(self, app, *, on_key_decode_error=None, on_value_decode_error=None, default_propagate=False):
        event_class = app.conf.Event

        async def decode(message, *, propagate: bool = default_propagate):
            return event_class(app, message.key, message.value, message.headers, message)

        return decode
