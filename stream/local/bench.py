"""``churn bench``: the stream against the per-row pattern and a raw client loop, side by side.

Variants, all in one run, with the same events and the same model:

``stream``   a ``churn worker`` process on a pre-produced backlog: events/s from the
             first to the last score; then a paced phase at ``latency_rate`` for the
             event-to-score latency percentiles (from the event's append time).
``per_row``  the tutorial pattern: ``predict_proba(pd.DataFrame([row]))`` per event.
``raw``      one Python process with a raw confluent-kafka loop doing the same work
             (validate, de-duplicate, features, batched scoring, produce): the practical
             ceiling of one process.
``stream_shadow``  with ``--shadow``: the ``stream`` variant again on fresh topics, the worker
             also scoring a second version under the challenger alias to
             ``churn-scores-shadow``: what shadow scoring costs production.

Counts are checked: the stream must emit exactly one score per input event.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import orjson
import pandas as pd
from confluent_kafka import Consumer, Producer, TopicPartition

from producers.simulator import SimConfig, Simulator
from schemas.events import account_event_adapter, dump_event
from schemas.features import FEATURE_NAMES
from stream.errors import ChurnError, ConfigError
from stream.kafka.config import confluent_config
from stream.kafka.topics import ensure_topics, topic_specs
from stream.local.processes import WorkerProcess, metric_sum
from stream.pipeline.features import Admission, CustomerState, admit, apply, event_time, feature_values
from stream.serving.model_holder import RegistrySource
from stream.settings import Settings

log = logging.getLogger(__name__)

# Paced record batches per partition past which the embedded broker's own fetch cost shows in the
# latency measured: its fetch from a partition costs more the more batches the partition holds
# (README, "Inside a worker").
EMBEDDED_PACED_PER_PARTITION = 2_500
PACED_LINGER_S = 0.005


def paced_batches_per_partition(events: int, partitions: int, rate: float) -> float:
    """At most how many record batches the paced phase adds to each partition: one per produce request
    (a request every ``PACED_LINGER_S`` at ``rate`` events/s) and at most one per event; with no
    ``rate`` (not yet known), one per event.

    >>> paced_batches_per_partition(20_000, 4, 9_000.0)
    444.4
    >>> paced_batches_per_partition(20_000, 4, 100.0)
    5000.0
    >>> paced_batches_per_partition(20_000, 4, 0.0)
    5000.0
    """
    per_partition = events / partitions
    if rate > 0:
        per_partition = min(per_partition, events / rate / PACED_LINGER_S)
    return round(per_partition, 1)


@dataclass
class VariantResult:
    events: int
    seconds: float
    latencies_ms: list[float]

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def as_dict(self) -> dict[str, float]:
        return {
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events_per_s, 1),
            "p50_ms": round(self.percentile(50), 3),
            "p95_ms": round(self.percentile(95), 3),
            "p99_ms": round(self.percentile(99), 3),
        }


def simulated_messages(n: int, customers: int, prefix: str, seed: int = 3) -> list[tuple[bytes, bytes]]:
    """``n`` simulated events as (key, value) pairs."""
    out = []
    sim = Simulator(SimConfig(n_customers=customers, days=365, seed=seed, id_prefix=prefix))
    for event in sim.events():
        out.append((event.customer_id.encode(), dump_event(event)))
        if len(out) >= n:
            break
    return out


PARTITIONERS = ("murmur2_random", "consistent_random")


def _produce(config: dict, topic: str, messages, rate: float = 0.0, partitioner: str = "murmur2_random") -> None:
    """Publish ``messages``; at ``rate`` events/s when given (the latency phase).

    ``partitioner`` is librdkafka's: ``murmur2_random`` puts each customer on its home
    partition, ``consistent_random`` (librdkafka's default) most customers elsewhere, so
    the workers re-publish those events home first (what Faust's ``group_by`` would do
    to every event).

    The paced producer is connected before the clock starts, and is not idempotent:
    an idempotent producer holds its first records until it has a producer id, a
    delay that would be measured as the stream's latency. It lingers 5 ms,
    librdkafka's default and ``churn produce``'s, as the backlog's producer does: the
    embedded broker lists every record batch of a partition on each fetch, so the
    batches of one or two events that a 1 ms linger sent cost it more CPU than the
    worker used, and raised the latency measured. With no linger at all it fell behind
    them. The events' timestamps count the linger as the stream's latency.
    """
    producer = Producer(
        {**config, "partitioner": partitioner, "linger.ms": PACED_LINGER_S * 1000, "enable.idempotence": not rate}
    )
    if rate:
        producer.list_topics(topic, timeout=10)
    start = time.perf_counter()
    for i, (key, value) in enumerate(messages):
        if rate:
            wait = start + i / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60):
        raise ChurnError("bench could not deliver its input events")


def _read_scores(
    config: dict,
    topic: str,
    expected: int,
    timeout: float,
    min_rate: float = 0.0,
    window_s: float = 60.0,
    hint: str = "",
    clock=time.monotonic,
) -> list[dict]:
    """All ``expected`` scores from ``topic``; an error once ``timeout`` has passed, or as soon as fewer than
    ``min_rate`` scores/s arrived over the last ``window_s`` seconds (the stream has all but stopped:
    waiting out the timeout would not change the outcome). ``hint`` ends the error's message."""
    consumer = Consumer({**config, "group.id": f"bench-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    scores: list[dict] = []
    started = clock()
    deadline = started + timeout
    marks = [(started, 0)]  # (time, scores so far), one a second, the last ``window_s`` seconds of them
    stalled = None  # the rate at which scores had slowed to, if they did
    try:
        while len(scores) < expected and clock() < deadline:
            for msg in consumer.consume(5000, 0.2):
                if not msg.error():
                    scores.append(orjson.loads(msg.value()))
            now = clock()
            if now - marks[-1][0] >= 1.0:
                marks.append((now, len(scores)))
                while len(marks) > 1 and marks[1][0] <= now - window_s:
                    marks.pop(0)
                if min_rate and now - marks[0][0] >= window_s and len(scores) - marks[0][1] < min_rate * window_s:
                    stalled = (len(scores) - marks[0][1]) / (now - marks[0][0])
                    break
    finally:
        consumer.close()
    if len(scores) < expected:
        if stalled is not None:
            why = f"the stream slowed to {stalled:,.1f} scores/s over the last {window_s:.0f}s"
        else:
            why = f"not within {timeout:.0f}s"
        raise ChurnError(f"bench: only {len(scores)} of {expected} scores arrived; {why}{hint}")
    return scores


def _iso_to_s(stamp: str) -> float:
    return pd.Timestamp(stamp).timestamp()


def _worker(
    settings: Settings, bootstrap: str, prefix: str, port: int, log_path: Path, cpus: str = "", shadow_alias: str = ""
) -> WorkerProcess:
    """A worker process for the bench: its own topics and group, no silence re-scores, and shadow scoring
    only with ``shadow_alias`` (a challenger left in the registry must not tax the production-only figures)."""
    env = {
        "CHURN_BOOTSTRAP_SERVERS": bootstrap,
        "CHURN_DATA_DIR": str(settings.data_dir.resolve()),
        "CHURN_TOPIC_PREFIX": prefix,
        "CHURN_APP_ID": f"{prefix}app",
        "CHURN_WEB_PORT": str(port),
        "CHURN_LOG_LEVEL": "WARNING",
        "CHURN_SCORE_BATCH_SIZE": str(settings.score_batch_size),
        "CHURN_SCORE_BATCH_MS": str(settings.score_batch_ms),
        "CHURN_FETCH_MAX_WAIT_MS": str(settings.fetch_max_wait_ms),
        "CHURN_BATCHES_IN_FLIGHT": str(settings.batches_in_flight),
        "CHURN_MODEL_NAME": settings.model_name,
        "CHURN_MODEL_ALIAS": settings.model_alias,
        "CHURN_STORE": settings.store,
        "CHURN_SCORE_REASONS": str(settings.score_reasons),
        "CHURN_WORKER_CPUS": cpus,
        "CHURN_SHADOW_ALIAS": shadow_alias,
        # Silence re-scores are outputs without an input event; the bench counts one score per event.
        "CHURN_SILENCE_DAYS": "0",
    }
    if settings.mlflow_tracking_uri:
        env["CHURN_MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    return WorkerProcess(env, log_path)


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system, all threads) process ``pid`` has used, in seconds (Linux ``/proc``); NaN
    when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def events_in(procs) -> float:
    """Valid events the workers have consumed so far (``churn_events_in_total``, every type)."""
    return sum(metric_sum(worker.metrics(), "churn_events_in_total") for worker in procs)


def rss_mb(pid: int | None) -> float:
    """Resident memory of process ``pid`` in MiB (Linux ``/proc``); NaN when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return float("nan")


BATCH_SERIES = {
    "batches": "churn_score_batch_size_count",
    "events": "churn_score_batch_size_sum",
    "wait_ms": "churn_batch_wait_ms_sum",
    "processing_ms": "churn_batch_processing_ms_sum",
}


def batch_totals(procs) -> dict[str, float]:
    """The workers' per-batch totals (see ``BATCH_SERIES``), summed over the workers."""
    totals = dict.fromkeys(BATCH_SERIES, 0.0)
    for worker in procs:
        samples = worker.metrics()
        for name, series in BATCH_SERIES.items():
            totals[name] += samples.get(series, 0.0)
    return totals


def batch_breakdown(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per-batch means between two :func:`batch_totals`: where an event's latency goes.

    >>> batch_breakdown(dict.fromkeys(BATCH_SERIES, 0.0),
    ...                 {"batches": 4, "events": 100, "wait_ms": 80.0, "processing_ms": 40.0})
    {'batches': 4, 'mean_batch_events': 25.0, 'mean_oldest_wait_ms': 20.0, 'mean_processing_ms': 10.0}
    """
    d = {k: after[k] - before[k] for k in BATCH_SERIES}
    n = d["batches"]
    if n <= 0:
        return {"batches": 0}
    return {
        "batches": int(n),
        "mean_batch_events": round(d["events"] / n, 1),
        "mean_oldest_wait_ms": round(d["wait_ms"] / n, 2),
        "mean_processing_ms": round(d["processing_ms"] / n, 2),
    }


class StreamRun(NamedTuple):
    rerouted: float  # events the workers re-published to their home partition
    throughput: VariantResult
    latency: VariantResult
    rss_mb: list[float]  # each worker's, after the backlog
    latency_batches: dict[str, float]  # the paced phase's per-batch means (:func:`batch_breakdown`)
    backlog_batches: dict[str, float]  # the backlog's, likewise
    cpu_us_per_event: float  # the workers' CPU per backlog event
    cpu: dict[str, float]  # CPU µs per event of the workers and the broker, in each phase (:func:`per_event_us`)
    shadow_scores: float  # scores the challenger published during the backlog (0 without shadow scoring)


def per_event_us(cpu_s: float, events: float) -> float:
    """CPU µs per event, rounded; NaN for no events or unknown CPU.

    >>> per_event_us(0.5, 2500), per_event_us(1.0, 0)
    (200.0, nan)
    """
    return round(cpu_s / events * 1e6, 1) if events > 0 else float("nan")


def run_stream(
    settings: Settings,
    bootstrap: str,
    backlog,
    paced,
    latency_rate: float,
    workdir: Path,
    report,
    workers: int = 1,
    broker_pid: int | None = None,
    hint: str = "",
    worker_cpus: list[str] | None = None,
    partitioner: str = "murmur2_random",
    shadow: tuple[str, str] | None = None,
    backlog_after_start: bool = False,
) -> StreamRun:
    """Throughput on a backlog, then latency at a paced rate, with ``workers`` worker processes
    of one app; ``broker_pid`` is the embedded broker's, whose CPU is then measured beside theirs.
    ``worker_cpus`` gives each worker its ``CHURN_WORKER_CPUS``; ``partitioner`` is the producers'.
    ``shadow`` (alias, version): the workers also score that challenger in shadow. With
    ``backlog_after_start`` the backlog is produced once the workers serve (and score the
    challenger), so that every backlog event meets both models: a challenger loads beside
    production, not before it, and a backlog waiting at the start would be partly scored
    without it."""
    from stream.local.broker import free_port

    prefix = f"bench-{uuid.uuid4().hex[:6]}-"
    run_settings = settings.model_copy(update={"topic_prefix": prefix})
    config = confluent_config(settings, bootstrap)
    ensure_topics(config, topic_specs(run_settings))
    if not backlog_after_start:
        report(f"pre-producing {len(backlog):,} events")
        _produce(config, run_settings.topic("account-events"), backlog, partitioner=partitioner)
    report(f"starting {workers} worker(s) on the backlog")
    procs = []
    try:
        for i in range(workers):
            name = "bench-worker.log" if i == 0 else f"bench-worker-{i + 1}.log"
            cpus = worker_cpus[i] if worker_cpus else settings.worker_cpus
            alias = shadow[0] if shadow else ""
            procs.append(_worker(settings, bootstrap, prefix, free_port(), workdir / name, cpus, alias).start())
        for worker in procs:
            worker.wait_serving()
            if shadow is not None:
                _wait_challenger(worker, shadow[1])
        shadow_start = sum(metric_sum(w.metrics(), "churn_shadow_scores_out_total") for w in procs)
        # The workers' own CPU per event on the backlog, from here on: steadier than events/s on
        # a machine whose cores the broker and this process share with them.
        cpu_start, events_start = sum(cpu_seconds(w.pid) for w in procs), events_in(procs)
        broker_start = cpu_seconds(broker_pid)
        backlog_start = batch_totals(procs)
        if backlog_after_start:
            report(f"producing {len(backlog):,} events to the serving worker(s)")
            _produce(config, run_settings.topic("account-events"), backlog, partitioner=partitioner)
        scores = _read_scores(
            config, run_settings.topic("churn-scores"), len(backlog), timeout=600, min_rate=20.0, hint=hint
        )
        cpu_used, events_done = sum(cpu_seconds(w.pid) for w in procs) - cpu_start, events_in(procs) - events_start
        shadow_scores = sum(metric_sum(w.metrics(), "churn_shadow_scores_out_total") for w in procs) - shadow_start
        broker_backlog = cpu_seconds(broker_pid) - broker_start
        backlog_batches = batch_breakdown(backlog_start, batch_totals(procs))
        cpu_us = cpu_used / events_done * 1e6 if events_done >= len(backlog) / 2 else float("nan")
        memory = [round(rss_mb(worker.pid), 1) for worker in procs]
        ids = [s["event_id"] for s in scores]
        if len(set(ids)) != len(backlog) or len(ids) != len(backlog):
            raise ChurnError(f"bench: {len(ids)} scores for {len(set(ids))} distinct events; expected {len(backlog)}")
        stamps = sorted(_iso_to_s(s["scored_at"]) for s in scores)
        throughput = VariantResult(len(scores), stamps[-1] - stamps[0], [])
        rate = latency_rate or max(100.0, throughput.events_per_s / 2)
        report(f"latency phase: {len(paced):,} events at {rate:,.0f}/s")
        before = batch_totals(procs)
        paced_worker_cpu, paced_broker_cpu, paced_events = (
            sum(cpu_seconds(w.pid) for w in procs),
            cpu_seconds(broker_pid),
            events_in(procs),
        )
        _produce(config, run_settings.topic("account-events"), paced, rate=rate, partitioner=partitioner)
        all_scores = _read_scores(
            config,
            run_settings.topic("churn-scores"),
            len(backlog) + len(paced),
            timeout=600,
            min_rate=min(20.0, rate / 2),
            hint=hint,
        )
        breakdown = batch_breakdown(before, batch_totals(procs))
        paced_events = events_in(procs) - paced_events
        paced_worker_cpu = sum(cpu_seconds(w.pid) for w in procs) - paced_worker_cpu
        paced_broker_cpu = cpu_seconds(broker_pid) - paced_broker_cpu
        cpu = {
            "backlog_broker_us": per_event_us(broker_backlog, events_done),
            "paced_worker_us": per_event_us(paced_worker_cpu, paced_events),
            "paced_broker_us": per_event_us(paced_broker_cpu, paced_events),
        }
        paced_ids = {orjson.loads(v)["event_id"] for _, v in paced}
        lat = [s["latency_ms"] for s in all_scores if s["event_id"] in paced_ids]
        latency = VariantResult(len(lat), len(paced) / rate, lat)
        rerouted = sum(metric_sum(w.metrics(), "churn_events_rerouted_total") for w in procs)
        return StreamRun(
            rerouted, throughput, latency, memory, breakdown, backlog_batches, round(cpu_us, 1), cpu, shadow_scores
        )
    finally:
        for worker in procs:
            worker.stop()


def _wait_challenger(worker: WorkerProcess, version: str, timeout: float = 120.0) -> None:
    """Until ``worker`` scores ``version`` in shadow; ``ChurnError`` if it does not in time."""
    deadline = time.monotonic() + timeout
    while worker.metrics().get("churn_shadow_model_version", 0.0) != float(version):
        worker.check_alive()
        if time.monotonic() > deadline:
            raise ChurnError(f"bench: the worker did not load challenger version {version} within {timeout:.0f}s")
        time.sleep(0.2)


#: Tag of the version ``churn bench --shadow`` trained to score in shadow.
BENCH_ROLE_TAG = "bench.role"


def bench_challenger(settings: Settings, report) -> tuple[str, bool]:
    """The version ``--shadow`` scores in shadow, and whether the bench put it under the alias (and so takes
    it off after). A version already under ``CHURN_SHADOW_ALIAS`` is used as it is. Otherwise a second
    version of the committed training config with another seed, trained once per registry (tagged
    ``bench.role``), goes under the alias for the run: a distinct model of the production one's shape,
    so the cost measured is that of a real challenger. Its gate allows any AUC against production:
    it is measured for its cost, never promoted."""
    from training import registry
    from training.config import DEFAULT_CONFIG, load_config
    from training.job import run_training

    alias, name = settings.shadow_alias, settings.model_name
    if not alias:
        raise ConfigError("--shadow needs a challenger alias: CHURN_SHADOW_ALIAS is empty")
    client = registry.connect(settings)
    current = registry.version_for_alias(client, name, alias)
    if current is not None:
        return current, False
    production = registry.version_for_alias(client, name, settings.model_alias)
    trained = [
        v.version
        for v in registry.list_versions(client, name)
        if v.tags.get(BENCH_ROLE_TAG) == "challenger" and v.version != production
    ]
    if trained:
        client.set_registered_model_alias(name, alias, trained[0])
        return trained[0], True
    report("training a second version to score in shadow (once per registry)")
    config = load_config(DEFAULT_CONFIG)
    config = config.model_copy(
        update={"seed": config.seed + 1, "gate": config.gate.model_copy(update={"max_auc_regression": 1.0})}
    )
    outcome = run_training(config, settings, tags={BENCH_ROLE_TAG: "challenger"}, stage="shadow")
    if not outcome.shadowed:
        raise ChurnError(f"bench: the challenger failed its gate: {'; '.join(outcome.decision.reasons)}")
    return outcome.version, True


def run_per_row(model, messages, limit: int = 2000) -> VariantResult:
    """The seeds' pattern: one DataFrame and one predict_proba per event."""
    states: dict[str, CustomerState] = {}
    rows = []
    for _, raw in messages[:limit]:
        event = account_event_adapter.validate_json(raw)
        state = states.setdefault(event.customer_id, CustomerState())
        apply(state, event)
        rows.append(feature_values(state, state.last_ts))
    latencies = []
    start = time.perf_counter()
    for row in rows:
        t0 = time.perf_counter()
        model.predict(pd.DataFrame([row])[list(FEATURE_NAMES)])
        latencies.append((time.perf_counter() - t0) * 1000)
    return VariantResult(len(rows), time.perf_counter() - start, latencies)


def run_raw(settings: Settings, bootstrap: str, backlog, model, batch: int, report) -> tuple[VariantResult, list[int]]:
    """A raw confluent-kafka loop doing the stream's work in one process; also the size of
    every customer's state as the state table stores it."""
    prefix = f"bench-raw-{uuid.uuid4().hex[:6]}-"
    run_settings = settings.model_copy(update={"topic_prefix": prefix})
    config = confluent_config(settings, bootstrap)
    ensure_topics(config, topic_specs(run_settings))
    report(f"raw loop: pre-producing {len(backlog):,} events")
    source = run_settings.topic("account-events")
    _produce(config, source, backlog)
    consumer = Consumer({**config, "group.id": f"{prefix}g", "enable.auto.commit": False})
    parts = consumer.list_topics(source, timeout=10).topics[source].partitions
    consumer.assign([TopicPartition(source, p, 0) for p in parts])
    producer = Producer({**config, "linger.ms": 2, "partitioner": "murmur2_random"})
    sink = run_settings.topic("churn-scores")
    states: dict[str, CustomerState] = {}
    done = 0
    latencies: list[float] = []
    start = None
    report("raw loop: consuming")
    deadline = time.monotonic() + 300
    while done < len(backlog) and time.monotonic() < deadline:
        msgs = [m for m in consumer.consume(batch, 0.2) if not m.error()]
        if not msgs:
            continue
        t_batch = time.perf_counter()
        start = start or t_batch
        rows, keys = [], []
        for m in msgs:
            event = account_event_adapter.validate_json(m.value())
            state = states.get(event.customer_id)
            if state is None:
                state = states[event.customer_id] = CustomerState()
            if admit(state, event.event_id, event_time(event.ts)) is not Admission.NEW:
                continue
            apply(state, event)
            rows.append(feature_values(state, state.last_ts))
            keys.append(m.key())
        if rows:
            columns = {name: [r[name] for r in rows] for name in FEATURE_NAMES}
            probabilities = model.predict_columns(columns)
            for key, p in zip(keys, probabilities):
                producer.produce(sink, key=key, value=orjson.dumps({"p": float(p)}))
            producer.poll(0)
        elapsed = (time.perf_counter() - t_batch) * 1000
        latencies.extend([elapsed] * len(msgs))
        done += len(msgs)
    producer.flush(30)
    consumer.close()
    result = VariantResult(done, time.perf_counter() - (start or time.perf_counter()), latencies)
    return result, [len(state.to_bytes()) for state in states.values()]


def pinning(workers: int, available: set[int]) -> tuple[list[str], set[int]]:
    """``--pin``: a CPU of its own for each worker (its ``CHURN_WORKER_CPUS``), and the CPUs left for
    this process and the embedded broker it starts.

    >>> pinning(1, {0, 1})
    (['0'], {1})
    >>> pinning(2, {0, 1})
    Traceback (most recent call last):
    ...
    stream.errors.ConfigError: --pin needs more CPUs than workers (a CPU for each worker and one for the bench and the broker): 2 CPU(s) for 2 worker(s)
    """
    cpus = sorted(available)
    if len(cpus) <= workers:
        raise ConfigError(
            f"--pin needs more CPUs than workers (a CPU for each worker and one for the bench and the "
            f"broker): {len(cpus)} CPU(s) for {workers} worker(s)"
        )
    return [str(cpu) for cpu in cpus[:workers]], set(cpus[workers:])


ENGINES = ("embedded", "kafka")


def bench(
    settings: Settings,
    events: int,
    customers: int,
    latency_events: int,
    latency_rate: float,
    json_path: Path | None,
    report,
    workers: int = 1,
    pin: bool = False,
    partitioner: str = "murmur2_random",
    engine: str = "embedded",
    shadow: bool = False,
) -> dict:
    """Run every variant and return the JSON document ``--json`` writes; with ``pin``, each worker on
    a CPU of its own, this process and the broker it starts on the rest (Linux). ``partitioner`` is the
    stream's producers' (:func:`_produce`); ``engine`` the broker started when ``CHURN_BOOTSTRAP_SERVERS``
    is empty: the embedded one, or one Apache Kafka node from Maven Central. ``shadow`` adds the
    ``stream_shadow`` variant (:func:`bench_challenger`) and its ratios to ``stream``."""
    from stream.local.broker import EmbeddedBroker, free_port

    if events < 1000:
        raise ConfigError("--events must be at least 1000")
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if partitioner not in PARTITIONERS:
        raise ConfigError(f"--partitioner must be one of {', '.join(PARTITIONERS)}, not {partitioner!r}")
    if not 1 <= workers <= settings.topic_partitions:
        raise ConfigError(f"--workers must be between 1 and the partition count ({settings.topic_partitions})")
    if pin:
        if not hasattr(os, "sched_setaffinity"):
            raise ConfigError("--pin needs CPU affinity (Linux)")
        worker_cpus, own_cpus = pinning(workers, os.sched_getaffinity(0))
    else:
        worker_cpus, own_cpus = [settings.worker_cpus] * workers, None
    source = RegistrySource(settings)
    version = source.version_for_alias()
    if version is None:
        raise ConfigError(
            f"no {settings.model_name}@{settings.model_alias} in {settings.shown_tracking_uri()}; "
            "run `churn train` first"
        )
    model = source.load(version)
    challenger, set_alias = bench_challenger(settings, report) if shadow else ("", False)
    if challenger == version:
        raise ConfigError(f"version {version} is both @{settings.model_alias} and @{settings.shadow_alias}")
    report("simulating events")
    run = uuid.uuid4().hex[:6]
    backlog = simulated_messages(events, customers, prefix=f"b{run}")
    paced = simulated_messages(latency_events, max(10, customers // 4), prefix=f"p{run}", seed=4)
    workdir = settings.data_dir.resolve() / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    broker = None
    bootstrap = settings.bootstrap_servers
    per_partition = paced_batches_per_partition(latency_events, settings.topic_partitions, latency_rate)
    hint = ""
    all_cpus = os.sched_getaffinity(0) if own_cpus else None
    if own_cpus:
        os.sched_setaffinity(0, own_cpus)  # the embedded broker, started next, inherits it
    broker_name = bootstrap
    if not bootstrap and engine == "kafka":
        from stream.local.kafka_cluster import KafkaCluster

        report("starting Apache Kafka")
        broker = KafkaCluster(1, log_dir=workdir).start()
        bootstrap = broker.bootstrap
        broker_name = f"kafka {broker.version}"
    elif not bootstrap:
        broker = EmbeddedBroker(free_port(), workdir).start()
        bootstrap = broker.bootstrap
        broker_name = "embedded"
        hint = (
            f" (the embedded broker's fetches slow down as small record batches pile up in a partition; the "
            f"paced phase adds up to {per_partition:,.0f} per partition here: see docs/performance.md)"
        )
        if per_partition > EMBEDDED_PACED_PER_PARTITION:
            log.warning(
                "%s paced events make up to %s small record batches per partition: the embedded "
                "broker's fetches slow down with them, so the latency measured includes the broker's",
                f"{latency_events:,}",
                f"{per_partition:,.0f}",
            )
    try:
        stream = functools.partial(
            run_stream,
            settings,
            bootstrap,
            backlog,
            paced,
            latency_rate,
            workdir,
            report,
            workers,
            broker_pid=broker.pid if broker is not None else None,
            hint=hint,
            worker_cpus=worker_cpus,
            partitioner=partitioner,
        )
        run = stream(backlog_after_start=shadow)  # as the shadow variant's, to compare like with like
        shadow_run = None
        if shadow:
            report(f"stream with version {challenger} in shadow")
            shadow_run = stream(shadow=(settings.shadow_alias, challenger), backlog_after_start=True)
        if all_cpus:
            os.sched_setaffinity(0, all_cpus)  # the other variants run as without --pin
        report("per-row pattern")
        per_row = run_per_row(model, backlog)
        raw, state_sizes = run_raw(settings, bootstrap, backlog, model, settings.score_batch_size, report)
    finally:
        if broker is not None:
            broker.stop()
        if set_alias:
            from training import registry

            registry.connect(settings).delete_registered_model_alias(settings.model_name, settings.shadow_alias)
    stream_entry = _stream_entry(run, settings, workers, worker_cpus, broker_name, partitioner)
    throughput = run.throughput
    variants = {"stream": stream_entry}
    ratios = {}
    if shadow_run is not None:
        variants["stream_shadow"] = {
            **_stream_entry(shadow_run, settings, workers, worker_cpus, broker_name, partitioner),
            "challenger_version": challenger,
            "shadow_scores": shadow_run.shadow_scores,
        }
        ratios = {
            "shadow_over_stream": round(shadow_run.throughput.events_per_s / throughput.events_per_s, 3),
            "shadow_cpu_over_stream": round(shadow_run.cpu_us_per_event / run.cpu_us_per_event, 3),
        }
    doc = {
        "model_version": model.version,
        "events": events,
        "variants": {**variants, "per_row": per_row.as_dict(), "raw": raw.as_dict()},
        "ratios": {
            "stream_over_per_row": round(throughput.events_per_s / per_row.events_per_s, 2),
            "stream_over_raw": round(throughput.events_per_s / raw.events_per_s, 4),
            **ratios,
        },
        "state_bytes": {
            "customers": len(state_sizes),
            "p50": int(np.percentile(state_sizes, 50)) if state_sizes else 0,
            "p99": int(np.percentile(state_sizes, 99)) if state_sizes else 0,
            "max": max(state_sizes, default=0),
        },
        "machine": {"cpus": os.cpu_count()},
    }
    if json_path is not None:
        json_path.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _stream_entry(
    run: StreamRun, settings: Settings, workers: int, worker_cpus: list[str], broker_name: str, partitioner: str
) -> dict:
    """One stream variant's figures and the settings it ran with, as ``--json`` writes them."""
    throughput, latency = run.throughput, run.latency
    return {
        **throughput.as_dict(),
        "p50_ms": latency.as_dict()["p50_ms"],
        "p95_ms": latency.as_dict()["p95_ms"],
        "p99_ms": latency.as_dict()["p99_ms"],
        "latency_rate": round(latency.events / latency.seconds, 1) if latency.seconds else 0,
        "latency_events": latency.events,
        "latency_batches": run.latency_batches,
        "backlog_batches": run.backlog_batches,
        "workers": workers,
        "worker_rss_mb": run.rss_mb,
        "worker_cpu_us_per_event": run.cpu_us_per_event,
        "cpu_us_per_event": run.cpu,
        "broker": broker_name,
        "store": settings.store,
        # On Apache Kafka the worker keeps Faust's own fetch wait (stream.settings: broker_quirks).
        "fetch_max_wait_ms": settings.fetch_max_wait_ms if broker_name == "embedded" else None,
        "batches_in_flight": settings.batches_in_flight,
        "worker_cpus": worker_cpus if any(worker_cpus) else None,
        "partitioner": partitioner,
        "rerouted": run.rerouted,
    }
