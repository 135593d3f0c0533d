"""Where the customers' states come from: the stream's changelog, an events file, or a synthetic base.

Each source is an iterable of states, a customer once: ``customer-state`` table bytes
(:meth:`CustomerState.to_bytes`) or :class:`CustomerState` objects; :func:`stream.batch.rows.featurize`
takes either. None holds the whole base at once:

- :class:`ChangelogSource` reads the ``customer-state`` table's changelog
  (``<CHURN_APP_ID>-customer-state-changelog``) one partition at a time, to the partition's end
  as it was when the read began, keeping the latest value of each key (a tombstone deletes it;
  compaction only removes superseded values, so any mix of compacted and uncompacted records
  gives the same result). A customer's records all go to one partition (murmur2 of its id), so
  a partition's latest values are its customers' states; memory holds one partition's values,
  about the state's size plus 150 bytes of dictionary and key per customer.
- :class:`EventsFile` replays a JSON-lines file of account events through the stream's
  ``apply_checked``: invalid lines are counted and reported by number, not fatal; duplicates
  and too-late events are ignored as the stream ignores them; with an as-of, events after it are
  left out (and counted). A file larger than ``bucket_bytes`` is first split by customer into
  temporary bucket files, replayed one bucket at a time, so memory holds one bucket's customers.
- :class:`SyntheticBase` makes ``n`` customers from the states of a small simulated world (each
  customer a copy of one of its open accounts under an id of its own), for measuring the batch
  without a broker or a large file.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from pydantic import ValidationError

from schemas.events import account_event_adapter
from stream.errors import BrokerError
from stream.pipeline.features import Admission, CustomerState, apply_checked, event_time
from stream.runtime.end_offsets import exact_end_offsets

log = logging.getLogger(__name__)

#: The changelog of the worker's ``customer-state`` table: Faust names it after the app id.
STATE_TABLE = "customer-state"
#: Invalid lines of an events file reported one by one (the rest are counted).
REPORTED_ERRORS = 10


def changelog_topic(app_id: str) -> str:
    """The topic Faust keeps the ``customer-state`` table in.

    >>> changelog_topic("churn-stream")
    'churn-stream-customer-state-changelog'
    """
    return f"{app_id}-{STATE_TABLE}-changelog"


@dataclass
class SourceStats:
    """What a source read and set aside."""

    records: int = 0  # changelog records, or events-file lines
    counts: Counter[str] = field(default_factory=Counter)  # superseded, tombstones, invalid, after_as_of, ...
    errors: list[str] = field(default_factory=list)  # the first invalid lines, by number


class ChangelogSource:
    """The latest ``customer-state`` value of every key in a changelog topic, a partition at a time."""

    def __init__(self, config: Mapping[str, str], topic: str, idle_s: float = 15.0) -> None:
        self.config = dict(config)
        self.topic = topic
        self.idle_s = idle_s  # longest wait for the next record before the read is given up
        self.stats = SourceStats()
        self.total: int | None = None

    def __iter__(self) -> Iterator[bytes]:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        consumer = Consumer(
            {
                **self.config,
                "group.id": f"churn-score-batch-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "fetch.max.bytes": 64 * 1024 * 1024,
            }
        )
        try:
            try:
                metadata = consumer.list_topics(self.topic, timeout=10)
                partitions = sorted(metadata.topics[self.topic].partitions)
                bounds = {
                    TopicPartition(self.topic, p): consumer.get_watermark_offsets(
                        TopicPartition(self.topic, p), timeout=10
                    )
                    for p in partitions
                }
            except KafkaException as exc:
                raise BrokerError(f"cannot read the offsets of {self.topic}: {exc}") from exc
            ends = exact_end_offsets(self.config, {tp: high for tp, (_, high) in bounds.items()})
            self.total = sum(ends[tp] - low for tp, (low, _) in bounds.items())
            for tp, (low, _) in bounds.items():
                end = ends[tp]
                if end > low:
                    yield from self._partition(consumer, tp.partition, low, end).values()
        finally:
            consumer.close()

    def _partition(self, consumer, partition: int, low: int, end: int) -> dict[bytes, bytes]:
        """The latest value of each key in ``partition``'s records ``low`` .. ``end - 1``."""
        from confluent_kafka import KafkaError, KafkaException, TopicPartition

        latest: dict[bytes, bytes] = {}
        counts = self.stats.counts
        consumer.assign([TopicPartition(self.topic, partition, low)])
        position = low
        last_record = time.monotonic()
        while position < end:
            batch = consumer.consume(10_000, 0.5)
            for msg in batch:
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise BrokerError(f"reading {self.topic}[{partition}]: {error.str()}")
                offset = msg.offset()
                if offset >= end:  # written after the read began
                    position = end
                    break
                position = offset + 1
                self.stats.records += 1
                key, value = msg.key(), msg.value()
                if key is None:
                    counts["keyless"] += 1
                elif value is None:
                    counts["tombstones"] += int(latest.pop(key, None) is not None)
                else:
                    if key in latest:
                        counts["superseded"] += 1
                    latest[key] = value
            if batch:
                last_record = time.monotonic()
                continue
            try:  # offsets without a record for the consumer (transaction markers) still move the position
                position = max(position, consumer.position([TopicPartition(self.topic, partition)])[0].offset)
            except KafkaException:
                pass
            if position < end and time.monotonic() - last_record > self.idle_s:
                raise BrokerError(
                    f"{self.topic}[{partition}] stopped at offset {position} of {end}: no record for {self.idle_s:.0f}s"
                )
        consumer.unassign()
        return latest


class EventsFile:
    """Customer states replayed from a JSON-lines file of account events, up to the as-of."""

    def __init__(
        self,
        path: Path,
        as_of: float | None = None,
        bucket_bytes: int = 16 * 1024 * 1024,
        spill_dir: Path | None = None,
    ) -> None:
        self.path = path
        self.as_of = as_of
        self.bucket_bytes = bucket_bytes
        self.spill_dir = spill_dir
        self.stats = SourceStats()
        self.total: int | None = None

    def buckets(self) -> int:
        """How many bucket files the file is split into (1: replayed directly)."""
        return min(512, max(1, math.ceil(self.path.stat().st_size / self.bucket_bytes)))

    def __iter__(self) -> Iterator[CustomerState]:
        k = self.buckets()
        if k == 1:
            with self.path.open("rb") as lines:
                yield from self._replay(enumerate(lines, 1))
            return
        with tempfile.TemporaryDirectory(prefix="churn-score-batch-", dir=self.spill_dir) as spill:
            paths = [Path(spill) / f"{i:03d}.jsonl" for i in range(k)]
            files = [p.open("wb") for p in paths]
            try:
                with self.path.open("rb") as lines:
                    for number, line in enumerate(lines, 1):
                        customer = self._customer_of(number, line)
                        if customer is not None:  # the line's number travels with it, for the error report
                            files[zlib.crc32(customer) % k].write(b"%d\t%s\n" % (number, line.rstrip(b"\r\n")))
            finally:
                for f in files:
                    f.close()
            for p in paths:
                with p.open("rb") as bucket:
                    numbered = ((int(n), line) for n, _, line in (raw.partition(b"\t") for raw in bucket))
                    yield from self._replay(numbered)
                p.unlink()

    def _customer_of(self, number: int, line: bytes) -> bytes | None:
        """The customer id of a line, to bucket it by (full validation comes with the replay)."""
        if not line.strip():
            return None
        try:
            doc = orjson.loads(line)
            customer = doc["customer_id"]
            if not isinstance(customer, str):
                raise TypeError("customer_id is not a string")
        except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
            self._invalid(number, f"{type(exc).__name__}: {exc}")
            self.stats.records += 1
            return None
        return customer.encode()

    def _replay(self, numbered: Iterable[tuple[int, bytes]]) -> Iterable[CustomerState]:
        states: dict[str, CustomerState] = {}
        counts, as_of = self.stats.counts, self.as_of
        for number, line in numbered:
            if not line.strip():
                continue
            self.stats.records += 1
            try:
                event = account_event_adapter.validate_json(line)
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in first["loc"])
                self._invalid(number, f"{where}: {first['msg']}" if where else first["msg"])
                continue
            ts = event_time(event.ts)
            if as_of is not None and ts > as_of:
                counts["events_after_as_of"] += 1
                continue
            state = states.get(event.customer_id)
            if state is None:
                state = states[event.customer_id] = CustomerState(customer_id=event.customer_id)
            verdict = apply_checked(state, event, ts)
            if verdict is not Admission.NEW:
                counts[f"events_{verdict.value}"] += 1
        return states.values()

    def _invalid(self, number: int, message: str) -> None:
        self.stats.counts["invalid"] += 1
        if len(self.stats.errors) < REPORTED_ERRORS:
            self.stats.errors.append(f"line {number}: {message}")


class SyntheticBase:
    """``n`` customers' table bytes, copies of the open accounts of a simulated world under new ids."""

    def __init__(self, n: int, seed: int = 7, world_customers: int = 500, days: int = 90) -> None:
        self.n = n
        self.seed = seed
        self.world_customers = world_customers
        self.days = days
        self.stats = SourceStats()
        self.total: int | None = n

    def templates(self) -> list[tuple[bytes, bytes]]:
        """Each open account's table bytes, split around its customer id."""
        from producers.simulator import SimConfig, Simulator

        states: dict[str, CustomerState] = {}
        world = SimConfig(n_customers=self.world_customers, days=self.days, seed=self.seed)
        for event in Simulator(world).events():
            state = states.get(event.customer_id)
            if state is None:
                state = states[event.customer_id] = CustomerState(customer_id=event.customer_id)
            apply_checked(state, event)
        marker = b'"@customer@"'
        out = []
        for state in states.values():
            if state.closed_ts is None:
                state.customer_id = marker.decode()[1:-1]
                before, after = state.to_bytes().split(marker)
                out.append((before, after))
        if not out:
            raise ValueError(f"the simulated world of {self.world_customers} customers has no open account")
        return out

    def __iter__(self) -> Iterator[bytes]:
        templates = self.templates()
        k = len(templates)
        for i in range(self.n):
            before, after = templates[i % k]
            yield b'%s"syn-%08d"%s' % (before, i, after)
        self.stats.records = self.n
