"""Where batch scores go: a Parquet file (always) and a Kafka topic (``--topic``).

**Parquet.** One row per scored customer, one row group per chunk, in this schema (stable: a
reader can rely on the names, types and order):

=================  =================================================================
``customer_id``    string
``probability``    double, 0 to 1
``risk_band``      string: ``low``, ``medium`` or ``high`` (``CHURN_RISK_MEDIUM``, ``CHURN_RISK_HIGH``)
``reasons``        list of struct ``feature`` (string), ``value`` (double; null for a
                   category), ``category`` (string; null for a number), ``contribution``
                   (double, rounded to 6 decimals); largest term first; null for a model
                   without exact reasons
``model_name``     string
``model_version``  string
``as_of``          timestamp (ms, UTC): the time the customer was evaluated at
=================  =================================================================

The file is written to ``<path>.partial`` and renamed when complete, so a reader never sees
half a file under the final name.

**Topic.** One ``ChurnScore`` per row, keyed by customer id, with header ``score.reason: batch``
(docs/contracts.md). A batch score is not the score of an event: its ``event_id`` is made up as
``<customer_id>@<epoch seconds of the as-of>`` (as a silence re-score's is), ``event_ts`` is the
as-of and ``latency_ms`` is 0.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.features import FEATURE_NAMES
from stream.batch.rows import ScoredChunk, reason_values
from stream.errors import BrokerError
from stream.pipeline.json_bytes import json_bytes

REASON = pa.struct(
    [
        pa.field("feature", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("category", pa.string()),
        pa.field("contribution", pa.float64(), nullable=False),
    ]
)
SCHEMA = pa.schema(
    [
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("probability", pa.float64(), nullable=False),
        pa.field("risk_band", pa.string(), nullable=False),
        pa.field("reasons", pa.list_(REASON)),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("as_of", pa.timestamp("ms", tz="UTC"), nullable=False),
    ]
)
BATCH_REASON = "batch"
SCHEMA_VERSION = 1
_NAMES = pa.array(FEATURE_NAMES, pa.string())
Headers = list[tuple[str, str | bytes | None]]


def arrow_table(scored: ScoredChunk) -> pa.Table:
    """The chunk's rows in :data:`SCHEMA`."""
    chunk = scored.features
    n = len(chunk)
    times_ms = np.rint(np.asarray(chunk.times, dtype=np.float64) * 1000.0).astype(np.int64)
    return pa.Table.from_arrays(
        [
            pa.array(chunk.customer_ids, pa.string()),
            pa.array(scored.probabilities, pa.float64()),
            pa.array(scored.bands, pa.string()),
            _reasons(scored, n),
            pa.array([scored.model_name] * n, pa.string()),
            pa.array([scored.model_version] * n, pa.string()),
            pa.array(times_ms, pa.timestamp("ms", tz="UTC")),
        ],
        schema=SCHEMA,
    )


def _reasons(scored: ScoredChunk, n: int) -> pa.Array:
    if scored.picked is None or scored.contributions is None or not n:
        return pa.nulls(n, pa.list_(REASON))
    top = scored.picked.shape[0]
    numbers, categories = reason_values(scored.features, scored.picked)
    flat = scored.picked.T.reshape(-1)
    structs = pa.StructArray.from_arrays(
        [
            _NAMES.take(pa.array(flat)),
            pa.array(numbers, pa.float64(), mask=np.isnan(numbers)),
            pa.array(categories, pa.string()),
            pa.array(scored.contributions.T.reshape(-1), pa.float64()),
        ],
        fields=list(REASON),
    )
    offsets = pa.array(np.arange(0, (n + 1) * top, top, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, structs, type=pa.list_(REASON))


class ParquetSink:
    """Writes chunks as row groups of one Parquet file, under its final name only once closed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self._writer = pq.ParquetWriter(self.partial, SCHEMA, compression="zstd")
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table, row_group_size=table.num_rows)
            self.rows += table.num_rows

    def close(self) -> None:
        """Finish the file and give it its final name."""
        self._writer.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Drop the unfinished file."""
        self._writer.close()
        self.partial.unlink(missing_ok=True)


def score_records(scored: ScoredChunk, scored_at: float) -> list[tuple[bytes, bytes, Headers]]:
    """The chunk's rows as ``ChurnScore`` records: (key, value, headers)."""
    chunk = scored.features
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(scored_at)) + f".{int(scored_at * 1000) % 1000:03d}Z"
    shared: Headers = [
        ("model.name", scored.model_name.encode()),
        ("model.version", scored.model_version.encode()),
        ("schema.version", b"%d" % SCHEMA_VERSION),
        ("score.reason", BATCH_REASON.encode()),
    ]
    reasons: list[list[dict]] | None = None
    if scored.picked is not None and scored.contributions is not None:
        top = scored.picked.shape[0]
        numbers, categories = reason_values(chunk, scored.picked)
        names = [FEATURE_NAMES[i] for i in scored.picked.T.reshape(-1).tolist()]
        sizes = scored.contributions.T.reshape(-1).tolist()
        flat = [
            {"feature": f, "value": c if c is not None else v, "contribution": s}
            for f, v, c, s in zip(names, numbers.tolist(), categories, sizes)
        ]
        reasons = [flat[i : i + top] for i in range(0, len(flat), top)]
    out = []
    for i, (customer, at, p, band) in enumerate(
        zip(chunk.customer_ids, chunk.times, scored.probabilities.tolist(), scored.bands)
    ):
        event_id = f"{customer}@{int(at)}"
        value = {
            "customer_id": customer,
            "event_id": event_id,
            "event_ts": _iso_event_time(at),
            "probability": p,
            "risk_band": band,
            "model_name": scored.model_name,
            "model_version": scored.model_version,
            "scored_at": stamp,
            "latency_ms": 0.0,
            "schema_version": SCHEMA_VERSION,
        }
        if reasons is not None:
            value["reasons"] = reasons[i]
        out.append((customer.encode(), json_bytes(value), [("event.id", event_id.encode()), *shared]))
    return out


def _iso_event_time(at: float) -> str:
    """An event time as RFC 3339 with milliseconds and ``+00:00``."""
    whole, ms = divmod(round(at * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}+00:00"


class TopicSink:
    """Publishes ``ChurnScore`` records to a topic: idempotent, murmur2 by customer id, every one acknowledged."""

    def __init__(self, config: dict, topic: str, flush_s: float = 60.0) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.flush_s = flush_s
        self.failed = 0
        self.sent = 0
        self._producer = Producer(
            {
                **config,
                "enable.idempotence": True,
                "partitioner": "murmur2_random",
                "linger.ms": 20,
                "compression.type": "gzip",
            }
        )

    def _delivered(self, err, _msg) -> None:
        if err is not None:
            self.failed += 1

    def write(self, scored: ScoredChunk) -> None:
        produce, poll = self._producer.produce, self._producer.poll
        for key, value, headers in score_records(scored, time.time()):
            while True:
                try:
                    produce(self.topic, value, key, headers=headers, on_delivery=self._delivered)
                    break
                except BufferError:
                    poll(0.1)
            self.sent += 1
        poll(0)

    def close(self) -> None:
        """Wait for every record's acknowledgement; :class:`BrokerError` when any was not delivered."""
        pending = self._producer.flush(self.flush_s)
        if pending or self.failed:
            raise BrokerError(
                f"{pending + self.failed:,} of {self.sent:,} batch scores were not delivered to {self.topic}"
            )
