"""Undecodable record batches are reported and skipped by aiokafka's real fetcher records (no fakes)."""

from __future__ import annotations

import struct

import aiokafka.codec
import pytest
from aiokafka.consumer import fetcher
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from stream.errors import RuntimeMismatch
from stream.kafka.config import ClientLog
from stream.metrics import StreamMetrics
from stream.runtime import undecodable
from stream.runtime.undecodable import RecordsWithBytes, TolerantPartitionRecords, UndecodableBatch

pytestmark = pytest.mark.unit

TP = TopicPartition("account-events", 3)
NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
HEADER = 61  # bytes of a v2 batch before its records
CRC_AT, CRC_FROM = 17, 21


def batch(base: int, n: int, codec: int = NONE) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for i in range(n):
        builder.append(
            i, timestamp=1_700_000_000_000 + i, key=b"c%d" % (base + i), value=b"v%d" % (base + i) * 20, headers=[]
        )
    raw = bytearray(builder.build())
    struct.pack_into(">q", raw, 0, base)  # the base offset is outside the CRC
    return bytes(raw)


def broken_payload(raw: bytes) -> bytes:
    """``raw`` with its compressed records garbled and its CRC made right again."""
    out = bytearray(raw)
    for i in range(HEADER + 2, len(out)):
        out[i] ^= 0x5A
    struct.pack_into(">I", out, CRC_AT, calc_crc32c(bytes(out[CRC_FROM:])))
    return bytes(out)


def bad_crc(raw: bytes) -> bytes:
    out = bytearray(raw)
    out[CRC_AT] ^= 0xFF
    return bytes(out)


def read(buffer: bytes, fetch_offset: int = 0, cls=TolerantPartitionRecords, records=RecordsWithBytes):
    parts = cls(TP, records(buffer), None, fetch_offset, None, None, True, 0)
    offsets = [r.offset for r in parts]
    return offsets, parts.next_fetch_offset


@pytest.fixture
def reported(monkeypatch):
    seen: list[UndecodableBatch] = []
    monkeypatch.setitem(undecodable._reporter, "current", seen.append)
    return seen


def test_good_batches_of_every_codec_read_as_aiokafka_reads_them(reported):
    buffer = batch(0, 5) + batch(5, 5, GZIP) + batch(10, 5, SNAPPY) + batch(15, 5, LZ4) + batch(20, 5, ZSTD)
    assert read(buffer) == read(buffer, cls=PartitionRecords, records=MemoryRecords) == (list(range(25)), 25)
    tail = buffer[len(batch(0, 5)) :]  # a fetch at offset 7 starts with the batch that holds it
    assert read(tail, fetch_offset=7) == read(tail, 7, PartitionRecords, MemoryRecords) == (list(range(7, 25)), 25)
    assert reported == []


def test_a_codec_the_consumer_lacks_skips_that_batch_only_and_keeps_its_bytes(reported, monkeypatch):
    lz4 = batch(5, 5, LZ4)
    buffer = batch(0, 5) + lz4 + batch(10, 5, GZIP)
    monkeypatch.setattr(aiokafka.codec, "has_lz4", lambda: False)
    with pytest.raises(aiokafka.errors.UnsupportedCodecError):
        read(buffer, cls=PartitionRecords, records=MemoryRecords)  # what stopped the worker
    assert read(buffer) == ([0, 1, 2, 3, 4, 10, 11, 12, 13, 14], 15)
    [bad] = reported
    assert (bad.topic, bad.partition, bad.first_offset, bad.last_offset, bad.offsets) == (TP.topic, 3, 5, 9, 5)
    assert bad.error == "UnsupportedCodecError" and "lz4" in bad.message
    assert bad.raw == lz4
    monkeypatch.undo()
    # The bytes kept are the batch as fetched: with the codec, any Kafka library reads its records.
    assert [r.value for r in MemoryRecords(bad.raw).next_batch()] == [b"v%d" % i * 20 for i in range(5, 10)]


def test_a_corrupt_payload_and_a_wrong_crc_are_skipped_with_their_ranges(reported):
    buffer = batch(0, 3) + broken_payload(batch(3, 4, LZ4)) + batch(7, 2) + bad_crc(batch(9, 6)) + batch(15, 1)
    assert read(buffer) == ([0, 1, 2, 7, 8, 15], 16)
    assert [(b.first_offset, b.last_offset, b.error) for b in reported] == [
        (3, 6, reported[0].error),
        (9, 14, "CorruptRecordException"),
    ]
    assert reported[0].error != "CorruptRecordException"  # the CRC was right; the codec failed


def test_a_fetch_that_starts_inside_a_bad_batch_reports_only_what_was_not_delivered(reported):
    buffer = bad_crc(batch(10, 6)) + batch(16, 2)
    assert read(buffer, fetch_offset=12) == ([16, 17], 18)
    assert [(b.first_offset, b.last_offset) for b in reported] == [(12, 15)]


def test_a_batch_whose_header_is_broken_moves_one_offset_and_ends_the_fetch(reported):
    good = batch(0, 2)
    header_only = bytearray(batch(2, 3))
    struct.pack_into(">i", header_only, 8, 1)  # a length shorter than any batch: the batch cannot be split
    buffer = good + bytes(header_only[: 12 + 1])
    assert read(buffer) == ([0, 1], 3)
    assert [(b.first_offset, b.last_offset, b.raw) for b in reported] == [(2, 2, None)]


def test_a_failing_reporter_does_not_stop_the_fetch(monkeypatch, caplog):
    def explode(batch):
        raise RuntimeError("reporter down")

    monkeypatch.setitem(undecodable._reporter, "current", explode)
    assert read(batch(0, 2) + bad_crc(batch(2, 2)) + batch(4, 1)) == ([0, 1, 4], 5)
    assert "reporting the undecodable batch failed" in caplog.text


def test_install_replaces_the_fetchers_classes_and_keeps_the_reporter(monkeypatch):
    monkeypatch.setattr(fetcher, "PartitionRecords", PartitionRecords)
    monkeypatch.setattr(fetcher, "MemoryRecords", MemoryRecords)
    monkeypatch.setitem(undecodable._reporter, "current", undecodable._reporter["current"])
    assert not undecodable.installed()
    seen = []
    undecodable.install(seen.append)
    assert undecodable.installed()
    assert undecodable._reporter["current"] == seen.append


def test_install_refuses_an_aiokafka_without_what_it_replaces(monkeypatch):
    monkeypatch.delattr(fetcher, "PartitionRecords")
    with pytest.raises(RuntimeMismatch, match="PartitionRecords"):
        undecodable.install()


def test_the_reporter_counts_logs_and_records_where_it_could_not_write(caplog):
    metrics = StreamMetrics.create(CollectorRegistry())
    # Nothing listens on this port: the write is not acknowledged, which is logged and counted.
    reporter = undecodable.DeadLetterReporter(
        {"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": "500", "logger": ClientLog()},
        "dlq",
        metrics,
        timeout_s=2.0,
    )
    reporter(UndecodableBatch("account-events", 1, 5, 9, "UnsupportedCodecError", "no lz4", b"\x00" * 70))
    r = metrics.registry
    assert (
        r.get_sample_value(
            "churn_undecodable_batches_total", {"topic": "account-events", "error": "UnsupportedCodecError"}
        )
        == 1
    )
    assert r.get_sample_value("churn_undecodable_offsets_total", {"topic": "account-events"}) == 5
    assert r.get_sample_value("churn_dlq_writes_total", {"stage": "fetch_dlq_failed"}) == 1
    assert "account-events[1] offsets 5-9" in caplog.text and "was not written to dlq" in caplog.text
