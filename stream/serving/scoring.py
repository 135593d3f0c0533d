"""The score step as a plain object: a batch of feature vectors in, scores out.

One model call per batch, from columns (the per-row ``pd.DataFrame([row])`` pattern is
far slower). Each score record is a ``ChurnScore`` (``schema_version`` 1) with
headers a consumer can route on without parsing the value: ``event.id``,
``model.name``, ``model.version``, ``schema.version`` and ``score.reason`` (``event``
for a score of an account event, ``silence`` for a re-score of a quiet customer).
With a linear model each score names its ``reasons``: the inputs with the largest terms
of its log-odds (:meth:`LoadedModel.explain_columns`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from schemas.features import FEATURE_NAMES
from schemas.outputs import risk_band
from stream.metrics import StreamMetrics
from stream.pipeline.features import rounder
from stream.pipeline.json_bytes import json_bytes
from stream.pipeline.messages import Outbound, Scorable
from stream.serving.model_holder import LoadedModel

SCORES = "scores"
SCHEMA_VERSION = 1
_round3 = rounder(3)
REASON_DIGITS = 6  # decimals of a reason's contribution in a score record


@dataclass(frozen=True)
class ScoredBatch:
    out: list[Outbound]
    latencies_ms: list[float]
    rows: list[dict]
    probabilities: list[float]
    event_s: list[float]  # each vector's event time, epoch seconds


class Scorer:
    """Scores batches with whatever model the holder serves at the time."""

    # The output its records go to and headers they carry beyond the shared ones (a shadow scorer's differ).
    topic: str = SCORES
    headers: tuple[tuple[str, bytes], ...] = ()

    def __init__(
        self, metrics: StreamMetrics, risk_medium: float = 0.3, risk_high: float = 0.6, reasons: int = 3
    ) -> None:
        self.metrics = metrics
        self.medium = risk_medium
        self.high = risk_high
        self.reasons = reasons  # reasons per score (0: none)
        self._by_version: dict[str, Any] = {}  # Prometheus children by model version

    def score(
        self, batch: list[Scorable], model: LoadedModel, now: float | None = None, reason: str = "event"
    ) -> ScoredBatch:
        """One ``ChurnScore`` record per vector, from one model call; ``reason`` goes to ``score.reason``."""
        if not batch:
            return ScoredBatch([], [], [], [], [])
        rows = [item.row for item in batch]
        columns = {name: [row[name] for row in rows] for name in FEATURE_NAMES}
        probabilities, reasons = model.explain_columns(columns, self.reasons, REASON_DIGITS)
        scored_at = time.time() if now is None else now
        stamp = _iso(scored_at)
        now_ms = scored_at * 1000.0
        out, latencies, floats = [], [], []
        name, version, medium, high = model.name, model.version, self.medium, self.high
        shared = [
            ("model.name", name.encode()),
            ("model.version", version.encode()),
            ("schema.version", b"%d" % SCHEMA_VERSION),
            ("score.reason", reason.encode()),
            *self.headers,
        ]
        for i, (item, row, p) in enumerate(zip(batch, rows, probabilities)):
            latency = max(0.0, now_ms - item.start_ms)
            p = float(p)
            floats.append(p)
            score = {
                "customer_id": row["customer_id"],
                "event_id": row["event_id"],
                "event_ts": row["event_ts"],
                "probability": p,
                "risk_band": risk_band(p, medium, high),
                "model_name": name,
                "model_version": version,
                "scored_at": stamp,
                "latency_ms": _round3(latency),
                "schema_version": SCHEMA_VERSION,
            }
            if reasons is not None:
                score["reasons"] = reasons[i]
            latencies.append(latency)
            out.append(
                Outbound(self.topic, item.key, json_bytes(score), [("event.id", row["event_id"].encode()), *shared])
            )
        self._record(version, latencies)
        return ScoredBatch(out, latencies, rows, floats, [item.event_s for item in batch])

    def _record(self, version: str, latencies: list[float]) -> None:
        counter = self._by_version.get(version)
        if counter is None:
            counter = self._by_version[version] = self.metrics.scores_out.labels(version)
        counter.inc(len(latencies))
        self.metrics.batch_size.observe(len(latencies))
        self.metrics.latency_ms.observe_many(latencies)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"
