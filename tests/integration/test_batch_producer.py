"""The agents' batch producer on a real broker: in order, where murmur2 puts keys, errors raised."""

from __future__ import annotations

import asyncio
import threading

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from support import TopicReader, free_port

from stream.kafka.partitioning import partition_for
from stream.runtime.batch_producer import BatchProducer, _Batch

pytestmark = pytest.mark.integration


def _topic(bootstrap: str, name: str, partitions: int) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)
    return name


def test_a_batch_resolves_when_every_record_is_on_the_broker(kafka_bootstrap, unique_prefix):
    topic = _topic(kafka_bootstrap, f"{unique_prefix}out", 4)
    keys = [f"c{i % 37}".encode() for i in range(600)]
    records = [(topic, key, f"{i}".encode(), [("n", str(i).encode())]) for i, key in enumerate(keys)]
    producer = BatchProducer({"bootstrap.servers": kafka_bootstrap})
    try:
        offsets = asyncio.run(producer.send(records))
        assert asyncio.run(producer.send([])) == {}
    finally:
        assert producer.close() == 0

    reader = TopicReader(kafka_bootstrap, topic)
    reader.read_until(lambda r: len(r) >= len(records), 30, "the batch on the broker")
    reader.close()
    assert len(reader.records) == len(records)
    for record in reader.records:
        assert record.partition == partition_for(record.key, 4), "not where the Java partitioner puts the key"
        assert record.headers == {"n": record.value}
    # Per key, records keep the order they were sent in (what a changelog needs).
    by_key: dict[bytes, list[int]] = {}
    for record in sorted(reader.records, key=lambda r: (r.partition, r.offset)):
        by_key.setdefault(record.key, []).append(int(record.value))
    assert all(values == sorted(values) for values in by_key.values())
    highest = {}
    for record in reader.records:
        highest[(topic, record.partition)] = max(highest.get((topic, record.partition), -1), record.offset)
    assert offsets == highest


@pytest.mark.parametrize("offsets", [True, False], ids=["offsets", "counted"])
def test_a_failed_delivery_raises_instead_of_resolving(offsets):
    """No broker answers: delivery times out, and the batch raises rather than resolving."""
    producer = BatchProducer({"bootstrap.servers": f"127.0.0.1:{free_port()}", "message.timeout.ms": "2000"})

    async def deliver():
        return await asyncio.wait_for(producer.submit([("anywhere", b"k", b"v", None)], offsets=offsets), 30)

    try:
        with pytest.raises(KafkaException, match="timed out"):
            asyncio.run(deliver())
    finally:
        producer.close(timeout_s=1)


@pytest.mark.parametrize("offsets", [True, False], ids=["offsets", "counted"])
def test_submit_produces_before_it_is_awaited_and_the_rest_once_the_queue_has_room(
    kafka_bootstrap, unique_prefix, offsets
):
    topic = _topic(kafka_bootstrap, f"{unique_prefix}submit{int(offsets)}", 2)
    records = [(topic, f"c{i % 11}".encode(), f"{i}".encode(), None) for i in range(300)]

    async def run() -> tuple[int, dict]:
        producer = BatchProducer({"bootstrap.servers": kafka_bootstrap, "queue.buffering.max.messages": "50"})
        try:
            early = producer.submit(records[:40])
            # Not awaited yet, but already with librdkafka: a flush delivers all 40.
            left = producer._producer.flush(30)
            await early
            # 260 records do not fit a 50-record queue: the rest go as deliveries make room.
            return left, await asyncio.wait_for(producer.submit(records[40:], offsets=offsets), 30)
        finally:
            assert producer.close() == 0

    left, result = asyncio.run(run())
    assert left == 0
    reader = TopicReader(kafka_bootstrap, topic)
    reader.read_until(lambda r: len(r) >= len(records), 30, "every submitted record on the broker")
    reader.close()
    assert sorted(int(r.value) for r in reader.records) == list(range(300))
    highest = {(topic, p): max(r.offset for r in reader.records if r.partition == p) for p in (0, 1)}
    assert result == (highest if offsets else {})


def test_delivery_reports_are_served_on_the_event_loop_thread(kafka_bootstrap, unique_prefix, monkeypatch):
    """No thread of its own: a poll thread beside a busy loop waited for the GIL at every report."""
    topic = _topic(kafka_bootstrap, f"{unique_prefix}thread", 2)
    served_on: set[int] = set()
    count = _Batch.on_counted

    def on_counted(self, err, msg):
        served_on.add(threading.get_ident())
        count(self, err, msg)

    monkeypatch.setattr(_Batch, "on_counted", on_counted)
    threads_before = threading.active_count()
    producer = BatchProducer({"bootstrap.servers": kafka_bootstrap})
    try:
        assert threading.active_count() == threads_before

        async def run() -> int:
            await asyncio.wait_for(producer.submit([(topic, b"k", b"v", None)] * 50, offsets=False), 30)
            await asyncio.wait_for(producer.send([(topic, b"k", b"w", None)] * 50), 30)
            return threading.get_ident()

        loop_thread = asyncio.run(run())
    finally:
        assert producer.close() == 0
    assert served_on == {loop_thread}
