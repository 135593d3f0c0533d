"""The Faust app: topics, tables, agents and web views, wired to the plain processors.

Thin on purpose: validation and features live in :mod:`stream.pipeline.featurize`, scoring in
:mod:`stream.serving.scoring`, the model in :mod:`stream.serving.model_holder`. Nothing happens at
import time; :func:`create_app` builds an app from explicit settings and registers on it what the
modules beside this one define.

Agents
------
``featurize``  account-events -> churn-features, churn-scores, churn-labels,
               account-events-dlq; keeps the ``customer-state`` and ``latest-score``
               tables (changelog-backed). Each batch is featurized and then scored
               in place, micro-batched: one ``predict_proba`` per batch.
               :mod:`stream.app.featurize` holds it, its state and how a batch ends.
``labels``     churn-labels -> the drift monitor's label window.
``models``     model-events -> hot swap of the serving model and of the challenger scored in
               shadow to churn-scores-shadow (an alias poll backs it up).
               Both in :mod:`stream.app.control`.

Timers (silence re-scores, partition tracking) are in :mod:`stream.app.timers`, the web
pages (``/metrics``, ``/ready``, ``/live``, ``/customers/{customer_id}``, ``/score``) in
:mod:`stream.app.views`, the readiness decision in :mod:`stream.app.readiness`.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from stream.app import control, featurize, timers, views
from stream.app.featurize import FeaturizeState
from stream.app.http_edge import web_application_options
from stream.kafka.config import confluent_config, faust_broker_kwargs
from stream.kafka.partitioning import HomePartitions
from stream.kafka.topics import TopicNames
from stream.metrics import StreamMetrics
from stream.pipeline.featurize import Featurizer
from stream.runtime.install import install as install_runtime
from stream.runtime.tables import RawSchema
from stream.runtime.undecodable import DeadLetterReporter
from stream.serving.model_holder import ModelHolder
from stream.serving.scoring import Scorer
from stream.serving.shadow import ChallengerHolder, ShadowScorer
from stream.settings import Settings

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
    challenger: ChallengerHolder | None = None


def faust_app(settings: Settings, bootstrap: str | None) -> faust.App:
    """The bare Faust app: broker, store, serializers, timeouts and web server."""
    # One folder per app: Faust names a table's RocksDB files after the table alone, so two
    # apps (other CHURN_APP_ID or CHURN_TOPIC_PREFIX) on one CHURN_DATA_DIR would share them.
    datadir = settings.data_dir.resolve() / "faust" / settings.app_id
    return faust.App(
        settings.app_id,
        **faust_broker_kwargs(settings, bootstrap),
        store=settings.store,
        datadir=str(datadir),
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
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
        web_application_options=web_application_options(settings.http_max_body_bytes),
    )


def shadow_scoring(
    settings: Settings, metrics: StreamMetrics, challenger: ChallengerHolder | None
) -> tuple[ChallengerHolder | None, ShadowScorer | None]:
    """The challenger's holder and scorer, or none when shadow scoring is off (``CHURN_SHADOW_ALIAS`` empty)."""
    if challenger is None and settings.shadow_alias:
        challenger = ChallengerHolder(settings, metrics)
    if challenger is None:
        return None, None
    return challenger, ShadowScorer(
        metrics, challenger.alias, settings.risk_medium, settings.risk_high, settings.score_reasons
    )


def create_app(
    settings: Settings,
    bootstrap: str | None = None,
    metrics: StreamMetrics | None = None,
    holder: ModelHolder | None = None,
    tansu_quirks: bool | None = None,
    challenger: ChallengerHolder | None = None,
) -> ChurnApp:
    """Build the app for ``settings``; ``bootstrap`` is the broker when settings name none.

    ``tansu_quirks`` works around the embedded broker's bugs (exact end offsets for table
    recovery, the fetch wait); by default as ``CHURN_BROKER_QUIRKS`` says without asking the
    broker (``auto``: off). :func:`stream.app.worker.run_worker` asks the broker and decides.
    """
    metrics = metrics or StreamMetrics.create()
    holder = holder or ModelHolder(settings, metrics)
    names = TopicNames.from_settings(settings)
    partitions = settings.topic_partitions
    app = faust_app(settings, bootstrap)
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
    scorer = Scorer(metrics, settings.risk_medium, settings.risk_high, settings.score_reasons)
    challenger, shadow_scorer = shadow_scoring(settings, metrics, challenger)
    state = FeaturizeState(
        app, settings, bootstrap, names, metrics, holder, featurizer, scorer, state_table, score_table, dead_letters
    )
    state.challenger, state.shadow_scorer = challenger, shadow_scorer
    app.on_before_shutdown.connect(state.close_producer)
    # Agents featurize, labels, models; tasks (started in this order) silence, load_model,
    # poll_alias, track_assignment; then the pages.
    featurize.register(app, state, events_topic)
    control.register_labels(app, state, labels_topic)
    timers.register_silence_check(app, state)
    if challenger is not None:
        timers.register_shadow_export(app, state)
    control.register_models(app, settings, holder, model_topic, challenger)
    timers.register_assignment_tracking(app, names, metrics)
    views.register(app, settings, metrics, holder, state_table, score_table)
    return ChurnApp(app, settings, names, metrics, holder, featurizer, scorer, state_table, score_table, challenger)
