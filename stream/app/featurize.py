"""The featurize agent and the state it shares with the silence timer.

``featurize`` consumes account-events (and their repartition topic) and writes
churn-features, churn-scores, churn-labels and account-events-dlq; it keeps the
``customer-state`` and ``latest-score`` tables (changelog-backed). Each batch is
featurized and then scored in place, micro-batched: one ``predict_proba`` per batch.

Scoring happens in the featurize agent rather than in a second agent that consumes
``churn-features``: a feature vector is scored by the worker that made it, in the
batch that made it, so each event passes through Faust's consumer once instead of
twice. ``churn-features`` stays the feature log that retraining reads.

The agent takes batches with :func:`stream.runtime.batching.batches`: a batch's events
are acked only after the batch is processed (never when it raised), and Faust commits
offsets only up to unacked events. Within a batch, outputs are made durable before
state: the agent waits for the broker to acknowledge the batch's outputs, then writes
the tables and waits for their changelog records (what a restarted worker
recovers), and only then are the events acked. A crash can therefore repeat outputs
(at-least-once, countable by event id) but never leave a recorded event without
its output. Tables use ``use_partitioner=True``: the changelog key is the message
key, so Kafka's murmur2 partitioner puts each changelog record on the partition of
the event that produced it.

That ordered end of a batch (two broker round trips) runs in the background
(:mod:`stream.runtime.commit_chain`) while the agent processes the next batch, up to
``CHURN_BATCHES_IN_FLIGHT`` batches deep, and batches finish in their order. A
batch's states reach the table only in its finish, after its outputs are
acknowledged; until then later batches read them from the agent's ``unwritten``
states, so the table never holds a state whose outputs might still be lost.

What the agent's batches share (those ``unwritten`` states, the partition clocks the
silence timer judges by, the output producer, the drift monitor) lives in one
:class:`FeaturizeState` per app, whose methods are the steps of a batch; the agent
itself is registered by :func:`register`.
"""

from __future__ import annotations

import logging
import math
import time
from functools import partial

import faust

from stream.drift.monitor import DriftConfig, DriftMonitor
from stream.drift.shadow import PRODUCTION, ShadowComparison
from stream.kafka.config import confluent_config
from stream.kafka.topics import TopicNames
from stream.metrics import StreamMetrics
from stream.pipeline.features import CustomerState
from stream.pipeline.featurize import DLQ, FEATURES, LABELS, REROUTE, Featurizer
from stream.pipeline.messages import Inbound, Outbound, Scorable
from stream.pipeline.state_cache import StateCache
from stream.runtime.batch_producer import BatchProducer
from stream.runtime.batching import batches
from stream.runtime.commit_chain import CommitChain
from stream.runtime.tables import write_tables
from stream.runtime.undecodable import DeadLetterReporter
from stream.serving.model_holder import ModelHolder
from stream.serving.scoring import SCORES, ScoredBatch, Scorer
from stream.serving.shadow import SHADOW_SCORES, ChallengerHolder, ShadowScorer
from stream.settings import Settings

log = logging.getLogger(__name__)

# The rolling measurements of the serving model on matured labels, exported per version.
LIVE_METRICS = (
    "roc_auc",
    "roc_auc_expected",
    "log_loss",
    "log_loss_expected",
    "log_loss_ratio",
    "brier",
    "brier_expected",
    "base_rate",
)


def inbound(event) -> Inbound:
    """A Faust event as the plain message the featurizer takes."""
    m = event.message
    return Inbound(m.key, m.value, m.topic, m.partition, m.offset, int(m.timestamp * 1000), m.headers or [])


def batch_clocks(events, dirty: dict[bytes, CustomerState]) -> dict[int, float]:
    """The greatest event time per partition among a batch's states (read now: later batches change them)."""
    clocks: dict[int, float] = {}
    for event in events:
        state = dirty.get(event.message.key)
        if state is not None and state.last_ts is not None:
            part = event.message.partition
            if state.last_ts > clocks.get(part, 0.0):
                clocks[part] = state.last_ts
    return clocks


def latest_scores(scored) -> dict[bytes, bytes]:
    """The ``latest-score`` table records of scored outputs: score bytes by key."""
    return {o.key: o.value for o in scored.out}


class FeaturizeState:
    """What the featurize agent's batches (and the silence timer) share, for one app.

    Created when the app is built; nothing connects until the first output is sent.
    """

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        bootstrap: str | None,
        names: TopicNames,
        metrics: StreamMetrics,
        holder: ModelHolder,
        featurizer: Featurizer,
        scorer: Scorer,
        state_table: faust.Table,
        score_table: faust.Table,
        dead_letters: DeadLetterReporter,
    ) -> None:
        self.app = app
        self.settings = settings
        self.bootstrap = bootstrap
        self.names = names
        self.metrics = metrics
        self.holder = holder
        self.featurizer = featurizer
        self.scorer = scorer
        self.state_table = state_table
        self.score_table = score_table
        self.dead_letters = dead_letters
        self.drift_config = DriftConfig.from_settings(settings)
        self.out_topics = {
            FEATURES: names.churn_features,
            LABELS: names.churn_labels,
            DLQ: names.account_events_dlq,
            SCORES: names.churn_scores,
            SHADOW_SCORES: names.churn_scores_shadow,
            REROUTE: names.account_events_repartition,
        }
        # The greatest event time processed per account-events partition. Silence is
        # judged against the clock of the customer's own partition: another partition
        # being ahead says nothing about events still queued on this one.
        self.partition_clock: dict[int, float] = {}
        self.key_partition: dict[bytes, int] = {}
        self.silence_sent: dict[bytes, float] = {}
        self.producers: list[BatchProducer] = []
        self.decoded = StateCache()
        self.skips_logged: set[tuple[int, str]] = set()
        # States of processed batches not yet written to the table (their outputs are not yet
        # acknowledged), by key: the batch's sequence number and the state. Later batches read
        # them from here; a batch's finish moves its states to the table and the decoded cache.
        self.unwritten: dict[bytes, tuple[int, CustomerState]] = {}
        # The drift monitor of the serving model, the matured pairs it had counted when last
        # exported, and the performance report last exported.
        self.monitor: DriftMonitor | None = None
        self.matured = 0
        self.performance = None
        # The challenger scored in shadow (None: shadow scoring off), its scorer, the comparison of both
        # aliases on the same matured labels, and when and at how many labels it was last exported.
        self.challenger: ChallengerHolder | None = None
        self.shadow_scorer: ShadowScorer | None = None
        self.comparison: ShadowComparison | None = None
        self.compared_labels = -1
        self.compared_at = 0.0
        self.shadow_failed: set[str] = set()

    def producer(self) -> BatchProducer:
        """The agents' output producer, created on first use (so building an app connects nothing)."""
        if not self.producers:
            self.producers.append(BatchProducer(confluent_config(self.settings, self.bootstrap)))
        return self.producers[0]

    async def close_producer(self, sender, **kwargs) -> None:
        """Before shutdown: close the dead-letter reporter and the output producer."""
        self.dead_letters.close()
        while self.producers:
            left = self.producers.pop().close()
            if left:
                log.warning("%d output records were not delivered before shutdown", left)

    def outbound(self, out: list[Outbound]) -> list[tuple]:
        return [(self.out_topics[o.topic], o.key, o.value, o.headers) for o in out]

    async def publish(self, out: list[Outbound]) -> None:
        """Send a batch's outputs and wait until the broker has acknowledged all of them."""
        await self.producer().submit(self.outbound(out), offsets=False)

    async def serving_model(self):
        """The serving model, waiting for the first one to load."""
        while self.holder.current is None:
            await self.holder.ready.wait()
        return self.holder.current

    def skipped(self, event, why: str) -> None:
        """An event Faust hands over from before a rebalance: counted, and logged once per generation."""
        app = self.app
        self.metrics.rebalance_skipped.labels(why).inc()
        if (app.consumer_generation_id, why) not in self.skips_logged:
            self.skips_logged.add((app.consumer_generation_id, why))
            message = event.message
            log.info(
                "skipping events delivered before the rebalance (%s; first %s[%d]@%d, message generation %s, "
                "consumer generation %s); they are fetched again from the committed offset",
                why,
                message.topic,
                message.partition,
                message.offset,
                message.generation_id,
                app.consumer_generation_id,
            )

    def load_state(self, key: bytes) -> CustomerState | None:
        entry = self.unwritten.get(key)
        if entry is not None:
            return entry[1]
        return self.decoded.take(key, self.state_table.get(key))

    async def finish(
        self,
        seq: int,
        events,
        sent,
        raws: dict[bytes, bytes],
        dirty: dict[bytes, CustomerState],
        scores: dict[bytes, bytes],
        clocks: dict[int, float],
        began: float,
    ) -> None:
        """A batch's ordered end: outputs acknowledged, then state written and acknowledged, then events acked."""
        await sent
        await write_tables(self.producer(), [(self.state_table, raws), (self.score_table, scores)], events)
        self.metrics.batch_processing_ms.observe((time.time() - began) * 1000.0)
        unwritten = self.unwritten
        for key, raw in raws.items():
            entry = unwritten.get(key)
            if entry is not None and entry[0] == seq:  # no later batch changed it since
                del unwritten[key]
                self.decoded.put(key, raw, dirty[key])
        events.ack()
        # Clocks advance only once the states behind them are in the table.
        partition_clock = self.partition_clock
        for part, clock in clocks.items():
            if clock > partition_clock.get(part, 0.0):
                partition_clock[part] = clock

    def drift_monitor(self) -> DriftMonitor | None:
        """The monitor of the serving model (rebuilt when the model changes)."""
        model = self.holder.current
        if model is None or not model.reference:
            return None
        monitor = self.monitor
        if monitor is None or monitor.model_version != model.version:
            monitor = self.monitor = DriftMonitor(
                model.reference, model.version, self.drift_config, baseline=model.metrics, importance=model.importance
            )
            self.matured = 0
        return monitor

    async def observe_drift(self, scored, batch) -> None:
        monitor = self.drift_monitor()
        if monitor is None:
            return
        # The worker owns each customer's partition, so it sees the closes itself, in order with the
        # scores: a score never matures before the labels up to its horizon are in (the labels agent
        # may lag the scores by days of event time when a backlog is drained). Labels are idempotent.
        home = self.featurizer.home
        for customer_id, closed_ts in batch.closes:
            monitor.label(customer_id, closed_ts, home(customer_id.encode()))
        if not scored.probabilities:
            return
        # Each customer's scores mature against the clock of the partition its state lives on (the
        # featurizer has just asked for each key's home: the memo answers).
        homes = [home(item.key) for item in batch.scorable]
        alerts = monitor.observe(scored.rows, scored.probabilities, scored.event_s, homes)
        self.export_drift(monitor)
        for alert in alerts:
            self.metrics.drift_alerts.labels(alert.detector).inc()
            log.warning(
                "drift alert %s (%s, %s%s): %s",
                alert.detector,
                alert.kind,
                alert.severity,
                ", harm" if alert.harm else "",
                alert.features,
            )
            await self.app.producer.send(
                self.names.drift_alerts, alert.detector.encode(), alert.model_dump_json().encode(), None, None, None
            )

    def shadow(
        self, batch: list[Scorable], model, scored: ScoredBatch, result=None, reason: str = "event"
    ) -> list[Outbound]:
        """The challenger's scores of the vectors production just scored with ``model`` (none without a
        challenger); with the featurizer's ``result``, the comparison of both on matured labels is fed too.

        A challenger that raises is counted and logged (once per version), and production's outputs go out
        as if it were not there.
        """
        challenger = self.challenger.current if self.challenger is not None else None
        if challenger is None or self.shadow_scorer is None:
            if self.comparison is not None:
                self.comparison = None
                self.metrics.shadow.clear_measures()
            return []
        if not batch:
            return []
        try:
            shadowed = self.shadow_scorer.score(batch, challenger, reason=reason)
        except Exception:  # noqa: BLE001 - whatever the challenger raises, production's scores stand
            self.metrics.shadow.scoring_failures.inc()
            if challenger.version not in self.shadow_failed:
                self.shadow_failed.add(challenger.version)
                log.exception("the challenger (version %s) failed to score a batch", challenger.version)
            return []
        if result is not None:
            self.compare(model, challenger, scored, shadowed, result)
        return shadowed.out

    def compare(self, model, challenger, scored: ScoredBatch, shadowed: ScoredBatch, result) -> None:
        """Feed a batch both scored (and its closes) to the comparison; export it at most once a second."""
        alias = self.challenger.alias if self.challenger is not None else "challenger"
        versions = {PRODUCTION: model.version, alias: challenger.version}
        comparison = self.comparison
        if comparison is None or comparison.versions != versions:
            comparison = self.comparison = ShadowComparison(
                self.drift_config.horizon_s, versions, window=self.drift_config.concept_window
            )
            self.metrics.shadow.clear_measures()
            self.compared_labels = -1
        home = self.featurizer.home
        for customer_id, closed_ts in result.closes:
            comparison.label(customer_id, closed_ts, home(customer_id.encode()))
        comparison.observe(
            [row["customer_id"] for row in scored.rows],
            scored.event_s,
            {PRODUCTION: scored.probabilities, alias: shadowed.probabilities},
            [home(item.key) for item in result.scorable],
        )
        self.flush_comparison()

    def flush_comparison(self, every_s: float = 1.0) -> None:
        """Export the comparison when labels matured since the last export, at most once per ``every_s``
        (the batches call it, and a timer, so the last labels of a stream that went quiet are exported too)."""
        comparison = self.comparison
        now = time.monotonic()
        if comparison is not None and comparison.labels != self.compared_labels and now - self.compared_at >= every_s:
            self.compared_labels, self.compared_at = comparison.labels, now
            self.export_comparison(comparison)

    def export_comparison(self, comparison: ShadowComparison) -> None:
        """Both aliases' measurements on the same matured labels as ``churn_shadow_*{alias, model_version}``."""
        measures = self.metrics.shadow.measures
        for alias, values in comparison.report().items():
            version = comparison.versions[alias]
            for name, value in values.items():
                if math.isfinite(value):
                    measures[name].labels(alias, version).set(value)

    def export_drift(self, monitor: DriftMonitor) -> None:
        """The monitor's latest PSI, matured pairs and live performance as metrics."""
        metrics = self.metrics
        if monitor.last_report is not None:
            for name, value in monitor.last_report.psi.items():
                metrics.psi.labels(name).set(value)
        matured = monitor.concept.matured - self.matured
        if matured:
            self.matured = monitor.concept.matured
            metrics.matured_pairs.labels(monitor.model_version).inc(matured)
        if monitor.last_performance is not self.performance:  # a concept check measured anew
            self.performance = monitor.last_performance
            for name in LIVE_METRICS:
                value = monitor.last_performance.get(name)
                if value is not None and math.isfinite(value):
                    metrics.live_performance.labels(monitor.model_version, name).set(value)


def register(app: faust.App, state: FeaturizeState, events_topic) -> None:
    """Register the ``featurize`` agent on ``events_topic`` (account-events and its repartition topic)."""
    settings, metrics = state.settings, state.metrics
    batch_within = settings.score_batch_ms / 1000.0

    @app.agent(events_topic, name="featurize")
    async def featurize(stream):
        # Until a model is loaded the first batch waits, unacked; the consumer's queue
        # behind it fills and then pauses fetching (back pressure), nothing is lost.
        chain = CommitChain(settings.batches_in_flight)
        seq = 0
        try:
            async for events in batches(
                stream, settings.score_batch_size, batch_within, on_skip=state.skipped, auto_ack=False
            ):
                model = await state.serving_model()
                began = time.time()
                messages = [inbound(e) for e in events]
                metrics.batch_wait_ms.observe(max(0.0, began * 1000.0 - min(m.timestamp_ms for m in messages)))
                result = state.featurizer.process(messages, state.load_state)
                scored = state.scorer.score(result.scorable, model)
                shadowed = state.shadow(result.scorable, model, scored, result)
                await state.observe_drift(scored, result)
                sent = state.producer().submit(state.outbound(result.out + scored.out + shadowed), offsets=False)
                seq += 1
                for key, customer in result.dirty.items():
                    state.unwritten[key] = (seq, customer)
                try:
                    await chain.add(
                        partial(
                            state.finish,
                            seq,
                            events,
                            sent,
                            result.encoded,
                            result.dirty,
                            latest_scores(scored),
                            batch_clocks(events, result.dirty),
                            began,
                        )
                    )
                except BaseException:
                    sent.close()  # its records are produced; unawaited, the batch's events stay unacked
                    raise
        except BaseException:
            # States a failed batch half-changed must not reach the next batch.
            state.unwritten.clear()
            raise
        finally:
            await chain.settle(timeout=5.0)
