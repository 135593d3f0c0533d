"""Apache Kafka from Maven Central, started by stream/local/kafka_cluster.py: one node and three.

One node, on the pinned version and on the newest 4.x line (Kafka 4 removed old protocol
versions, KIP-896): a librdkafka producer with lz4 and an aiokafka consumer agree on 100
keyed records; an aiokafka group consumer (what Faust does: join, fetch, commit) resumes
from its commit; the Java console producer from the same jars writes lines a librdkafka
consumer reads; a cluster started again on the same data dir still has its records.

Three nodes: topics get 3 replicas by default; ``kill -9`` of a partition leader elects
a new one, ``acks=all`` produce still succeeds with 2 in sync, and the restarted node
rejoins the ISR; a graceful stop of a leader hands leadership over before the node exits.
Every wait is on a condition with a deadline, never a fixed sleep.

Without Java or Maven the tests are skipped with the reason, or fail when ``CI=true``.
``CHURN_TEST_KAFKA_4X`` names the 4.x versions of the one-node tests (comma-separated;
default 4.4.0, the newest Maven Central serves as of 2026-12); ``CHURN_TEST_KAFKA_TRIO``
the version of the three-node tests (default: the pinned one).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from support import wait_for

from stream.errors import BrokerError
from stream.local.kafka_cluster import (
    CONSOLE_PRODUCER,
    DEFAULT_KAFKA_VERSION,
    QUICK_START_JVM_OPTS,
    KafkaCluster,
    ensure_kafka_jars,
    find_java,
)

# Clusters of its own: beside the embedded tier, whose process has less to do (tests/conftest.py).
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("embedded")]

KAFKA_4X = [v.strip() for v in os.environ.get("CHURN_TEST_KAFKA_4X", "4.4.0").split(",") if v.strip()]
VERSIONS = [DEFAULT_KAFKA_VERSION, *KAFKA_4X]
TRIO_VERSION = os.environ.get("CHURN_TEST_KAFKA_TRIO", DEFAULT_KAFKA_VERSION)
RECORDS = 100
CLIENT_LOG = logging.getLogger("librdkafka")


def _require_kafka(version: str) -> None:
    """Skip (fail under CI) when Java or Maven is missing; any other failure is a test failure."""
    try:
        find_java()
    except BrokerError as exc:
        _missing_tool(exc)
    try:
        ensure_kafka_jars(version)
    except BrokerError as exc:
        if shutil.which("mvn") is None:  # only needed while the jars are not fetched yet
            _missing_tool(exc)
        raise


def _missing_tool(exc: BrokerError) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(str(exc), pytrace=False)
    pytest.skip(str(exc))


def _start(cluster: KafkaCluster) -> KafkaCluster:
    cluster.start()
    print(f"{cluster!r} started in {cluster.startup_seconds:.1f}s")  # noqa: T201 - the measurement, with -rA
    return cluster


@pytest.fixture(scope="module", params=VERSIONS)
def single(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """One node of each version under test, on a data dir that outlives it (restart test)."""
    version = request.param
    _require_kafka(version)
    home = tmp_path_factory.mktemp(f"kafka-{version}")
    cluster = KafkaCluster(1, version=version, data_dir=home / "data", log_dir=home / "logs",
                           jvm_opts=QUICK_START_JVM_OPTS)  # fmt: skip
    with _start(cluster):
        yield cluster


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three nodes of the pinned version (or ``CHURN_TEST_KAFKA_TRIO``) on a temporary data dir."""
    _require_kafka(TRIO_VERSION)
    cluster = KafkaCluster(3, version=TRIO_VERSION, log_dir=tmp_path_factory.mktemp("kafka-trio-logs"),
                           jvm_opts=QUICK_START_JVM_OPTS)  # fmt: skip
    with _start(cluster):
        yield cluster


def _topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _create_topic(bootstrap: str, name: str, partitions: int, replication: int = -1) -> None:
    """Create ``name`` (replication -1: the broker's default) and wait until its metadata shows leaders."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=replication)])
    futures[name].result(timeout=30)

    def has_leaders() -> bool:
        topic = admin.list_topics(topic=name, timeout=5).topics.get(name)
        return bool(topic and topic.error is None and len(topic.partitions) == partitions
                    and all(p.leader >= 0 for p in topic.partitions.values()))  # fmt: skip

    wait_for(has_leaders, timeout=30, what=f"leaders for {name}")


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], **config: object) -> None:
    """Produce ``records`` and flush; fail on any delivery error."""
    errors: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(err)

    # librdkafka's lines (refused connections to a killed node) go to logging, not stderr.
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "logger": CLIENT_LOG, **config})
    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} records not delivered within 30s"
    assert not errors, errors


def _keyed(n: int, tag: str) -> list[tuple[bytes, bytes]]:
    return [(f"customer-{i % 17}".encode(), f"{tag}-{i}".encode()) for i in range(n)]


def _consume_confluent(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "logger": CLIENT_LOG,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            values.append(msg.value())
    finally:
        consumer.close()
    return values


async def _consume_aiokafka(
    bootstrap: str, topic: str, partitions: int, count: int, timeout: float = 30.0
) -> list[bytes]:
    """Read ``count`` records from ``topic``'s partitions with an assigned (group-less) aiokafka consumer."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        return await _drain(consumer, count, timeout)
    finally:
        await consumer.stop()


async def _drain(consumer: AIOKafkaConsumer, count: int, timeout: float) -> list[bytes]:
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(values) < count and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        values.extend(record.value for records in batches.values() for record in records)
    return values


# --- one node ---------------------------------------------------------------------------------


async def test_lz4_from_librdkafka_reads_back_in_aiokafka(single: KafkaCluster) -> None:
    topic = _topic("lz4")
    _create_topic(single.bootstrap, topic, partitions=3)
    records = _keyed(RECORDS, "lz4")
    _produce(single.bootstrap, topic, records, **{"compression.type": "lz4", "acks": "all"})

    values = await _consume_aiokafka(single.bootstrap, topic, 3, RECORDS)

    assert sorted(values) == sorted(value for _, value in records)


async def test_aiokafka_group_consumer_commits_and_resumes(single: KafkaCluster) -> None:
    """What a Faust worker does: join a group, fetch, commit; a new member resumes after the commit."""
    topic, group = _topic("group"), f"churn-test-{uuid.uuid4().hex[:8]}"
    _create_topic(single.bootstrap, topic, partitions=2)
    _produce(single.bootstrap, topic, _keyed(RECORDS, "first"))

    async def member() -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=single.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            rebalance_timeout_ms=3_000,
        )
        await consumer.start()
        consumer.subscribe([topic])
        return consumer

    consumer = await member()
    try:
        joined = time.monotonic()
        first = await _drain(consumer, RECORDS, timeout=30)
        print(f"group joined and drained {len(first)} records in {time.monotonic() - joined:.1f}s")  # noqa: T201
        await consumer.commit()
        committed = {tp.partition: await consumer.committed(tp) for tp in consumer.assignment()}
    finally:
        await consumer.stop()
    assert len(first) == RECORDS
    assert sum(committed.values()) == RECORDS, committed

    _produce(single.bootstrap, topic, _keyed(10, "second"))
    consumer = await member()
    try:
        second = await _drain(consumer, 10, timeout=30)
        more = await _drain(consumer, 1, timeout=1)
    finally:
        await consumer.stop()
    assert sorted(second) == sorted(v for _, v in _keyed(10, "second")), "resumed from the commit"
    assert more == []


def test_java_console_producer_reads_back_in_librdkafka(single: KafkaCluster) -> None:
    topic = _topic("console")
    _create_topic(single.bootstrap, topic, partitions=1)
    lines = ["one", "two", "three"]

    result = single.run_tool(
        CONSOLE_PRODUCER,
        ["--bootstrap-server", single.bootstrap, "--topic", topic],
        input="\n".join(lines) + "\n",
        timeout=60,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert _consume_confluent(single.bootstrap, topic, len(lines)) == [line.encode() for line in lines]


def test_records_survive_a_restart_on_the_same_data_dir(single: KafkaCluster, tmp_path: Path) -> None:
    topic = _topic("durable")
    _create_topic(single.bootstrap, topic, partitions=2)
    records = _keyed(50, "durable")
    _produce(single.bootstrap, topic, records, acks="all")
    cluster_id = single.cluster_id
    single.stop()
    try:
        # A new launcher on the same folder: new ports, no new format, the same cluster.
        again = KafkaCluster(1, version=single.version, data_dir=single.data_dir, log_dir=tmp_path,
                             jvm_opts=QUICK_START_JVM_OPTS)  # fmt: skip
        with _start(again):
            assert again.cluster_id == cluster_id
            values = _consume_confluent(again.bootstrap, topic, len(records))
    finally:
        single.start()  # the module's node again, for any test after this one
    assert sorted(values) == sorted(value for _, value in records)


# --- three nodes ------------------------------------------------------------------------------


def test_three_nodes_replicate_by_default(trio: KafkaCluster) -> None:
    topic = _topic("default-rf")
    _create_topic(trio.bootstrap, topic, partitions=2)  # no replication factor: the broker's default

    # The metadata a node answers with can trail the controller's for a moment after the creation.
    wait_for(lambda: all(len(trio.isr_of(topic, p)) == 3 for p in range(2)), timeout=30, what="three in-sync replicas")


def test_kill9_of_a_leader_elects_another_and_the_node_rejoins(trio: KafkaCluster) -> None:
    topic = _topic("failover")
    _create_topic(trio.bootstrap, topic, partitions=3, replication=3)
    wait_for(lambda: trio.isr_of(topic, 0) == [0, 1, 2], timeout=30, what="full ISR")
    _produce(trio.bootstrap, topic, _keyed(30, "before"), acks="all")
    victim = trio.leader_of(topic, 0)
    assert victim is not None

    killed = time.monotonic()
    trio.kill9(victim)

    def another_leader() -> list[int]:  # a list: node index 0 is falsy
        leader = trio.leader_of(topic, 0)
        return [] if leader in (None, victim) else [leader]

    [new_leader] = wait_for(another_leader, timeout=30, interval=0.1, what=f"a new leader after killing node {victim}")
    elected = time.monotonic() - killed
    alive = ",".join(trio.node_bootstrap(i) for i in range(trio.nodes) if i != victim)
    _produce(alive, topic, _keyed(30, "after"), acks="all", **{"message.timeout.ms": 30_000})
    print(f"node {victim} killed: node {new_leader} leads after {elected:.1f}s")  # noqa: T201

    restarted = time.monotonic()
    trio.start_node(victim)
    wait_for(lambda: trio.isr_of(topic, 0) == [0, 1, 2], timeout=60, interval=0.2, what=f"node {victim} in the ISR")
    print(f"node {victim} back in the ISR {time.monotonic() - restarted:.1f}s after start_node")  # noqa: T201
    assert trio.node_pids[victim] is not None
    assert len(_consume_confluent(trio.bootstrap, topic, 60)) == 60


def test_graceful_stop_of_a_leader_hands_leadership_over_before_it_exits(trio: KafkaCluster) -> None:
    topic = _topic("graceful")
    _create_topic(trio.bootstrap, topic, partitions=1, replication=3)
    wait_for(lambda: trio.isr_of(topic, 0) == [0, 1, 2], timeout=30, what="full ISR")
    leader = trio.leader_of(topic, 0)
    assert leader is not None

    stopping = time.monotonic()
    trio.stop_node(leader)
    stopped = time.monotonic() - stopping
    # Controlled shutdown: another node leads as soon as the stopped one is gone, no session timeout.
    [after] = wait_for(lambda: [trio.leader_of(topic, 0)] if trio.leader_of(topic, 0) is not None else [],
                       timeout=3, interval=0.1, what="a leader")  # fmt: skip
    print(f"node {leader} stopped gracefully in {stopped:.1f}s; node {after} leads")  # noqa: T201
    assert after != leader
    assert trio.node_pids[leader] is None

    trio.start_node(leader)
    wait_for(lambda: trio.isr_of(topic, 0) == [0, 1, 2], timeout=60, what=f"node {leader} in the ISR")
