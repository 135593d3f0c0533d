"""The Faust app: topics, tables, agents and web views, wired to the plain processors.

Thin on purpose: validation and features live in :mod:`stream.pipeline.featurize`, scoring in
:mod:`stream.serving.scoring`, the model in :mod:`stream.serving.model_holder`. Nothing happens at
import time; :func:`create_app` builds an app from explicit settings.

Agents
------
``featurize``  account-events -> churn-features, churn-scores, churn-labels,
               account-events-dlq; keeps the ``customer-state`` and ``latest-score``
               tables (changelog-backed). Each batch is featurized and then scored
               in place, micro-batched: one ``predict_proba`` per batch.
``labels``     churn-labels -> the drift monitor's label window.
``models``     model-events -> hot swap of the serving model (an alias poll backs it up).

Scoring happens in the featurize agent rather than in a second agent that consumes
``churn-features``: a feature vector is scored by the worker that made it, in the
batch that made it, so each event passes through Faust's consumer once instead of
twice. ``churn-features`` stays the feature log that retraining reads.

The agent takes batches with :func:`stream.batching.batches`: a batch's events are
acked only after the batch is processed (never when it raised), and Faust commits
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
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import partial

import faust
import orjson
from prometheus_client import generate_latest
from pydantic import ValidationError

from schemas.features import FeatureVector
from schemas.outputs import ChurnLabel, ModelEvent
from stream.drift.monitor import DriftConfig, DriftMonitor
from stream.kafka.config import confluent_config, faust_broker_kwargs
from stream.kafka.partitioning import HomePartitions, partition_for
from stream.kafka.topics import TopicNames
from stream.metrics import StreamMetrics
from stream.pipeline.features import CustomerState, features
from stream.pipeline.featurize import DLQ, FEATURES, LABELS, REROUTE, Featurizer
from stream.pipeline.json_bytes import json_bytes
from stream.pipeline.messages import Inbound, Outbound, Scorable
from stream.pipeline.state_cache import StateCache
from stream.runtime.batch_producer import BatchProducer
from stream.runtime.batching import batches
from stream.runtime.commit_chain import CommitChain
from stream.runtime.install import install as install_runtime
from stream.runtime.tables import RawSchema, key_context, write_tables
from stream.runtime.undecodable import DeadLetterReporter
from stream.serving.model_holder import ModelHolder
from stream.serving.scoring import SCORES, Scorer
from stream.settings import Settings

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
log = logging.getLogger(__name__)

# The Prometheus text format; aiohttp takes the charset separately.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"
STATE_TABLE = "customer-state"
SCORE_TABLE = "latest-score"


@dataclass
class ChurnApp:
    """The Faust app with the objects tests and the CLI need to reach."""

    app: faust.App
    settings: Settings
    names: TopicNames
    metrics: StreamMetrics
    holder: ModelHolder
    featurizer: Featurizer
    scorer: Scorer
    state_table: faust.Table
    score_table: faust.Table


def _parse(contract, raw: bytes):
    """A control-topic record as ``contract``, or None (logged) when it does not validate."""
    try:
        return contract.model_validate_json(raw)
    except ValidationError as exc:
        log.warning("ignoring malformed %s record: %s", contract.__name__, exc)
        return None


def _inbound(event) -> Inbound:
    m = event.message
    return Inbound(m.key, m.value, m.topic, m.partition, m.offset, int(m.timestamp * 1000), m.headers or [])


def create_app(
    settings: Settings,
    bootstrap: str | None = None,
    metrics: StreamMetrics | None = None,
    holder: ModelHolder | None = None,
    tansu_quirks: bool | None = None,
) -> ChurnApp:
    """Build the app for ``settings``; ``bootstrap`` is the broker when settings name none.

    ``tansu_quirks`` works around the embedded broker's bugs (exact end offsets for table
    recovery, the fetch wait); by default as ``CHURN_BROKER_QUIRKS`` says without asking the
    broker (``auto``: off). :func:`stream.worker.run_worker` asks the broker and decides.
    """
    metrics = metrics or StreamMetrics.create()
    holder = holder or ModelHolder(settings, metrics)
    names = TopicNames.from_settings(settings)
    partitions = settings.topic_partitions
    # One folder per app: Faust names a table's RocksDB files after the table alone, so two
    # apps (other CHURN_APP_ID or CHURN_TOPIC_PREFIX) on one CHURN_DATA_DIR would share them.
    datadir = settings.data_dir.resolve() / "faust" / settings.app_id
    app = faust.App(
        settings.app_id,
        **faust_broker_kwargs(settings, bootstrap),
        store=settings.store,
        datadir=str(datadir),
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=partitions,
        topic_replication_factor=settings.topic_replication,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_rebalance_timeout=3,
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        broker_commit_interval=1.0,
        producer_linger=0.002,
        web_enabled=True,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.advertised_web_host(),  # the canonical URL table lookups are forwarded to
    )
    if tansu_quirks is None:
        tansu_quirks = settings.tansu_quirks(None)
    metrics.worker_info.info({"broker_quirks": "tansu" if tansu_quirks else "none"})
    dead_letters = DeadLetterReporter(confluent_config(settings, bootstrap), names.account_events_dlq, metrics)
    install_runtime(
        app,
        quirks=tansu_quirks,
        kafka_config=confluent_config(settings, bootstrap),
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        dead_letters=dead_letters,
    )
    topic_args = dict(key_serializer="raw", value_serializer="raw", partitions=partitions, internal=False)
    # The input and the repartition topic that brings events sent elsewhere home: co-partitioned, so
    # partition p of both (and of the tables' changelogs) belongs to one worker.
    events_topic = app.topic(
        names.account_events,
        names.account_events_repartition,
        schema=RawSchema(key_type=bytes, value_type=bytes),
        partitions=partitions,
        internal=False,
    )
    model_topic = app.topic(names.model_events, key_serializer="raw", value_serializer="raw", internal=False)
    labels_topic = app.topic(names.churn_labels, **topic_args)
    drift_config = DriftConfig.from_settings(settings)
    # The greatest event time processed per account-events partition. Silence is
    # judged against the clock of the customer's own partition: another partition
    # being ahead says nothing about events still queued on this one.
    partition_clock: dict[int, float] = {}
    key_partition: dict[bytes, int] = {}
    silence_sent: dict[bytes, float] = {}
    out_topics = {
        FEATURES: names.churn_features,
        LABELS: names.churn_labels,
        DLQ: names.account_events_dlq,
        SCORES: names.churn_scores,
        REROUTE: names.account_events_repartition,
    }
    table_args = dict(partitions=partitions, key_type=bytes, value_type=bytes, use_partitioner=True)
    state_table = app.Table(STATE_TABLE, **table_args)
    score_table = app.Table(SCORE_TABLE, **table_args)
    featurizer = Featurizer(
        metrics,
        settings.max_event_bytes,
        HomePartitions(partitions),
        names.account_events,
        names.account_events_repartition,
    )
    scorer = Scorer(metrics, settings.risk_medium, settings.risk_high)
    batch_within = settings.score_batch_ms / 1000.0

    producers: list[BatchProducer] = []

    def producer() -> BatchProducer:
        """The agents' output producer, created on first use (so building an app connects nothing)."""
        if not producers:
            producers.append(BatchProducer(confluent_config(settings, bootstrap)))
        return producers[0]

    @app.on_before_shutdown.connect
    async def close_producer(sender, **kwargs) -> None:
        dead_letters.close()
        while producers:
            left = producers.pop().close()
            if left:
                log.warning("%d output records were not delivered before shutdown", left)

    def outbound(out: list[Outbound]) -> list[tuple]:
        return [(out_topics[o.topic], o.key, o.value, o.headers) for o in out]

    async def publish(out: list[Outbound]) -> None:
        """Send a batch's outputs and wait until the broker has acknowledged all of them."""
        await producer().submit(outbound(out), offsets=False)

    decoded = StateCache()

    async def serving_model():
        """The serving model, waiting for the first one to load."""
        while holder.current is None:
            await holder.ready.wait()
        return holder.current

    skips_logged: set[tuple[int, str]] = set()

    def skipped(event, why: str) -> None:
        """An event Faust hands over from before a rebalance: counted, and logged once per generation."""
        metrics.rebalance_skipped.labels(why).inc()
        if (app.consumer_generation_id, why) not in skips_logged:
            skips_logged.add((app.consumer_generation_id, why))
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

    # States of processed batches not yet written to the table (their outputs are not yet
    # acknowledged), by key: the batch's sequence number and the state. Later batches read
    # them from here; a batch's finish moves its states to the table and the decoded cache.
    unwritten: dict[bytes, tuple[int, CustomerState]] = {}

    def load_state(key: bytes) -> CustomerState | None:
        entry = unwritten.get(key)
        if entry is not None:
            return entry[1]
        return decoded.take(key, state_table.get(key))

    @app.agent(events_topic, name="featurize")
    async def featurize(stream):
        # Until a model is loaded the first batch waits, unacked; the consumer's queue
        # behind it fills and then pauses fetching (back pressure), nothing is lost.
        chain = CommitChain(settings.batches_in_flight)
        seq = 0
        try:
            async for events in batches(
                stream, settings.score_batch_size, batch_within, on_skip=skipped, auto_ack=False
            ):
                model = await serving_model()
                began = time.time()
                inbound = [_inbound(e) for e in events]
                metrics.batch_wait_ms.observe(max(0.0, began * 1000.0 - min(m.timestamp_ms for m in inbound)))
                result = featurizer.process(inbound, load_state)
                scored = scorer.score(result.scorable, model)
                await observe_drift(scored, result)
                sent = producer().submit(outbound(result.out + scored.out), offsets=False)
                seq += 1
                for key, state in result.dirty.items():
                    unwritten[key] = (seq, state)
                try:
                    await chain.add(
                        partial(
                            finish,
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
            unwritten.clear()
            raise
        finally:
            await chain.settle(timeout=5.0)

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

    async def finish(
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
        await write_tables(producer(), [(state_table, raws), (score_table, scores)], events)
        metrics.batch_processing_ms.observe((time.time() - began) * 1000.0)
        for key, raw in raws.items():
            entry = unwritten.get(key)
            if entry is not None and entry[0] == seq:  # no later batch changed it since
                del unwritten[key]
                decoded.put(key, raw, dirty[key])
        events.ack()
        # Clocks advance only once the states behind them are in the table.
        for part, clock in clocks.items():
            if clock > partition_clock.get(part, 0.0):
                partition_clock[part] = clock

    def latest_scores(scored) -> dict[bytes, bytes]:
        return {o.key: o.value for o in scored.out}

    drift_state: dict[str, object] = {"monitor": None}

    def drift_monitor() -> DriftMonitor | None:
        """The monitor of the serving model (rebuilt when the model changes)."""
        model = holder.current
        if model is None or not model.reference:
            return None
        monitor = drift_state["monitor"]
        if monitor is None or monitor.model_version != model.version:
            monitor = drift_state["monitor"] = DriftMonitor(
                model.reference, model.version, drift_config, baseline=model.metrics, importance=model.importance
            )
            drift_state["matured"] = 0
        return monitor

    async def observe_drift(scored, batch) -> None:
        monitor = drift_monitor()
        if monitor is None:
            return
        # The worker owns each customer's partition, so it sees the closes itself, in order with the
        # scores: a score never matures before the labels up to its horizon are in (the labels agent
        # may lag the scores by days of event time when a backlog is drained). Labels are idempotent.
        home = featurizer.home
        for customer_id, closed_ts in batch.closes:
            monitor.label(customer_id, closed_ts, home(customer_id.encode()))
        if not scored.probabilities:
            return
        # Each customer's scores mature against the clock of the partition its state lives on (the
        # featurizer has just asked for each key's home: the memo answers).
        homes = [home(item.key) for item in batch.scorable]
        alerts = monitor.observe(scored.rows, scored.probabilities, scored.event_s, homes)
        if monitor.last_report is not None:
            for name, value in monitor.last_report.psi.items():
                metrics.psi.labels(name).set(value)
        matured = monitor.concept.matured - drift_state["matured"]
        if matured:
            drift_state["matured"] = monitor.concept.matured
            metrics.matured_pairs.labels(monitor.model_version).inc(matured)
        if monitor.last_performance is not drift_state.get("performance"):  # a concept check measured anew
            drift_state["performance"] = monitor.last_performance
            for name in LIVE_METRICS:
                value = monitor.last_performance.get(name)
                if value is not None and math.isfinite(value):
                    metrics.live_performance.labels(monitor.model_version, name).set(value)
        for alert in alerts:
            metrics.drift_alerts.labels(alert.detector).inc()
            log.warning(
                "drift alert %s (%s, %s%s): %s",
                alert.detector,
                alert.kind,
                alert.severity,
                ", harm" if alert.harm else "",
                alert.features,
            )
            await app.producer.send(
                names.drift_alerts, alert.detector.encode(), alert.model_dump_json().encode(), None, None, None
            )

    @app.agent(labels_topic, name="labels")
    async def labels(stream):
        async for raw in stream:
            label = _parse(ChurnLabel, raw)
            if label is None:
                continue
            monitor = drift_monitor()
            if monitor is not None:
                monitor.label(
                    label.customer_id, label.closed_at.timestamp(), featurizer.home(label.customer_id.encode())
                )

    @app.timer(settings.silence_check_s)
    async def silence():
        """Re-score customers quiet for ``silence_days`` of their partition's event time."""
        if not settings.silence_days:
            return
        model = holder.current
        if model is None:
            return
        step = settings.silence_days * 86_400.0
        out, vectors = [], []
        now_ms = int(time.time() * 1000)
        for key, raw in list(state_table.items()):
            part = key_partition.get(key)
            if part is None:
                part = key_partition[key] = partition_for(key, partitions)
            clock = partition_clock.get(part)
            if clock is None:
                continue
            state = CustomerState.from_bytes(raw)
            if state.last_ts is None or state.closed_ts is not None:
                continue
            if clock - state.last_ts < step:
                continue
            at = state.last_ts + step * int((clock - state.last_ts) // step)
            if silence_sent.get(key, 0.0) >= at:
                continue
            silence_sent[key] = at
            row = features(state, at, event_id=f"{state.customer_id}@{int(at)}").model_dump(mode="json")
            out.append(Outbound(FEATURES, key, json_bytes(row)))
            vectors.append(Scorable(key, row, now_ms, at))
        if not out:
            return
        # Silence re-scores are not events: the drift baseline holds event-time vectors only.
        scored = scorer.score(vectors, model, reason="silence")
        metrics.silence_rescored.inc(len(out))
        await publish(out + scored.out)
        contexts = [key_context(v.key, names.account_events, partitions) for v in vectors]
        await write_tables(producer(), [(score_table, latest_scores(scored))], contexts)

    @app.agent(model_topic, name="models")
    async def model_events(stream):
        async for raw in stream:
            event = _parse(ModelEvent, raw)
            if event is None or event.model_name != settings.model_name:
                continue
            if event.action not in ("promoted", "rolled_back"):
                continue
            log.info("model event: %s version %s %s", event.model_name, event.version, event.action)
            await holder.refresh(event.version, event.checksum or None)

    @app.task
    async def load_model():
        await holder.wait_ready(lambda: app.should_stop)

    @app.timer(settings.model_poll_s)
    async def poll_alias():
        if holder.current is not None:
            await holder.refresh()

    @app.timer(1.0)
    async def track_assignment():
        owned = [tp for tp in app.consumer.assignment() if tp.topic == names.account_events]
        metrics.assigned_partitions.set(len(owned))

    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(generate_latest(metrics.registry), content_type=METRICS_CONTENT_TYPE)

    @app.page("/customers/{customer_id}")
    @app.table_route(table=state_table, match_info="customer_id")
    async def customer_page(web, request, customer_id):
        key = customer_id.encode()
        raw = state_table.get(key)
        if raw is None:
            return web.json({"error": f"unknown customer {customer_id}"}, status=404)
        state = CustomerState.from_bytes(raw)
        body = {
            "customer_id": customer_id,
            "features": features(state, state.last_ts).model_dump(mode="json"),
            "score": orjson.loads(score_table[key]) if key in score_table else None,
        }
        return web.json(body)

    @app.page("/score")
    class ScoreView(faust.web.View):
        async def post(self, request):
            return await score_request(self, request)

    async def score_request(view, request):
        model = holder.current
        if model is None:
            return view.json({"error": "no model loaded yet"}, status=503)
        body = await view.read_request_content(request)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return view.json({"error": f"body is not JSON: {exc}"}, status=400)
        items = payload if isinstance(payload, list) else [payload]
        vectors, problems = [], []
        for i, item in enumerate(items):
            try:
                vectors.append(FeatureVector.model_validate(item))
            except ValidationError as exc:
                for err in exc.errors(include_url=False):
                    problems.append({"index": i, "field": ".".join(str(p) for p in err["loc"]), "error": err["msg"]})
        if problems:
            return view.json({"error": "invalid feature vectors", "detail": problems}, status=422)
        if not vectors:
            return view.json([])
        columns = {name: [v.model_input()[name] for v in vectors] for name in vectors[0].model_input()}
        probabilities = model.predict_columns(columns)
        out = [
            {
                "customer_id": v.customer_id,
                "event_id": v.event_id,
                "probability": float(p),
                "risk_band": scorer_band(float(p)),
                "model_name": model.name,
                "model_version": model.version,
            }
            for v, p in zip(vectors, probabilities)
        ]
        return view.json(out if isinstance(payload, list) else out[0])

    def scorer_band(p: float) -> str:
        from schemas.outputs import risk_band

        return risk_band(p, settings.risk_medium, settings.risk_high)

    return ChurnApp(app, settings, names, metrics, holder, featurizer, scorer, state_table, score_table)
