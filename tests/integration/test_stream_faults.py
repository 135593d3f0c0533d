"""The streaming core under faults: a killed worker, a second worker, an absent registry."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from support import (
    TcpRelay,
    TopicReader,
    WorkerProcess,
    consumer_lag,
    free_port,
    lookup,
    metric_sum,
    produce,
    provision,
    simulated,
    wait_caught_up,
    wait_for,
    with_faults,
)
from support.mlflow_server import MlflowServer

from schemas.events import dump_event
from stream.kafka.partitioning import partition_for
from stream.pipeline.features import CustomerState, apply, feature_values

pytestmark = pytest.mark.integration


def distinct_scored(records) -> set[str]:
    return {orjson.loads(r.value)["event_id"] for r in records}


STORES = [
    pytest.param("memory", id="memory"),
    # The RocksDB store on Apache Kafka only: what compose and Kubernetes run.
    pytest.param("rocksdb", id="rocksdb", marks=pytest.mark.tiers("kafka")),
]


def with_store(env: dict[str, str], store: str, data_dir) -> dict[str, str]:
    """``env`` on the given table store; a RocksDB worker keeps its files in ``data_dir``, the registry stays."""
    if store == "memory":
        return env
    from stream.settings import Settings

    registry = Settings(data_dir=env["CHURN_DATA_DIR"]).resolved_tracking_uri()
    return dict(env, CHURN_STORE="rocksdb://", CHURN_DATA_DIR=str(data_dir), CHURN_MLFLOW_TRACKING_URI=registry)


def rocksdb_files(data_dir) -> bool:
    return any(data_dir.rglob("CURRENT"))


def recompute(events) -> dict[str, dict]:
    states: dict[str, CustomerState] = {}
    for e in events:
        apply(states.setdefault(e.customer_id, CustomerState()), e)
    return {c: feature_values(s, s.last_ts) for c, s in states.items()}


@pytest.mark.parametrize("store", STORES)
def test_kill_9_mid_stream_then_restart_leaves_nothing_unscored(stream_env, tmp_path, record_property, store):
    stream_env = with_store(stream_env, store, tmp_path / "worker")
    settings = provision(stream_env)
    bootstrap = settings.resolved_bootstrap()
    events = simulated(20_000, 250, seed=31, prefix="k")
    ids = {e.event_id for e in events}
    scores = TopicReader(bootstrap, settings.topic("churn-scores"))
    # Small batches: many commits to land between, and a worker slow enough to be caught mid-stream.
    env = dict(stream_env, CHURN_SCORE_BATCH_SIZE="100")
    worker = WorkerProcess(env, tmp_path / "first.log").start()
    worker.wait_serving()
    produce(bootstrap, settings.topic("account-events"), [(e.customer_id.encode(), dump_event(e)) for e in events])
    # The worker's own count, not the scores topic: a reader sees scores a fetch later.
    wait_for(
        lambda: metric_sum(worker.metrics(), "churn_events_in_total") >= len(events) // 5,
        120,
        0.05,
        "a fifth of the stream consumed",
    )
    worker.kill9()
    scores.poll(2.0)
    before_kill = len(distinct_scored(scores.records))
    assert 0 < before_kill < len(events), f"{before_kill} scored before the kill; nothing was tested"

    restarted = WorkerProcess(env, tmp_path / "second.log").start()
    try:
        restarted.wait_serving()
        try:
            scores.read_until(lambda r: distinct_scored(r) >= ids, 180, "every event scored after the restart")
        except TimeoutError:
            missing = ids - distinct_scored(scores.records)
            features = TopicReader(bootstrap, settings.topic("churn-features"))
            features.poll(3.0)
            featured = distinct_scored(features.records)
            where = {}
            for r in features.records:
                if orjson.loads(r.value)["event_id"] in missing:
                    where.setdefault(r.partition, []).append(r.offset)
            spans = {p: (min(o), max(o), len(o)) for p, o in where.items()}
            totals = Counter(r.partition for r in features.records)
            lag = consumer_lag(bootstrap, stream_env["CHURN_APP_ID"], settings.topic("account-events"))
            pytest.fail(
                f"{len(missing)} events unscored, {len(missing - featured)} of them without features; "
                f"missing feature offsets by partition {spans}; feature records {dict(totals)}; "
                f"account-events lag {lag}"
            )
        scores.poll(1.0)
        counts = Counter(orjson.loads(r.value)["event_id"] for r in scores.records)
        duplicates = sum(n - 1 for n in counts.values())
        record_property("scored_before_kill", before_kill)
        record_property("duplicate_scores", duplicates)
        print(
            f"{store} store, kill -9 after {before_kill} of {len(events)} scored: "
            f"{duplicates} duplicate scores (at-least-once)"
        )
        assert set(counts) == ids
        if store == "rocksdb":
            assert rocksdb_files(tmp_path / "worker"), "no RocksDB files under the worker's data dir"

        wait_caught_up(bootstrap, stream_env["CHURN_APP_ID"], settings.topic("account-events"))
        expected = recompute(events)
        for customer, values in expected.items():
            got = lookup(restarted.web_port, customer)["features"]
            assert {k: got[k] for k in values} == values, customer
    finally:
        restarted.stop()


@pytest.mark.parametrize("store", STORES)
def test_two_workers_share_partitions_and_take_over(stream_env, tmp_path, store):
    env_b = with_store(dict(stream_env, CHURN_WEB_PORT=str(free_port())), store, tmp_path / "b")
    stream_env = with_store(stream_env, store, tmp_path / "a")
    settings = provision(stream_env)
    bootstrap = settings.resolved_bootstrap()
    events = simulated(12_000, 200, seed=32, prefix="w")
    first_half, second_half = events[:6000], events[6000:]
    # Worker a pauses after each seek to committed offsets, before its recovery resumes
    # the agents' flow: messages fetched in that window used to be dropped.
    a = WorkerProcess(with_faults(stream_env, FAULT_SEEK_PAUSE_S="1.5"), tmp_path / "a.log").start()
    b = WorkerProcess(env_b, tmp_path / "b.log").start()
    scores = TopicReader(bootstrap, settings.topic("churn-scores"))
    try:
        a.wait_serving()
        b.wait_serving()
        assert "fault injected: a 1.5 s pause" in a.log_path.read_text(errors="replace"), "worker a has no fault"

        def both_assigned():
            return all(w.metrics().get("churn_assigned_partitions", 0) > 0 for w in (a, b))

        wait_for(both_assigned, 60, 0.5, "both workers own partitions")
        produce(
            bootstrap, settings.topic("account-events"), [(e.customer_id.encode(), dump_event(e)) for e in first_half]
        )
        scores.read_until(lambda r: distinct_scored(r) >= {e.event_id for e in first_half}, 120, "first half scored")
        processed = [metric_sum(w.metrics(), "churn_events_in_total") for w in (a, b)]
        assert all(n > 0 for n in processed), f"partitions not shared: {processed}"
        assert sum(processed) >= len(first_half)

        b.stop()
        # Producers do not wait for the group: the second half arrives while worker a takes over.
        produce(
            bootstrap, settings.topic("account-events"), [(e.customer_id.encode(), dump_event(e)) for e in second_half]
        )
        wait_for(
            lambda: a.metrics().get("churn_assigned_partitions", 0) == settings.topic_partitions,
            60,
            0.5,
            "the remaining worker owns every partition",
        )
        ids = {e.event_id for e in events}
        try:
            scores.read_until(lambda r: distinct_scored(r) >= ids, 120, "every event scored")
        except TimeoutError:
            missing = ids - distinct_scored(scores.records)
            partitions = settings.topic_partitions
            by_partition = Counter(partition_for(e.customer_id, partitions) for e in events if e.event_id in missing)
            lag = consumer_lag(bootstrap, stream_env["CHURN_APP_ID"], settings.topic("account-events"))
            shown = ("churn_assigned", "churn_events_in", "churn_rebalance")
            counts = {k: v for k, v in a.metrics().items() if k.startswith(shown)}
            log_tail = "\n".join(line[:300] for line in a.log_tail(60).splitlines())
            pytest.fail(
                f"{len(missing)} events unscored after the takeover, by partition {dict(by_partition)}; "
                f"account-events lag {lag}; worker a metrics {counts}\nworker a log:\n{log_tail}"
            )
        # Every offset is committed: no gap left behind stalls a partition's commits.
        wait_caught_up(bootstrap, stream_env["CHURN_APP_ID"], settings.topic("account-events"), timeout=60)
        # The partitions worker a took over carry the state worker b built: features equal a recomputation.
        expected = recompute(events)
        for customer, values in list(expected.items())[:40]:
            got = lookup(a.web_port, customer)["features"]
            assert {k: got[k] for k in values} == values, customer
        if store == "rocksdb":
            assert rocksdb_files(tmp_path / "a") and rocksdb_files(tmp_path / "b"), "a worker wrote no RocksDB files"
    finally:
        a.stop()
        b.stop()


@pytest.mark.tiers("kafka")  # the registry's absence and loss, on any broker
def test_worker_waits_for_the_registry_then_survives_its_loss(stream_env, registry_dir, tmp_path):
    """The worker's registry address refuses connections, then answers, then refuses again.

    The MLflow server (a minute to import on a loaded machine) starts at once on a port of its
    own; the worker's address is a relay that appears and vanishes in an instant."""
    settings = provision(stream_env)
    bootstrap = settings.resolved_bootstrap()
    port = free_port()
    env = dict(stream_env, CHURN_MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}", CHURN_REGISTRY_RETRY_S="1")
    events = simulated(2_000, 60, seed=33, prefix="r")
    server = MlflowServer(tmp_path / "mlflow", f"sqlite:///{registry_dir / 'mlflow.db'}").start()
    server_port = server.port
    relay = TcpRelay(port, ("127.0.0.1", server_port))
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        wait_for(
            lambda: "no servable model yet" in worker.log_path.read_text(errors="replace"),
            90,
            0.5,
            "a clear log line about the unreachable registry",
        )
        assert worker.metrics().get("churn_model_version", 0) == 0
        produce(bootstrap, settings.topic("account-events"), [(e.customer_id.encode(), dump_event(e)) for e in events])

        wait_for(
            server.answers,
            240,
            1.0,
            "the MLflow server's /health",
        )
        assert worker.metrics().get("churn_model_version", 0) == 0
        relay.start()  # the registry appears at the worker's address
        worker.wait_serving(timeout=120)
        scores = TopicReader(bootstrap, settings.topic("churn-scores"))
        scores.read_until(lambda r: distinct_scored(r) >= {e.event_id for e in events}, 120, "scored once it answers")

        relay.close()  # and vanishes
        more = simulated(3_000, 60, seed=34, prefix="r2")
        produce(bootstrap, settings.topic("account-events"), [(e.customer_id.encode(), dump_event(e)) for e in more])
        scores.read_until(
            lambda r: distinct_scored(r) >= {e.event_id for e in more}, 120, "scoring carries on without the registry"
        )
        assert worker.proc.poll() is None
    finally:
        relay.close()
        server.stop()
        worker.stop()
