"""All Prometheus metrics of a worker, in one bundle built from a registry passed in.

Tests build the bundle on a fresh ``CollectorRegistry``; the worker serves its
registry on ``/metrics``. Every metric name starts with ``churn_``.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 15, 25, 50, 75, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
SMALL_BATCH = 16  # BatchHistogram bins shorter batches with bisect instead of NumPy


class BatchHistogram(Collector):
    """A histogram observed a batch at a time: one NumPy binning per batch.

    ``Histogram.observe`` takes a lock and bisects per value; for a value per event
    that was a cost a busy worker paid on every event. Exposed exactly as
    a ``Histogram`` of the same name and buckets is (``_bucket``, ``_count``,
    ``_sum``), without ``_created``.
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry | None = None
    ) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = np.asarray(sorted(float(b) for b in buckets))
        self._bound_list = self._bounds.tolist()
        self._counts = np.zeros(len(self._bounds) + 1, dtype=np.int64)  # the last is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe_many(self, values: Sequence[float]) -> None:
        """Count every value of ``values`` (a value equal to a bound falls in that bound's bucket)."""
        if not len(values):
            return
        if len(values) < SMALL_BATCH:
            # NumPy's fixed costs exceed a bisect per value here (a paced stream's batches of a few events).
            bounds, last = self._bound_list, len(self._bound_list)
            slots = [bisect_left(bounds, v) if v == v else last for v in values]  # NaN: +Inf, as searchsorted
            total = float(sum(values))
            with self._lock:
                counts = self._counts
                for slot in slots:
                    counts[slot] += 1
                self._sum += total
            return
        array = np.asarray(values, dtype=float)
        counts = np.bincount(np.searchsorted(self._bounds, array, side="left"), minlength=len(self._counts))
        total = float(array.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def collect(self) -> Iterable[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        bounds = [_bound(b) for b in self._bounds] + ["+Inf"]
        yield HistogramMetricFamily(
            self.name, self.documentation, buckets=list(zip(bounds, cumulative)), sum_value=total
        )


def _bound(value: float) -> str:
    """A bucket bound as Prometheus' own histogram writes it (``10.0``, ``2.5``)."""
    return repr(float(value))


def consumer_lag(assigned: Iterable, consumed: Mapping, highwaters: Mapping) -> dict[tuple[str, int], int]:
    """Records still to consume per assigned partition: ``{(topic, partition): highwater - consumed}``.

    ``assigned`` are topic partitions (anything with ``topic`` and ``partition``);
    ``consumed`` and ``highwaters`` map them to the next offset to consume and to the
    partition's end. A partition missing from either (nothing committed yet, no fetch
    answered yet) is left out: its lag is not known. Never negative: a high watermark
    from an older fetch than the commit would make it so.
    """
    lags = {}
    for tp in assigned:
        position, end = consumed.get(tp), highwaters.get(tp)
        if position is None or end is None:
            continue
        lags[(tp.topic, tp.partition)] = max(0, end - position)
    return lags


@dataclass(frozen=True)
class StreamMetrics:
    registry: CollectorRegistry
    events_in: Counter
    invalid: Counter
    duplicates: Counter
    dlq_writes: Counter
    features_out: Counter
    labels_out: Counter
    scores_out: Counter
    batch_size: Histogram
    latency_ms: BatchHistogram
    model_info: Info
    worker_info: Info
    model_version: Gauge
    model_swaps: Counter
    model_load_failures: Counter
    psi: Gauge
    drift_alerts: Counter
    live_performance: Gauge
    matured_pairs: Counter
    silence_rescored: Counter
    assigned_partitions: Gauge
    consumer_lag: Gauge
    model_registered: Gauge
    ready: Gauge
    rebalance_skipped: Counter
    batch_wait_ms: Histogram
    batch_processing_ms: Histogram
    undecodable_batches: Counter
    undecodable_offsets: Counter
    rerouted: Counter
    shadow: ShadowMetrics

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> StreamMetrics:
        r = registry if registry is not None else CollectorRegistry()
        return cls(
            registry=r,
            events_in=Counter("churn_events_in", "Valid account events consumed, by type.", ["event_type"], registry=r),
            invalid=Counter(
                "churn_events_invalid", "Events that failed validation, by reason.", ["reason"], registry=r
            ),
            duplicates=Counter(
                "churn_events_skipped", "Valid events not applied (duplicate or too late).", ["why"], registry=r
            ),
            dlq_writes=Counter("churn_dlq_writes", "Messages written to the dead-letter topic.", ["stage"], registry=r),
            features_out=Counter("churn_features_out", "Feature vectors published.", registry=r),
            labels_out=Counter("churn_labels_out", "Churn labels published.", registry=r),
            scores_out=Counter(
                "churn_scores_out", "Scores published, by model version.", ["model_version"], registry=r
            ),
            batch_size=Histogram(
                "churn_score_batch_size", "Feature vectors per scoring batch.", buckets=BATCH_BUCKETS, registry=r
            ),
            latency_ms=BatchHistogram(
                "churn_event_to_score_latency_ms",
                "Time from an event's append to account-events to its score, in milliseconds.",
                buckets=LATENCY_BUCKETS_MS,
                registry=r,
            ),
            model_info=Info("churn_model", "The model serving scores.", registry=r),
            worker_info=Info(
                "churn_worker",
                "How the worker runs: broker_quirks is tansu when it works around the "
                "embedded broker's bugs, none on Apache Kafka.",
                registry=r,
            ),
            model_version=Gauge("churn_model_version", "Registry version of the serving model.", registry=r),
            model_swaps=Counter("churn_model_swaps", "Models swapped in.", registry=r),
            model_load_failures=Counter(
                "churn_model_load_failures",
                "Model loads that failed or were refused, by reason.",
                ["reason"],
                registry=r,
            ),
            psi=Gauge("churn_feature_psi", "PSI of the latest drift window, by feature.", ["feature"], registry=r),
            drift_alerts=Counter("churn_drift_alerts", "Drift alerts raised, by detector.", ["detector"], registry=r),
            live_performance=Gauge(
                "churn_live_performance",
                "The serving model on matured labels (scores joined with churn labels after the horizon), over the "
                "drift monitor's rolling window: metric is roc_auc, log_loss, brier, their *_expected values (what "
                "calibrated scores promise), log_loss_ratio and base_rate.",
                ["model_version", "metric"],
                registry=r,
            ),
            matured_pairs=Counter(
                "churn_matured_pairs",
                "Scores joined with their label after the horizon.",
                ["model_version"],
                registry=r,
            ),
            silence_rescored=Counter("churn_silence_rescored", "Customers re-scored for silence.", registry=r),
            assigned_partitions=Gauge(
                "churn_assigned_partitions", "Partitions of account-events this worker owns.", registry=r
            ),
            consumer_lag=Gauge(
                "churn_consumer_lag",
                "Per partition of the input topics assigned to this worker: records between its committed offset "
                "and the partition's end (high watermark) as of its last fetch.",
                ["topic", "partition"],
                registry=r,
            ),
            model_registered=Gauge(
                "churn_model_registered_timestamp_seconds",
                "When the serving model's version was created in the registry, in seconds since the epoch.",
                registry=r,
            ),
            ready=Gauge(
                "churn_ready",
                "1 when the worker is ready (a verified model loaded, its tables recovered), as /ready says; else 0.",
                registry=r,
            ),
            batch_wait_ms=Histogram(
                "churn_batch_wait_ms",
                "Per batch: time from the append of its oldest event to the start of its processing (broker, fetch "
                "and queueing), in milliseconds.",
                buckets=LATENCY_BUCKETS_MS,
                registry=r,
            ),
            batch_processing_ms=Histogram(
                "churn_batch_processing_ms",
                "Per batch: time from the start of its processing to its outputs and table writes acknowledged, "
                "in milliseconds.",
                buckets=LATENCY_BUCKETS_MS,
                registry=r,
            ),
            undecodable_batches=Counter(
                "churn_undecodable_batches",
                "Fetched record batches that could not be decoded (codec, CRC, format), skipped and written to the "
                "dead-letter topic, by topic and error.",
                ["topic", "error"],
                registry=r,
            ),
            undecodable_offsets=Counter(
                "churn_undecodable_offsets",
                "Offsets covered by the undecodable batches skipped, by topic.",
                ["topic"],
                registry=r,
            ),
            rerouted=Counter(
                "churn_events_rerouted",
                "Events that arrived on another partition than their key's (a producer not partitioning by murmur2), "
                "re-published to the key's partition of the repartition topic.",
                registry=r,
            ),
            rebalance_skipped=Counter(
                "churn_rebalance_skipped",
                "Events delivered from before a rebalance and skipped unprocessed (fetched again from the "
                "committed offset), by why: generation (an older consumer generation) or suspended (mid-rebalance).",
                ["why"],
                registry=r,
            ),
            shadow=ShadowMetrics.create(r),
        )

    def set_consumer_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Export ``lags`` (from :func:`consumer_lag`); partitions not in it lose their label set."""
        keep = {(topic, str(partition)) for topic, partition in lags}
        for family in self.consumer_lag.collect():
            for sample in family.samples:
                labels = (sample.labels["topic"], sample.labels["partition"])
                if labels not in keep:
                    self.consumer_lag.remove(*labels)
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)


#: The measurements of both aliases on the same matured labels, by name (``churn_shadow_<name>``).
SHADOW_MEASURES = ("roc_auc", "log_loss", "brier", "labels")


@dataclass(frozen=True)
class ShadowMetrics:
    """The challenger scored in shadow: its model, its scores, and both aliases measured on the same labels."""

    model_version: Gauge
    swaps: Counter
    load_failures: Counter
    scores_out: Counter
    scoring_failures: Counter
    measures: dict[str, Gauge]

    @classmethod
    def create(cls, r: CollectorRegistry) -> ShadowMetrics:
        about = {
            "roc_auc": "ROC AUC",
            "log_loss": "log loss",
            "brier": "Brier score",
            "labels": "number of matured labels",
        }
        return cls(
            model_version=Gauge(
                "churn_shadow_model_version",
                "Registry version of the challenger scored in shadow (0: none).",
                registry=r,
            ),
            swaps=Counter("churn_shadow_model_swaps", "Challenger versions loaded for shadow scoring.", registry=r),
            load_failures=Counter(
                "churn_shadow_load_failures",
                "Challenger loads that failed or were refused, by reason; production scoring is not affected.",
                ["reason"],
                registry=r,
            ),
            scores_out=Counter(
                "churn_shadow_scores_out",
                "Shadow scores published to churn-scores-shadow, by challenger version.",
                ["model_version"],
                registry=r,
            ),
            scoring_failures=Counter(
                "churn_shadow_scoring_failures",
                "Batches the challenger failed to score (production scored them all the same).",
                registry=r,
            ),
            measures={
                name: Gauge(
                    f"churn_shadow_{name}",
                    f"While a challenger is in shadow: the {text} of each alias (production, challenger) over the "
                    "rolling window of matured labels of events both scored (the same events for both)"
                    + ("; labels counts every matured label since the comparison began." if name == "labels" else "."),
                    ["alias", "model_version"],
                    registry=r,
                )
                for name, text in about.items()
            },
        )

    def clear_measures(self) -> None:
        """Forget every alias's measurements (the challenger or production changed, or left)."""
        for gauge in self.measures.values():
            gauge.clear()
