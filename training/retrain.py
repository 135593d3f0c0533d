"""The retraining job (``churn retrain``): learn from the stream's own feature log.

:func:`retrain` reads every record of ``churn-features`` and ``churn-labels`` up to
the exact end offsets at its start (so it terminates, whatever keeps arriving),
builds point-in-time snapshots in the stream's own event time, trains a candidate on
a customer split and hands it to :func:`training.job.run_training`, which logs and
registers it, evaluates the production model on the same fresh holdout, gates, and
promotes or rejects. The run also gets a drift report (production's reference
distributions against the window, :mod:`training.drift_report`), and the decision is
published as a ``ModelEvent`` on ``model-events`` (:mod:`training.model_events`).

Event time
----------
The clock is the newest ``event_ts`` in the feature log. A snapshot at time ``t`` is
usable once its horizon has passed (``t + horizon <= clock``). Of those, the job keeps
the most recent ``window_days`` (so it learns the current world). ``warmup_days`` does
not apply: the log's oldest event times (backdated signups, or whatever retention kept)
do not say when the stream started, so a young stream is best retrained with a
``--window-days`` that leaves out its first weeks. Feature records are de-duplicated
by ``event_id``: delivery is at-least-once.

Learning the world since a drift
--------------------------------
A drift alert says the world changed at about its window start. Snapshots from before
it teach the old world; snapshots after it have no label until their horizon has
passed. With ``since`` the job learns only from snapshots at or after that moment,
and with ``wait_labels_s`` it first waits (polling the head of the feature log) until
the stream's clock reaches ``since + window_days + horizon``, so the window is full of
matured labels; past the wait it learns from what has matured.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import orjson
import pandas as pd
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from pydantic import ValidationError

from producers.simulator import SimConfig
from schemas.features import FeatureVector
from schemas.outputs import ChurnLabel
from stream.errors import BrokerError, ChurnError
from stream.kafka.config import confluent_config
from stream.kafka.topics import CHURN_FEATURES, CHURN_LABELS
from stream.pipeline.features import DAY
from stream.runtime.end_offsets import exact_end_offsets
from stream.settings import Settings
from training import registry
from training.config import DatasetConfig, TrainConfig
from training.dataset import (
    LABEL,
    ORACLE,
    _keep,
    feature_log_snapshots,
    fingerprint,
    split_by_customer,
    world_oracle,
)
from training.drift_report import log_drift_report, production_reference
from training.job import TrainOutcome, run_training
from training.model_events import model_event, publish
from training.preflight import Trigger, check_reachable, check_retrain_arguments  # noqa: F401 - Trigger is API
from training.train import Progress, TrainResult, train_on_split

log = logging.getLogger(__name__)

MAX_ROWS = 200_000  # above this, subsample with dataset.snapshot_rate
MIN_ROWS = {"train": 200, "holdout": 50}
MIN_POSITIVES = 5  # churners needed on each side of the split
SOURCE = "feature-log"


@dataclass(frozen=True)
class FeatureLog:
    """The parsed feature log: unique vectors (``event_ts`` in epoch seconds) and closures."""

    vectors: list[dict]
    closed_at: dict[str, float]
    records: int
    duplicates: int
    invalid: int
    labels: int


@dataclass(frozen=True)
class DataWindow:
    """Snapshot times used, ``[start_ts, end_ts]``, and the stream's clock."""

    start_ts: float
    end_ts: float
    clock_ts: float

    def tags(self) -> dict[str, str]:
        def iso(ts):
            return datetime.fromtimestamp(ts, tz=UTC).isoformat()

        return {
            "data.window_start": iso(self.start_ts),
            "data.window_end": iso(self.end_ts),
            "data.clock": iso(self.clock_ts),
        }


def parse_feature_log(feature_values: Iterable[bytes], label_values: Iterable[bytes]) -> FeatureLog:
    """Validate and de-duplicate feature records (sorted by event time); each customer's earliest closure."""
    vectors: dict[str, dict] = {}
    records = bad_features = bad_labels = 0
    for raw in feature_values:
        records += 1
        try:
            v = FeatureVector.model_validate_json(raw)
        except ValidationError as exc:
            bad_features += 1
            if bad_features <= 5:
                log.warning("skipping an invalid feature record: %s", exc.errors(include_url=False)[:2])
            continue
        if v.event_id not in vectors:
            row = v.model_input()
            row.update(customer_id=v.customer_id, event_id=v.event_id, event_ts=v.event_ts.timestamp())
            vectors[v.event_id] = row
    closed_at: dict[str, float] = {}
    labels = 0
    for raw in label_values:
        try:
            label = ChurnLabel.model_validate_json(raw)
        except ValidationError as exc:
            bad_labels += 1
            log.warning("skipping an invalid label record: %s", exc.errors(include_url=False)[:2])
            continue
        labels += 1
        if label.churned:
            ts = label.closed_at.timestamp()
            closed_at[label.customer_id] = min(ts, closed_at.get(label.customer_id, ts))
    # Partitions interleave arbitrarily: a fixed order keeps the dataset (and its fingerprint) reproducible.
    unique = sorted(vectors.values(), key=lambda v: (v["event_ts"], v["event_id"]))
    duplicates = records - bad_features - len(unique)
    return FeatureLog(unique, closed_at, records, duplicates, bad_features + bad_labels, labels)


def data_window(
    feature_log: FeatureLog, dataset: DatasetConfig, window_days: float | None = None, since_ts: float | None = None
) -> DataWindow:
    """The snapshot times to learn from (none before ``since_ts``); ``ChurnError`` when there are none."""
    if not feature_log.vectors:
        raise ChurnError("the feature log is empty: run the stream (churn worker + churn produce) before retraining")
    times = [v["event_ts"] for v in feature_log.vectors]
    first, clock = min(times), max(times)
    end = clock - dataset.horizon_days * DAY
    window = dataset.window_days if window_days is None else window_days
    start = max(first, end - window * DAY, since_ts if since_ts is not None else first)
    if since_ts is not None and since_ts >= end:

        def iso(ts):
            return datetime.fromtimestamp(ts, tz=UTC).isoformat()

        raise ChurnError(
            f"no snapshot since {iso(since_ts)} has a known label yet: the stream's clock is {iso(clock)} and "
            f"labels take the {dataset.horizon_days}-day horizon to mature; let the stream run longer "
            "(or wait for them with --wait-labels)"
        )
    if start >= end:
        raise ChurnError(
            f"the feature log spans {(clock - first) / DAY:.1f} days of event time, no more than the "
            f"{dataset.horizon_days}-day horizon: no snapshot has a known label yet; let the stream run longer"
        )
    return DataWindow(start, end, clock)


def snapshot_frame(feature_log: FeatureLog, window: DataWindow, dataset: DatasetConfig) -> pd.DataFrame:
    """Labelled snapshots of the window; subsampled by ``snapshot_rate`` only above ``MAX_ROWS``."""
    frame = feature_log_snapshots(
        feature_log.vectors, feature_log.closed_at, dataset.horizon_days, window.clock_ts, window.start_ts
    )
    if len(frame) > MAX_ROWS:
        keep = frame["event_id"].map(lambda e: _keep(e, dataset.snapshot_rate))
        log.info("subsampling %d snapshots at rate %.3f", len(frame), dataset.snapshot_rate)
        frame = frame.loc[keep].reset_index(drop=True)
    return frame


def check_split(train: pd.DataFrame, holdout: pd.DataFrame, window: DataWindow) -> None:
    """Raise ``ChurnError`` saying what is missing when a side is too small or lacks a class."""
    problems = []
    for side, frame in (("train", train), ("holdout", holdout)):
        positives = int(frame[LABEL].sum()) if len(frame) else 0
        if len(frame) < MIN_ROWS[side]:
            problems.append(f"{side} has {len(frame)} snapshots (needs {MIN_ROWS[side]})")
        if positives < MIN_POSITIVES:
            problems.append(f"{side} has {positives} churners (needs {MIN_POSITIVES})")
        if len(frame) - positives < MIN_POSITIVES:
            problems.append(f"{side} has {len(frame) - positives} non-churners (needs {MIN_POSITIVES})")
    if problems:
        tags = window.tags()
        raise ChurnError(
            f"not enough labelled data in the feature log window {tags['data.window_start']} .. "
            f"{tags['data.window_end']}: {'; '.join(problems)}; let the stream run longer or widen --window-days"
        )


def _extent(consumer: Consumer, config: dict, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """The first and the exact end offset of each partition of ``topic``."""
    try:
        described = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            raise BrokerError(
                f"topic {topic} does not exist on {config['bootstrap.servers']}: "
                "create the topics and run the stream before retraining"
            )
        tps = [TopicPartition(topic, p) for p in sorted(described.partitions)]
        marks = {tp: consumer.get_watermark_offsets(tp, timeout=10) for tp in tps}
    except KafkaException as exc:
        raise BrokerError(f"cannot read {topic}: {exc}") from exc
    ends = exact_end_offsets(config, {tp: high for tp, (_, high) in marks.items()})
    return {tp.partition: marks[tp][0] for tp in tps}, {tp.partition: ends[tp] for tp in tps}


def read_to_end(settings: Settings, topic: str, timeout_s: float = 120.0) -> list[bytes]:
    """Every record value of ``topic``, from the beginning to the exact end offsets at the start."""
    config = confluent_config(settings, settings.resolved_bootstrap())
    consumer = Consumer(
        {
            **config,
            "group.id": f"churn-retrain-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        starts, ends = _extent(consumer, config, topic)
        todo = {p: end for p, end in ends.items() if end > starts[p]}
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in todo])
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"reading {topic} to its end did not finish within {timeout_s:.0f}s "
                    f"(partitions left: {sorted(todo)})"
                )
            for msg in consumer.consume(10_000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("reading %s: %s", topic, err)
                    continue
                partition, offset, value = msg.partition(), msg.offset(), msg.value()
                if partition is None or offset is None:  # set on every record consumed without an error
                    continue
                end = todo.get(partition)
                if end is None or offset >= end:
                    continue
                if value is not None:
                    values.append(value)
                if offset + 1 >= end:
                    del todo[partition]
        return values
    finally:
        consumer.close()


def log_clock(settings: Settings, topic: str, tail: int = 200) -> float | None:
    """The newest ``event_ts`` among the last ``tail`` records of each partition of ``topic``
    (epoch seconds), or None while the topic is empty: the stream's clock, read cheaply."""
    config = confluent_config(settings, settings.resolved_bootstrap())
    consumer = Consumer(
        {
            **config,
            "group.id": f"churn-clock-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    try:
        starts, ends = _extent(consumer, config, topic)
        todo = {p: end for p, end in ends.items() if end > starts[p]}
        consumer.assign([TopicPartition(topic, p, max(starts[p], end - tail)) for p, end in todo.items()])
        newest: float | None = None
        deadline = time.monotonic() + 30.0
        while todo and time.monotonic() < deadline:
            for msg in consumer.consume(tail * len(ends), 0.5):
                partition, offset, value = msg.partition(), msg.offset(), msg.value()
                if msg.error() is not None or partition is None or offset is None or partition not in todo:
                    continue
                if value is not None:  # a record without a value carries no clock
                    try:
                        ts = datetime.fromisoformat(orjson.loads(value)["event_ts"]).timestamp()
                        newest = ts if newest is None else max(newest, ts)
                    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                        pass
                if offset + 1 >= todo[partition]:
                    del todo[partition]
        return newest
    finally:
        consumer.close()


def wait_for_labels(
    settings: Settings, needed_ts: float, timeout_s: float, report: Progress, poll_s: float = 2.0
) -> float | None:
    """Wait until the feature log's clock reaches ``needed_ts`` or ``timeout_s`` passes; the last clock read."""
    deadline = time.monotonic() + timeout_s
    topic = settings.topic(CHURN_FEATURES)
    while True:
        clock = log_clock(settings, topic)
        if clock is not None:
            report("wait", max(0.0, (needed_ts - clock) / DAY))
        if (clock is not None and clock >= needed_ts) or time.monotonic() >= deadline:
            return clock
        time.sleep(poll_s)


def retrain(
    settings: Settings,
    config: TrainConfig,
    trigger: str,
    alert_id: str = "",
    window_days: float | None = None,
    progress: Progress | None = None,
    since_ts: float | None = None,
    wait_labels_s: float = 0.0,
    oracle_world: SimConfig | None = None,
    stage: Literal["production", "shadow"] = "production",
) -> TrainOutcome:
    """Retrain on the feature log, gate, promote or reject, and publish the ``ModelEvent``.

    ``since_ts`` keeps snapshots from that event time on; ``wait_labels_s`` waits up to
    that long for the stream's clock to reach ``since_ts + window + horizon``. When the
    stream was published by a simulated ``oracle_world`` (the demo), its oracle is measured
    on the same holdout and the gate judges the floors against it. ``stage="shadow"`` makes a
    candidate that passes the gate the challenger instead of promoting it."""
    trigger = check_retrain_arguments(trigger, window_days, wait_labels_s)
    check_reachable(settings)
    report = progress or (lambda stage, done: None)
    dataset = config.dataset

    if since_ts is not None and wait_labels_s > 0:
        needed = since_ts + ((dataset.window_days if window_days is None else window_days) + dataset.horizon_days) * DAY
        clock = wait_for_labels(settings, needed, wait_labels_s, report)

        def iso(ts):
            return datetime.fromtimestamp(ts, tz=UTC).isoformat() if ts is not None else "none"

        log.info("labels since %s: stream clock %s, full window needs %s", iso(since_ts), iso(clock), iso(needed))

    report("read", 0.0)
    features = read_to_end(settings, settings.topic(CHURN_FEATURES))
    labels = read_to_end(settings, settings.topic(CHURN_LABELS))
    feature_log = parse_feature_log(features, labels)
    log.info(
        "feature log: %d records, %d unique, %d duplicates, %d invalid, %d labels",
        feature_log.records,
        len(feature_log.vectors),
        feature_log.duplicates,
        feature_log.invalid,
        feature_log.labels,
    )

    report("dataset", 0.0)
    window = data_window(feature_log, dataset, window_days, since_ts)
    frame = snapshot_frame(feature_log, window, dataset)
    split = split_by_customer(frame, dataset.holdout_fraction)
    check_split(split.train, split.holdout, window)
    if oracle_world is not None:
        split.holdout[ORACLE] = world_oracle(oracle_world, split.holdout, dataset.horizon_days)

    report("fit", 0.0)
    pipeline, metrics = train_on_split(split, config)
    result = TrainResult(pipeline=pipeline, metrics=metrics, split=split, fingerprint=fingerprint(frame))

    client = registry.connect(settings)
    reference_version, reference = production_reference(client, settings.model_name)
    tags = {
        "trigger": trigger,
        "alert_id": alert_id,
        "source": SOURCE,
        **({"data.since": datetime.fromtimestamp(since_ts, tz=UTC).isoformat()} if since_ts is not None else {}),
        **window.tags(),
        "data.window_days": f"{(window.end_ts - window.start_ts) / DAY:.2f}",
        "data.records": str(feature_log.records),
        "data.duplicates": str(feature_log.duplicates),
        "rows.train": str(len(split.train)),
        "rows.holdout": str(len(split.holdout)),
    }
    outcome = run_training(config, settings, report, tags, result=result, stage=stage)

    report("publish", 0.0)
    note = f"trigger={trigger}" + (f" alert={alert_id}" if alert_id else "")
    if outcome.champion_metrics:
        note += (
            f"; roc_auc {outcome.metrics['roc_auc']:.4f} vs production "
            f"{outcome.champion_metrics['roc_auc']:.4f} on the same holdout"
        )
    try:
        publish(settings, model_event(settings.model_name, outcome, note))
    except BrokerError as exc:
        raise BrokerError(
            f"{exc} (the registry holds the decision all the same: workers find a promotion "
            f"when they next poll @{settings.model_alias})"
        ) from exc

    if reference is not None:
        report("drift", 0.0)
        try:
            log_drift_report(client, outcome.run_id, reference, frame, reference_version or "")
        except Exception as exc:  # noqa: BLE001 - the report is informational; the decision stands without it
            log.warning("could not log the drift report to run %s: %s", outcome.run_id, exc)
    report("done", 0.0)
    return outcome
