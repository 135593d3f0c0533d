"""Apache Kafka brokers fail under a running stream: nothing is lost, every state stays right.

On the three-node cluster (replication 3, ``min.insync.replicas`` 2; the worker's outputs
and changelogs go out with ``acks=all`` and idempotence): the leader of the input
partitions and the leader of a changelog partition are killed with SIGKILL mid-stream and
restarted later; all three brokers are restarted one after the other while events flow.
On one node: the broker is killed and restarted on its data directory. Each test accounts
exactly: every input event is scored at least once and none is missing, the duplicates
are counted and reported, and every customer's table state equals a recomputation from
the input.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict

import orjson
import pytest
from support import (
    TopicReader,
    WorkerProcess,
    isolated_env,
    lookup,
    metric_sum,
    produce,
    provision,
    simulated,
    wait_caught_up,
    wait_for,
)

from schemas.events import dump_event
from stream.pipeline.features import CustomerState, apply, feature_values

# Clusters of its own: beside the embedded tier, whose process has less to do (tests/conftest.py).
pytestmark = [pytest.mark.integration, pytest.mark.broker_faults, pytest.mark.xdist_group("embedded")]


@pytest.fixture
def trio_env(kafka_trio, registry_dir, tmp_path):
    return isolated_env(
        kafka_trio.bootstrap,
        registry_dir,
        "faults",
        CHURN_TOPIC_REPLICATION="3",
        CHURN_SCORE_BATCH_MS="20",
        CHURN_SCORE_BATCH_SIZE="200",
        CHURN_SILENCE_DAYS="0",
    )


def scored_ids(records) -> Counter:
    return Counter(orjson.loads(r.value)["event_id"] for r in records)


def account(events, scores: TopicReader, worker: WorkerProcess, env: dict[str, str], record_property, what: str):
    """Every event scored, none missing; duplicates reported; each customer's table state recomputed."""
    ids = {e.event_id for e in events}
    scores.read_until(lambda r: set(scored_ids(r)) >= ids, 240, f"every event scored ({what})")
    scores.poll(1.0)
    counts = scored_ids(scores.records)
    missing = ids - set(counts)
    duplicates = sum(n - 1 for n in counts.values())
    record_property("duplicate_scores", duplicates)
    print(f"{what}: {len(ids)} events, {len(missing)} missing, {duplicates} duplicate scores")
    assert not missing
    bootstrap = env["CHURN_BOOTSTRAP_SERVERS"]
    wait_caught_up(bootstrap, env["CHURN_APP_ID"], env["CHURN_TOPIC_PREFIX"] + "account-events")
    states: dict[str, CustomerState] = defaultdict(CustomerState)
    for e in events:
        apply(states[e.customer_id], e)
    wrong = []
    for customer, state in states.items():
        want = feature_values(state, state.last_ts)
        got = lookup(worker.web_port, customer)["features"]
        if {k: got[k] for k in want} != want:
            wrong.append(customer)
    assert not wrong, f"{len(wrong)} of {len(states)} customers' states differ from a recomputation"
    return duplicates


def progress(worker: WorkerProcess) -> float:
    return metric_sum(worker.metrics(), "churn_events_in_total")


def test_kill_9_of_the_input_leader_mid_stream_then_its_restart(kafka_trio, trio_env, tmp_path, record_property):
    settings = provision(trio_env)
    topic = settings.topic("account-events")
    events = simulated(16_000, 250, seed=71, prefix="lead")
    scores = TopicReader(kafka_trio.bootstrap, settings.topic("churn-scores"))
    worker = WorkerProcess(trio_env, tmp_path / "worker.log").start()
    try:
        worker.wait_serving()
        produce(kafka_trio.bootstrap, topic, [(e.customer_id.encode(), dump_event(e)) for e in events[:8000]])
        wait_for(lambda: progress(worker) >= 2000, 120, 0.05, "a quarter of the first half consumed")
        victim = kafka_trio.leader_of(topic, 0)
        assert victim is not None
        kafka_trio.kill9(victim)
        # Producers go on while the broker is down: acks=all still has two replicas in sync.
        produce(kafka_trio.bootstrap, topic, [(e.customer_id.encode(), dump_event(e)) for e in events[8000:]])
        wait_for(lambda: progress(worker) >= 12_000, 180, 0.2, "the stream going on without the broker")
        kafka_trio.start_node(victim)
        account(events, scores, worker, trio_env, record_property, f"input leader (node {victim}) killed")
        assert worker.proc.poll() is None
    finally:
        worker.stop()


def test_kill_9_of_a_changelog_leader_while_batches_commit(kafka_trio, trio_env, tmp_path, record_property):
    settings = provision(trio_env)
    topic = settings.topic("account-events")
    events = simulated(16_000, 250, seed=72, prefix="clog")
    scores = TopicReader(kafka_trio.bootstrap, settings.topic("churn-scores"))
    worker = WorkerProcess(trio_env, tmp_path / "worker.log").start()
    try:
        worker.wait_serving()
        changelog = f"{trio_env['CHURN_APP_ID']}-customer-state-changelog"
        produce(kafka_trio.bootstrap, topic, [(e.customer_id.encode(), dump_event(e)) for e in events])
        # Mid-stream, every batch writes changelog records and waits for them: kill the leader then.
        wait_for(lambda: progress(worker) >= 4000, 120, 0.05, "a quarter of the stream consumed")
        victim = kafka_trio.leader_of(changelog, 0)
        assert victim is not None, f"{changelog} has no leader"
        kafka_trio.kill9(victim)
        wait_for(lambda: progress(worker) >= 10_000, 180, 0.2, "the stream going on without the broker")
        kafka_trio.start_node(victim)
        account(events, scores, worker, trio_env, record_property, f"changelog leader (node {victim}) killed")
    finally:
        worker.stop()


def test_a_rolling_restart_of_all_three_brokers_while_the_stream_runs(kafka_trio, trio_env, tmp_path, record_property):
    settings = provision(trio_env)
    topic = settings.topic("account-events")
    events = simulated(18_000, 250, seed=73, prefix="roll")
    scores = TopicReader(kafka_trio.bootstrap, settings.topic("churn-scores"))
    worker = WorkerProcess(trio_env, tmp_path / "worker.log").start()
    sent = threading.Event()
    failure: list[BaseException] = []

    def paced_producer() -> None:
        try:
            for i in range(0, len(events), 500):  # a slice every 0.25 s: the stream runs through the restarts
                # A slice produced while a broker restarts waits for the new leaders' elections.
                produce(
                    kafka_trio.bootstrap,
                    topic,
                    [(e.customer_id.encode(), dump_event(e)) for e in events[i : i + 500]],
                    flush_s=180,
                )
                time.sleep(0.25)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failure.append(exc)
        finally:
            sent.set()

    try:
        worker.wait_serving()
        thread = threading.Thread(target=paced_producer, daemon=True)
        thread.start()
        for node in range(3):
            wait_for(lambda: progress(worker) >= 1000 * (node + 1), 120, 0.1, "the stream moving")
            kafka_trio.stop_node(node)
            kafka_trio.start_node(node)
            kafka_trio.wait_ready(60)
        wait_for(sent.is_set, 300, 0.5, "every event sent")
        assert not failure, f"producing failed: {failure[0]!r}"
        account(events, scores, worker, trio_env, record_property, "rolling restart of three brokers")
    finally:
        worker.stop()


def test_a_single_broker_restarted_on_its_data_dir(registry_dir, tmp_path, record_property):
    from support.tiers import TRIO, missing_tier

    from stream.errors import BrokerError
    from stream.local.kafka_cluster import QUICK_START_JVM_OPTS, KafkaCluster

    cluster = KafkaCluster(
        1, data_dir=tmp_path / "kafka-data", log_dir=tmp_path / "kafka-logs", jvm_opts=QUICK_START_JVM_OPTS
    )
    try:
        cluster.start()
    except BrokerError as exc:
        missing_tier(TRIO, str(exc))
    worker = None
    try:
        env = isolated_env(
            cluster.bootstrap, registry_dir, "restart", CHURN_SCORE_BATCH_MS="20", CHURN_SILENCE_DAYS="0"
        )
        settings = provision(env)
        topic = settings.topic("account-events")
        events = simulated(10_000, 200, seed=74, prefix="one")
        scores = TopicReader(cluster.bootstrap, settings.topic("churn-scores"))
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        worker.wait_serving()
        produce(cluster.bootstrap, topic, [(e.customer_id.encode(), dump_event(e)) for e in events[:5000]])
        wait_for(lambda: progress(worker) >= 5000, 120, 0.1, "the first half consumed")
        cluster.kill9(0)
        cluster.start_node(0)
        cluster.wait_ready(60)
        produce(cluster.bootstrap, topic, [(e.customer_id.encode(), dump_event(e)) for e in events[5000:]])
        scores.close()
        scores = TopicReader(cluster.bootstrap, settings.topic("churn-scores"))
        account(events, scores, worker, env, record_property, "single broker restarted on its data dir")
        assert worker.proc.poll() is None
    finally:
        if worker is not None:
            worker.stop()
        cluster.stop()
