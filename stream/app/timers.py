"""The app's periodic work outside the agents: silence re-scores and partition tracking.

The silence check re-scores customers who have been quiet for ``CHURN_SILENCE_DAYS`` of
their partition's event time. It reads the featurize agent's state (the partition
clocks, which advance only once a batch's states are in the table, and what was
already re-scored), so it takes the :class:`~stream.app.featurize.FeaturizeState`.
The assignment tracker exports how many account-events partitions this worker owns, and
the consumer lag of each partition of the input topics it owns (account-events and its
repartition topic).
"""

from __future__ import annotations

import time

import faust
from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from stream.app.featurize import FeaturizeState, latest_scores
from stream.kafka.partitioning import partition_for
from stream.kafka.topics import TopicNames
from stream.metrics import StreamMetrics, consumer_lag
from stream.pipeline.features import CustomerState, features
from stream.pipeline.featurize import FEATURES
from stream.pipeline.json_bytes import json_bytes
from stream.pipeline.messages import Outbound, Scorable
from stream.runtime.consumer_offsets import committed_offsets
from stream.runtime.tables import key_context, write_tables


def register_silence_check(app: faust.App, state: FeaturizeState) -> None:
    """Register the timer that re-scores silent customers every ``CHURN_SILENCE_CHECK_S``."""
    settings, metrics = state.settings, state.metrics
    partitions = settings.topic_partitions

    @app.timer(settings.silence_check_s)
    async def silence():
        """Re-score customers quiet for ``silence_days`` of their partition's event time."""
        if not settings.silence_days:
            return
        model = state.holder.current
        if model is None:
            return
        step = settings.silence_days * 86_400.0
        out, vectors = [], []
        now_ms = int(time.time() * 1000)
        key_partition, partition_clock, silence_sent = state.key_partition, state.partition_clock, state.silence_sent
        for key, raw in list(state.state_table.items()):
            part = key_partition.get(key)
            if part is None:
                part = key_partition[key] = partition_for(key, partitions)
            clock = partition_clock.get(part)
            if clock is None:
                continue
            customer = CustomerState.from_bytes(raw)
            if customer.last_ts is None or customer.closed_ts is not None:
                continue
            if clock - customer.last_ts < step:
                continue
            at = customer.last_ts + step * int((clock - customer.last_ts) // step)
            if silence_sent.get(key, 0.0) >= at:
                continue
            silence_sent[key] = at
            row = features(customer, at, event_id=f"{customer.customer_id}@{int(at)}").model_dump(mode="json")
            out.append(Outbound(FEATURES, key, json_bytes(row)))
            vectors.append(Scorable(key, row, now_ms, at))
        if not out:
            return
        # Silence re-scores are not events: the drift baseline holds event-time vectors only.
        scored = state.scorer.score(vectors, model, reason="silence")
        metrics.silence_rescored.inc(len(out))
        await state.publish(out + scored.out + state.shadow(vectors, model, scored, reason="silence"))
        contexts = [key_context(v.key, state.names.account_events, partitions) for v in vectors]
        await write_tables(state.producer(), [(state.score_table, latest_scores(scored))], contexts)


def register_shadow_export(app: faust.App, state: FeaturizeState) -> None:
    """Register the timer that exports the shadow comparison's last measurements once a second."""

    @app.timer(1.0)
    async def shadow_export():
        state.flush_comparison()


def register_assignment_tracking(app: faust.App, names: TopicNames, metrics: StreamMetrics) -> None:
    """Register the timer that exports, every second, the account-events partitions assigned here and the
    consumer lag of each assigned partition of the input topics."""
    inputs = {names.account_events, names.account_events_repartition}

    @app.timer(1.0)
    async def track_assignment():
        consumer = app.consumer
        assigned = [tp for tp in consumer.assignment() if tp.topic in inputs]
        metrics.assigned_partitions.set(sum(1 for tp in assigned if tp.topic == names.account_events))
        ends = {tp: end for tp in assigned if (end := highwater(consumer, tp)) is not None}
        metrics.set_consumer_lag(consumer_lag(assigned, committed_offsets(consumer, assigned), ends))


def highwater(consumer, tp: TP) -> int | None:
    """The partition's end as of the consumer's last fetch of it; None before one, or once it is revoked."""
    try:
        return consumer.highwater(tp)
    except (AssertionError, ConsumerNotStarted):  # aiokafka asserts the partition is assigned; no client yet
        return None
