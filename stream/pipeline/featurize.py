"""The featurize step as a plain object: raw bytes in, table updates and messages out.

For every consumed ``account-events`` message:

1. payloads over ``max_event_bytes`` and anything that fails validation go to the
   dead-letter topic with headers that say where they came from and why (at most
   :data:`DLQ_VALUE_BYTES` of their bytes). A payload that is not one flat JSON object
   of a few members is refused from its shape (:mod:`stream.pipeline.event_shape`)
   before pydantic's JSON parser, which is slow on such payloads, sees it; the parser
   refuses invalid UTF-8, NaN and numbers out of range. A hostile payload therefore
   costs time and memory linear in its size, which ``max_event_bytes`` bounds;
2. a repeated ``event_id`` (or one too late to tell, see :mod:`stream.pipeline.features`)
   is counted and skipped;
3. the customer's state is updated and its ``FeatureVector`` emitted to
   ``churn-features`` and handed on (as ``scorable``) to be scored in the same
   batch; the source message's append time is the start of the event-to-score
   latency;
4. an ``account_closed`` event also emits a ``ChurnLabel``.

A valid event that arrived on an ``account-events`` partition other than its
customer's home (murmur2 of the customer id, where the customer's state lives) is not
applied here: it is re-published unchanged, keyed by the customer id, to the
repartition topic, whose partition of the same number is the home's, and applied when
it comes back from there (step 3 on the right worker). Its headers keep where it came
from and its original append time, where its event-to-score latency starts.

States are read through ``load`` once per key per batch and returned as ``dirty``,
with their table bytes in ``encoded``, so the caller writes each changed key to its
table once per batch. A state is encoded right after each event changes it, while
its objects are still in the CPU's cache: encoding all of a batch's states at its
end cost much more, nearly all of it waiting on memory.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import ValidationError

from schemas.events import account_event_adapter
from stream.kafka.partitioning import HomePartitions
from stream.metrics import StreamMetrics
from stream.pipeline.event_shape import shape_problem
from stream.pipeline.features import Admission, CustomerState, apply_checked, event_time, feature_values
from stream.pipeline.json_bytes import json_bytes
from stream.pipeline.messages import Inbound, Outbound, Scorable

FEATURES = "features"
LABELS = "labels"
DLQ = "dlq"
REROUTE = "reroute"
STAGE = "featurize"
SOURCE_TIMESTAMP = "source.timestamp"
# The most of a message's bytes a dead-letter record keeps: within librdkafka's default
# message.max.bytes (1,000,000) with room for the headers.
DLQ_VALUE_BYTES = 900_000
DLQ_KEY_BYTES = 1024


@dataclass
class BatchResult:
    out: list[Outbound] = field(default_factory=list)
    dirty: dict[bytes, CustomerState] = field(default_factory=dict)
    encoded: dict[bytes, bytes] = field(default_factory=dict)  # each dirty state's table bytes
    scorable: list[Scorable] = field(default_factory=list)
    # (customer_id, epoch s) of each account_closed event: the batch's churn labels, for the drift monitor.
    closes: list[tuple[str, float]] = field(default_factory=list)


def dlq_message(msg: Inbound, error: str, message: str) -> Outbound:
    """The dead-letter record of ``msg``: original key and bytes, reason in headers.

    A value over :data:`DLQ_VALUE_BYTES` or a key over :data:`DLQ_KEY_BYTES` is cut to that
    length, and the headers say so (``payload``: ``truncated``, with the original sizes): a
    record the producer refuses as too large would fail the batch, and the worker would stop
    at the same offset on every restart.
    """
    stamp = time.time()
    key = msg.key or b""
    value = msg.value or b""
    headers = [
        ("error.class", error.encode()),
        ("error.message", message[:2000].encode("utf-8", "replace")),
        ("source.topic", msg.topic.encode()),
        ("source.partition", str(msg.partition).encode()),
        ("source.offset", str(msg.offset).encode()),
        ("stage", STAGE.encode()),
        ("time", f"{stamp:.3f}".encode()),
    ]
    if len(value) > DLQ_VALUE_BYTES or len(key) > DLQ_KEY_BYTES:
        headers += [
            ("payload", b"truncated"),
            ("payload.value.bytes", str(len(value)).encode()),
            ("payload.key.bytes", str(len(key)).encode()),
        ]
        key, value = key[:DLQ_KEY_BYTES], value[:DLQ_VALUE_BYTES]
    return Outbound(DLQ, key, value, headers)


def reroute_message(msg: Inbound, key: bytes) -> Outbound:
    """The repartition record of ``msg``: its bytes keyed by the customer id, with where it came from."""
    headers = list(msg.headers)
    headers += [
        ("source.topic", msg.topic.encode()),
        ("source.partition", str(msg.partition).encode()),
        ("source.offset", str(msg.offset).encode()),
        (SOURCE_TIMESTAMP, str(msg.timestamp_ms).encode()),
    ]
    return Outbound(REROUTE, key, msg.value or b"", headers)


def source_timestamp_ms(msg: Inbound) -> int:
    """A re-published event's original append time (its last ``source.timestamp`` header), else its own."""
    for name, value in reversed(msg.headers):
        if name == SOURCE_TIMESTAMP:
            try:
                return int(value)
            except ValueError:
                break
    return msg.timestamp_ms


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:  # the input may be megabytes
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


class Featurizer:
    """Validate, de-duplicate, update state and emit features and labels."""

    def __init__(
        self,
        metrics: StreamMetrics,
        max_event_bytes: int,
        home: HomePartitions | None = None,
        input_topic: str = "",
        repartition_topic: str = "",
    ) -> None:
        """``home`` with ``input_topic`` turns on re-publishing events that arrived away from their home
        partition; events from ``repartition_topic`` are taken as home and timed from their source."""
        self.metrics = metrics
        self.max_event_bytes = max_event_bytes
        self.home = home
        self.input_topic = input_topic
        self.repartition_topic = repartition_topic
        self._events_in: dict[str, Any] = {}  # Prometheus children by event type
        self._features_out = metrics.features_out

    def process(self, batch: Iterable[Inbound], load: Callable[[bytes], CustomerState | None]) -> BatchResult:
        result = BatchResult()
        dirty = result.dirty
        encoded = result.encoded
        out = result.out
        scorable = result.scorable
        kinds: Counter[str] = Counter()
        labels = 0
        rerouted = 0
        home = self.home
        input_topic = self.input_topic
        repartition_topic = self.repartition_topic
        for msg in batch:
            raw = msg.value
            if raw is None or len(raw) > self.max_event_bytes:
                size = 0 if raw is None else len(raw)
                why = "empty" if raw is None else "oversized"
                out.append(
                    dlq_message(msg, "PayloadRejected", f"{why} payload: {size} bytes (limit {self.max_event_bytes})")
                )
                self._reject(why)
                continue
            problem = shape_problem(raw)
            if problem is not None:
                out.append(dlq_message(msg, "ValidationError", problem))
                self._reject("validation")
                continue
            try:
                event = account_event_adapter.validate_json(raw)
            except ValidationError as exc:
                out.append(dlq_message(msg, "ValidationError", _validation_message(exc)))
                self._reject("validation")
                continue
            key = event.customer_id.encode()
            if msg.key is not None and msg.key != key:
                out.append(dlq_message(msg, "KeyMismatch", f"message key {msg.key!r} != customer_id {key!r}"))
                self._reject("key_mismatch")
                continue
            start_ms = msg.timestamp_ms
            if home is not None:
                if msg.topic == input_topic:
                    if home(key) != msg.partition:
                        out.append(reroute_message(msg, key))
                        rerouted += 1
                        continue
                elif msg.topic == repartition_topic:
                    start_ms = source_timestamp_ms(msg)
            state = dirty.get(key)
            if state is None:
                state = load(key) or CustomerState(customer_id=event.customer_id)
            ts = event_time(event.ts)
            verdict = apply_checked(state, event, ts)
            if verdict is not Admission.NEW:
                self.metrics.duplicates.labels(verdict.value).inc()
                continue
            dirty[key] = state
            kinds[event.event_type] += 1
            values = feature_values(state, cast(float, state.last_ts))  # set by the event just applied
            encoded[key] = state.to_bytes()
            values["customer_id"] = event.customer_id
            values["event_id"] = event.event_id
            values["event_ts"] = event.ts
            values["feature_set_version"] = 1
            out.append(Outbound(FEATURES, key, json_bytes(values)))
            scorable.append(Scorable(key, values, start_ms, ts))
            if event.event_type == "account_closed":
                label = {
                    "customer_id": event.customer_id,
                    "event_id": event.event_id,
                    "closed_at": event.ts,
                    "churned": True,
                    "reason": event.reason,
                }
                out.append(Outbound(LABELS, key, json_bytes(label)))
                result.closes.append((event.customer_id, ts))
                labels += 1
        # Counted once per batch: a Prometheus increment takes a lock.
        for kind, n in kinds.items():
            self._count(kind, n)
        if scorable:
            self._features_out.inc(len(scorable))
        if labels:
            self.metrics.labels_out.inc(labels)
        if rerouted:
            self.metrics.rerouted.inc(rerouted)
        return result

    def _count(self, event_type: str, n: int) -> None:
        child = self._events_in.get(event_type)
        if child is None:
            child = self._events_in[event_type] = self.metrics.events_in.labels(event_type)
        child.inc(n)

    def _reject(self, reason: str) -> None:
        self.metrics.invalid.labels(reason).inc()
        self.metrics.dlq_writes.labels(STAGE).inc()
