"""``write_tables`` on Faust's own stores: values where a read finds them, offsets recorded.

The producer is a stand-in (this is a unit test of one function); the stores and
tables are Faust's, memory and RocksDB.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
import pytest
from faust.types import TP

from stream.runtime.tables import write_tables

pytestmark = pytest.mark.unit


class Producer:
    """Records what it is asked to send and answers with an offset per partition."""

    def __init__(self, offsets: dict[tuple[str, int], int]) -> None:
        self.offsets = offsets
        self.sent: list[tuple] = []
        self.asked_offsets: list[bool] = []

    async def submit(self, records, offsets: bool = True):
        self.sent.extend(records)
        self.asked_offsets.append(offsets)
        return self.offsets if offsets else {}


class Event:
    """What the stores read of an event: its message's key, topic and partition (held by weak reference)."""

    def __init__(self, key: bytes, partition: int) -> None:
        self.message = SimpleNamespace(key=key, topic="events", partition=partition)


def _table(store: str, tmp_path):
    app = faust.App("write-tables", broker="kafka://127.0.0.1:1", store=store, datadir=str(tmp_path))
    return app.Table("states", partitions=4, key_type=bytes, value_type=bytes, use_partitioner=True)


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_values_are_readable_and_the_changelog_offsets_recorded(store, tmp_path):
    table = _table(store, tmp_path)
    topic = table.changelog_topic.get_topic_name()
    # k1's last event is on partition 1, k2's on partition 3 (k1 first came on 2).
    events = [Event(b"k1", 2), Event(b"k2", 3), Event(b"k1", 1)]
    values = {b"k1": b"v1", b"k2": b"v2"}
    producer = Producer({(topic, 1): 40, (topic, 3): 7})

    asyncio.run(write_tables(producer, [(table, values), (table, {})], events))

    assert producer.sent == [(topic, b"k1", b"v1", None), (topic, b"k2", b"v2", None)]
    assert {key: table.data[key] for key in values} == values
    # The memory store keeps no offsets (it recovers from the start): its reports are only counted.
    assert producer.asked_offsets == [store.startswith("rocksdb")]
    if store.startswith("rocksdb"):
        assert table.data.persisted_offset(TP(topic, 1)) == 40
        assert table.data.persisted_offset(TP(topic, 3)) == 7
        # Filed under the partition of each key's last event: where recovery and reads look.
        assert table.data._db_for_partition(1).get(b"k1") == b"v1"
        assert table.data._db_for_partition(3).get(b"k2") == b"v2"
        assert table.data._db_for_partition(2).get(b"k1") is None


def test_nothing_to_write_sends_nothing(tmp_path):
    table = _table("memory://", tmp_path)
    producer = Producer({})
    asyncio.run(write_tables(producer, [(table, {})], [Event(b"k", 0)]))
    assert producer.sent == []
    assert not table.data
