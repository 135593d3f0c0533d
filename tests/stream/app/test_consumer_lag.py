"""The worker's consumer lag: assignment, committed offsets and high watermarks to ``churn_consumer_lag``."""

from __future__ import annotations

from collections import defaultdict

import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry

from stream.app.timers import register_assignment_tracking
from stream.kafka.topics import TopicNames
from stream.metrics import StreamMetrics, consumer_lag
from stream.settings import Settings

pytestmark = pytest.mark.unit

EVENTS, REPARTITION = "account-events", "account-events-repartition"


def lag_samples(metrics: StreamMetrics) -> dict[tuple[str, str], float]:
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for family in metrics.consumer_lag.collect()
        for s in family.samples
    }


def test_lag_is_the_highwater_minus_the_committed_offset_per_assigned_partition():
    a0, a1, r0, r1 = TP(EVENTS, 0), TP(EVENTS, 1), TP(REPARTITION, 0), TP(REPARTITION, 1)
    committed = {a0: 10, a1: 7, r0: 3, TP(EVENTS, 9): 1}  # a partition no longer assigned is ignored
    highwaters = {a0: 25, a1: 7, r0: 2, r1: 40}
    lags = consumer_lag([a0, a1, r0, r1], committed, highwaters)
    # r0: a highwater from a fetch older than the commit counts as caught up, never negative;
    # r1: nothing committed yet, its lag is not known and is left out.
    assert lags == {(EVENTS, 0): 15, (EVENTS, 1): 0, (REPARTITION, 0): 0}
    assert consumer_lag([a0], {a0: 1}, {}) == {}  # no fetch answered yet
    assert consumer_lag([], committed, highwaters) == {}


def test_the_gauge_drops_partitions_no_longer_in_the_lags():
    metrics = StreamMetrics.create(CollectorRegistry())
    metrics.set_consumer_lag({(EVENTS, 0): 5, (EVENTS, 1): 2, (REPARTITION, 1): 1})
    assert lag_samples(metrics) == {(EVENTS, "0"): 5, (EVENTS, "1"): 2, (REPARTITION, "1"): 1}
    metrics.set_consumer_lag({(EVENTS, 1): 0, (EVENTS, 2): 9})  # a rebalance: 0 and repartition 1 went elsewhere
    assert lag_samples(metrics) == {(EVENTS, "1"): 0, (EVENTS, "2"): 9}
    metrics.set_consumer_lag({})
    assert lag_samples(metrics) == {}


class FakeConsumer:
    """What the timer reads of Faust's consumer: assignment, highwater and the committed offsets."""

    def __init__(self) -> None:
        self.assigned: set[TP] = set()
        self.ends: dict[TP, int] = {}
        self._committed_offset: defaultdict[TP, int | None] = defaultdict(lambda: None)

    def assignment(self) -> set[TP]:
        return set(self.assigned)

    def highwater(self, tp: TP) -> int | None:
        assert tp in self.assigned, "Partition is not assigned"  # as aiokafka does
        return self.ends.get(tp)


class FakeApp:
    def __init__(self) -> None:
        self.consumer = FakeConsumer()
        self.timers = []

    def timer(self, interval: float):
        def register(fn):
            self.timers.append((interval, fn))
            return fn

        return register


async def test_the_assignment_timer_exports_the_lag_of_the_input_topics_only():
    names = TopicNames.from_settings(Settings(topic_prefix="t-"))
    metrics = StreamMetrics.create(CollectorRegistry())
    app = FakeApp()
    register_assignment_tracking(app, names, metrics)
    ((interval, track),) = app.timers
    assert interval == 1.0

    consumer = app.consumer
    events = [TP(names.account_events, p) for p in range(3)]
    repartition = TP(names.account_events_repartition, 1)
    scores = TP(names.churn_scores, 0)
    consumer.assigned = {*events, repartition, scores}
    consumer.ends = {events[0]: 100, events[1]: 50, repartition: 8, scores: 1_000}
    consumer._committed_offset.update({events[0]: 60, events[1]: 50, repartition: 2, scores: 0})
    await track()
    assert metrics.registry.get_sample_value("churn_assigned_partitions") == 3
    assert lag_samples(metrics) == {
        (names.account_events, "0"): 40,
        (names.account_events, "1"): 0,
        (names.account_events_repartition, "1"): 6,
    }
    assert events[2] not in consumer._committed_offset  # reading does not add partitions to Faust's map

    consumer.assigned = {events[1], repartition}  # partitions 0 and 2 revoked
    consumer._committed_offset[repartition] = 8
    await track()
    assert metrics.registry.get_sample_value("churn_assigned_partitions") == 1
    assert lag_samples(metrics) == {(names.account_events, "1"): 0, (names.account_events_repartition, "1"): 0}
