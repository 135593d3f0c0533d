"""The batch-observed histogram exposes what prometheus_client's Histogram would."""

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream.metrics import LATENCY_BUCKETS_MS, BatchHistogram

pytestmark = pytest.mark.unit


def samples(registry: CollectorRegistry) -> dict[tuple, float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_batches_are_counted_as_prometheus_counts_single_values():
    rng = random.Random(1)
    values = [rng.choice([0.0, 1.0, 1.0000001, 4.99, 5.0, 30_000.0, 45_000.0]) for _ in range(300)]
    values += [rng.uniform(0, 2_000) for _ in range(700)]
    single, batched = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("lat_ms", "doc", buckets=LATENCY_BUCKETS_MS, registry=single)
    histogram = BatchHistogram("lat_ms", "doc", LATENCY_BUCKETS_MS, registry=batched)
    for value in values:
        reference.observe(value)
    histogram.observe_many(values[:10])  # bisect per value (shorter than SMALL_BATCH)
    histogram.observe_many([])
    histogram.observe_many(values[10:300])  # NumPy
    for start in range(300, 990, 23):  # both, in turns
        cut = start + (5 if start % 2 else 23)
        histogram.observe_many(values[start:cut])
        histogram.observe_many(values[cut : start + 23])
    histogram.observe_many(values[990:999])
    histogram.observe(values[999])
    expected, got = samples(single), samples(batched)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    assert got[("lat_ms_count", ())] == 1000
    assert got[("lat_ms_bucket", (("le", "+Inf"),))] == 1000
