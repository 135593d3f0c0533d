"""Record batches the consumer cannot decode are recorded and skipped; they never stop a worker.

aiokafka decodes a fetched partition's record batches lazily, inside the consumer's
``getmany``: a batch whose codec it cannot decode (``UnsupportedCodecError``), whose CRC
does not match (``CorruptRecordException``) or whose bytes do not parse raises out of the
fetch loop, and Faust stops the worker ("We experienced a crash!"). The batch is still
there on restart, so the worker crashes again at the same offset, for good.

:func:`install` gives aiokafka's fetcher two replacements, for every consumer of the
process:

- ``MemoryRecords`` becomes :class:`RecordsWithBytes`, which walks a fetch's batches
  exactly as aiokafka does and keeps each batch's bytes as they came off the wire;
- ``PartitionRecords`` becomes :class:`TolerantPartitionRecords`, whose record iterator
  catches the error of a batch, hands an :class:`UndecodableBatch` (topic, partition,
  offset range, error, the batch's bytes) to the reporter, moves the fetch position
  past the batch and goes on with the next batch of the same fetch.

Records of a batch yielded before the error stay delivered; the range reported starts
at the first record not delivered. A batch whose length field is itself broken has no
known end: the position moves one offset per fetch until a readable batch follows.

The worker's reporter (:class:`DeadLetterReporter`) logs the batch, counts it in
``churn_undecodable_batches`` and ``churn_undecodable_offsets``, and writes it to the
dead-letter topic with its bytes as the value (a Kafka v2 record batch that any Kafka
library can parse once it has the codec) before the fetch goes on. Decoding every codec
Kafka has (gzip, snappy, lz4, zstd) needs ``cramjam``, a dependency of this package.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka.consumer import fetcher as _fetcher
from aiokafka.record.memory_records import MemoryRecords

from stream.errors import RuntimeMismatch

log = logging.getLogger(__name__)

# A batch starts with its base offset (int64) and its length after these 12 bytes (int32),
# in every message format (v0, v1 and v2).
_LOG_OVERHEAD = 12
_LENGTH = struct.Struct(">i")
_BASE_OFFSET = struct.Struct(">q")
STAGE = "fetch"


@dataclass(frozen=True)
class UndecodableBatch:
    """A fetched record batch (or its tail) that could not be decoded into records."""

    topic: str
    partition: int
    first_offset: int  # the first offset not delivered
    last_offset: int  # inclusive
    error: str  # the exception's class name
    message: str
    raw: bytes | None  # the batch as fetched; None when its extent is unknown

    @property
    def offsets(self) -> int:
        return self.last_offset - self.first_offset + 1


Reporter = Callable[[UndecodableBatch], None]


def _log_only(batch: UndecodableBatch) -> None:
    log.error(
        "skipped undecodable record batch %s[%d] offsets %d-%d: %s: %s",
        batch.topic,
        batch.partition,
        batch.first_offset,
        batch.last_offset,
        batch.error,
        batch.message,
    )


_reporter: dict[str, Reporter] = {"current": _log_only}


class RecordsWithBytes:
    """aiokafka's ``MemoryRecords`` over one fetch's bytes, which also knows each batch's bytes."""

    __slots__ = ("_data", "_records", "_pos", "last_batch", "last_raw")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._records = MemoryRecords(data)
        self._pos = 0
        self.last_batch = None
        self.last_raw: bytes | None = None

    def has_next(self) -> bool:
        return self._records.has_next()

    def size_in_bytes(self) -> int:
        return self._records.size_in_bytes()

    def next_batch(self):
        self.last_batch = None
        self.last_raw = None
        batch = self._records.next_batch()
        start = self._pos
        end = start + _LOG_OVERHEAD + _LENGTH.unpack_from(self._data, start + 8)[0]
        self._pos = end
        self.last_raw = bytes(memoryview(self._data)[start:end])
        self.last_batch = batch
        return batch

    def pending_base_offset(self) -> int | None:
        """The base offset of the batch ``next_batch`` would read, when its header is there."""
        if len(self._data) - self._pos < _LOG_OVERHEAD:
            return None
        return _BASE_OFFSET.unpack_from(self._data, self._pos)[0]


class TolerantPartitionRecords(_fetcher.PartitionRecords):
    """aiokafka's ``PartitionRecords`` whose iterator skips and reports a batch it cannot decode."""

    def _unpack_records(self):
        unpack = super()._unpack_records
        records = self._records
        while True:
            try:
                yield from unpack()
                return
            except Exception as exc:  # noqa: BLE001 - any decoding failure; reported with its class
                batch = getattr(records, "last_batch", None)
                first = self.next_fetch_offset
                if batch is not None:
                    if batch.magic >= 2:  # offsets below a v2 batch's base are not in the log (compaction)
                        first = max(first, batch.base_offset)
                    end = max(batch.next_offset, first + 1)
                    raw = records.last_raw
                else:  # the batch's own header is broken: no known end, step one offset
                    base = records.pending_base_offset() if isinstance(records, RecordsWithBytes) else None
                    first = max(first, base) if base is not None else first
                    end = first + 1
                    raw = None
                self.next_fetch_offset = end
                _report(
                    UndecodableBatch(
                        self._tp.topic,
                        self._tp.partition,
                        first,
                        end - 1,
                        type(exc).__name__,
                        str(exc) or repr(exc),
                        raw,
                    )
                )
                if batch is None:
                    return  # the iterator cannot step past a header it cannot read


def _report(batch: UndecodableBatch) -> None:
    try:
        _reporter["current"](batch)
    except Exception:  # a failing reporter must not stop the fetch either
        _log_only(batch)
        log.exception("reporting the undecodable batch failed")


_installed = threading.Lock()


def install(reporter: Reporter | None = None) -> None:
    """Make every aiokafka consumer of this process skip and report undecodable batches.

    ``reporter`` receives each :class:`UndecodableBatch` on the consumer's thread; the last
    one installed is used (a process runs one worker). Raises ``RuntimeError`` when
    aiokafka's fetcher no longer has what this replaces.
    """
    with _installed:
        for name in ("PartitionRecords", "MemoryRecords"):
            if not hasattr(_fetcher, name):
                raise RuntimeMismatch(f"aiokafka.consumer.fetcher has no {name}: this aiokafka is not supported")
        if not hasattr(_fetcher.PartitionRecords, "_unpack_records"):
            raise RuntimeMismatch("aiokafka's PartitionRecords has no _unpack_records: this aiokafka is not supported")
        _fetcher.PartitionRecords = TolerantPartitionRecords
        _fetcher.MemoryRecords = RecordsWithBytes
        _reporter["current"] = reporter or _log_only


def installed() -> bool:
    """True when aiokafka's fetcher uses the tolerant records."""
    return _fetcher.PartitionRecords is TolerantPartitionRecords and _fetcher.MemoryRecords is RecordsWithBytes


def dlq_headers(batch: UndecodableBatch, payload: str) -> list[tuple[str, bytes]]:
    """The dead-letter headers of an undecodable batch (the record-level ones plus the range)."""
    return [
        ("error.class", batch.error.encode()),
        ("error.message", batch.message[:2000].encode("utf-8", "replace")),
        ("source.topic", batch.topic.encode()),
        ("source.partition", str(batch.partition).encode()),
        ("source.offset", str(batch.first_offset).encode()),
        ("source.offset.last", str(batch.last_offset).encode()),
        ("stage", STAGE.encode()),
        ("time", f"{time.time():.3f}".encode()),
        ("payload", payload.encode()),
    ]


class DeadLetterReporter:
    """Logs an undecodable batch, counts it, and writes it to the dead-letter topic before the fetch goes on.

    Runs on the consumer's thread with a librdkafka producer of its own (the agents'
    producer is served on the event loop's thread). Waits up to ``timeout_s`` for the
    broker's acknowledgement; a batch the broker does not take is logged at ERROR with
    its range, and counted as ``dlq_failed``.
    """

    def __init__(self, client_config: dict[str, str], dlq_topic: str, metrics, timeout_s: float = 10.0) -> None:
        self._config = client_config
        self._topic = dlq_topic
        self._metrics = metrics
        self._timeout = timeout_s
        self._producer = None

    def __call__(self, batch: UndecodableBatch) -> None:
        log.error(
            "undecodable record batch %s[%d] offsets %d-%d (%d offsets, %s bytes): %s: %s; skipped and written to %s",
            batch.topic,
            batch.partition,
            batch.first_offset,
            batch.last_offset,
            batch.offsets,
            len(batch.raw) if batch.raw is not None else "unknown",
            batch.error,
            batch.message,
            self._topic,
        )
        self._metrics.undecodable_batches.labels(batch.topic, batch.error).inc()
        self._metrics.undecodable_offsets.labels(batch.topic).inc(batch.offsets)
        outcome = self._dead_letter(batch)
        self._metrics.dlq_writes.labels(STAGE if outcome == "written" else "fetch_dlq_failed").inc()

    def _dead_letter(self, batch: UndecodableBatch) -> str:
        from confluent_kafka import KafkaError, KafkaException, Producer

        if self._producer is None:
            self._producer = Producer(
                {
                    **self._config,
                    "enable.idempotence": True,
                    "acks": "all",
                    "message.max.bytes": 4 * 1024 * 1024,
                    "linger.ms": 0,
                }
            )
        attempts = [(batch.raw, "record-batch")] if batch.raw is not None else []
        attempts.append((None, "omitted"))
        for value, payload in attempts:
            errors: list = []
            try:
                self._producer.produce(
                    self._topic,
                    value=value,
                    headers=dlq_headers(batch, payload),
                    on_delivery=lambda err, msg: errors.append(err),
                )
            except (KafkaException, BufferError) as exc:
                errors.append(exc)
            else:
                self._producer.flush(self._timeout)
            if len(errors) == 1 and errors[0] is None:  # (a KafkaError cannot be compared with None)
                return "written"
            too_large = any(isinstance(e, KafkaError) and e.code() == KafkaError.MSG_SIZE_TOO_LARGE for e in errors)
            if not too_large:
                log.error(
                    "the undecodable batch %s[%d] offsets %d-%d was not written to %s: %s",
                    batch.topic,
                    batch.partition,
                    batch.first_offset,
                    batch.last_offset,
                    self._topic,
                    errors[-1] if errors else f"no acknowledgement within {self._timeout:.0f}s",
                )
                return "failed"
        return "failed"

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self._timeout)
