"""The broker fixture, topic provisioning and the publisher on a real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, ConfigResource
from support import TopicReader, simulated, wait_for
from support.events import sample_events

from producers.publisher import Publisher
from schemas.events import dump_event
from stream.kafka.config import confluent_config
from stream.kafka.partitioning import partition_for
from stream.kafka.topics import (
    ACCOUNT_EVENTS,
    ALL_TOPICS,
    DRIFT_ALERTS,
    MODEL_EVENTS,
    TopicNames,
    ensure_topics,
    topic_specs,
)
from stream.settings import Settings

pytestmark = pytest.mark.integration


def consumer_for(settings: Settings, topic: str) -> Consumer:
    consumer = Consumer(
        {
            **confluent_config(settings),
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    return consumer


def read_all(consumer: Consumer, count: int, timeout: float) -> list:
    """Consume until ``count`` messages arrived (fails after ``timeout`` seconds)."""
    messages: list = []

    def enough() -> bool:
        for msg in consumer.consume(1000, 0.2):
            assert msg.error() is None, msg.error()
            messages.append(msg)
        return len(messages) >= count

    wait_for(enough, timeout, interval=0.0, what=f"{count} messages")
    return messages


def test_broker_answers_metadata(kafka_bootstrap: str) -> None:
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=5)
    assert metadata.brokers


def test_ensure_topics_is_idempotent_and_shapes_topics(kafka_settings: Settings) -> None:
    config = confluent_config(kafka_settings)
    specs = topic_specs(kafka_settings)
    ensure_topics(config, specs[:2])  # a previous partial run
    created = ensure_topics(config, specs)
    assert sorted(created) == sorted(kafka_settings.topic(t) for t in ALL_TOPICS[2:])
    assert ensure_topics(config, specs) == []

    admin = AdminClient(config)
    topics = admin.list_topics(timeout=5).topics
    partitions = {name: len(topics[name].partitions) for name in (s.name for s in specs)}
    names = TopicNames.from_settings(kafka_settings)
    assert partitions[names.account_events] == kafka_settings.topic_partitions
    assert partitions[kafka_settings.topic(DRIFT_ALERTS)] == 1
    assert partitions[kafka_settings.topic(MODEL_EVENTS)] == 1
    resource = ConfigResource(ConfigResource.Type.TOPIC, names.model_events)
    described = admin.describe_configs([resource])[resource].result(timeout=10)
    assert described["cleanup.policy"].value == "compact"


def test_publish_and_consume_back_on_murmur2_partitions(kafka_settings: Settings) -> None:
    ensure_topics(confluent_config(kafka_settings), topic_specs(kafka_settings))
    topic = TopicNames.from_settings(kafka_settings).account_events
    partitions = kafka_settings.topic_partitions
    events = sample_events(2000, customers=300, seed=3)
    valid_obj = {
        "event_type": "usage",
        "event_id": "from-dict",
        "customer_id": "cust-dict",
        "ts": "2026-02-01T00:00:00Z",
        "amount": 2.0,
    }
    invalid_objs = [
        {**valid_obj, "event_id": "bad-1", "amount": -5},
        {**valid_obj, "event_id": "bad-2", "surprise": True},
        {**valid_obj, "event_id": "bad-3", "ts": "2026-02-01T00:00:00"},
    ]

    publisher = Publisher.from_settings(kafka_settings)
    for event in events:
        publisher.publish(event)
    assert publisher.publish_obj(valid_obj)
    assert [publisher.publish_obj(obj) for obj in invalid_objs] == [False, False, False]
    summary = publisher.flush(30)

    assert (summary.sent, summary.delivered, summary.failed, summary.invalid) == (2001, 2001, 0, 3)
    assert summary.pending == 0
    assert len(summary.errors) == 3 and "amount" in summary.errors[0] and "surprise" in summary.errors[1]

    consumer = consumer_for(kafka_settings, topic)
    try:
        messages = read_all(consumer, 2001, timeout=30)
    finally:
        consumer.close()
    assert len(messages) == 2001  # nothing more: the invalid dicts were never sent

    published_order: dict[str, list[str]] = defaultdict(list)
    for event in events:
        published_order[event.customer_id].append(event.event_id)
    published_order["cust-dict"].append("from-dict")

    consumed_order: dict[str, list[str]] = defaultdict(list)
    for msg in messages:
        key = msg.key().decode()
        value = orjson.loads(msg.value())
        assert value["customer_id"] == key
        assert msg.partition() == partition_for(key, partitions), key
        consumed_order[key].append(value["event_id"])
    # Every event arrived exactly once, in publish order per customer.
    assert consumed_order == published_order


def test_publish_raw_keeps_bytes_and_headers_and_rate_limits(kafka_settings: Settings) -> None:
    ensure_topics(confluent_config(kafka_settings), topic_specs(kafka_settings))
    topic = TopicNames.from_settings(kafka_settings).account_events
    publisher = Publisher.from_settings(kafka_settings, rate=200)
    started = time.monotonic()
    publisher.publish_raw(b"cust-x", b"\xff not json", headers=[("origin", b"test")])
    publisher.publish_raw(None, b"{}")
    for i in range(58):
        publisher.publish_raw(f"cust-{i}", b"{}")
    elapsed = time.monotonic() - started
    summary = publisher.flush(10)
    assert summary.ok and summary.delivered == 60
    assert elapsed >= (60 - 20) / 200 * 0.9  # burst of 20, then 200/s

    consumer = consumer_for(kafka_settings, topic)
    try:
        messages = read_all(consumer, 60, timeout=30)
    finally:
        consumer.close()
    raw = next(m for m in messages if m.key() == b"cust-x")
    assert raw.value() == b"\xff not json"
    assert raw.headers() == [("origin", b"test")]


def _churn(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")}
    env.update(
        CHURN_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        CHURN_TOPIC_PREFIX=settings.topic_prefix,
        CHURN_DATA_DIR=str(settings.data_dir),
    )
    return subprocess.run(
        [str(Path(sys.executable).parent / "churn"), *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_produce_from_a_file_reports_each_bad_row_by_number_and_sends_the_good_ones(
    kafka_settings: Settings, tmp_path
) -> None:
    ensure_topics(confluent_config(kafka_settings), topic_specs(kafka_settings))
    good = [orjson.loads(dump_event(e)) for e in simulated(8, 4, seed=3, prefix="file")]
    lines = [orjson.dumps(g).decode() for g in good]
    lines.insert(2, '{"event_type": "usage", "event_id": "x"')  # line 3: not JSON
    lines.insert(
        5, orjson.dumps({**good[0], "event_id": "bad-amount", "event_type": "payment", "amount": -3}).decode()
    )  # line 6: invalid
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")

    proc = _churn(kafka_settings, "produce", "--from", str(path))
    assert proc.returncode == 1, proc.stderr
    assert f"{path} row 3:" in proc.stderr and f"{path} row 6:" in proc.stderr and "amount" in proc.stderr
    assert "2 invalid rows were not sent" in proc.stderr and "--allow-invalid" in proc.stderr
    assert "sent 8, delivered 8, failed 0, invalid (not sent) 2" in proc.stdout

    assert _churn(kafka_settings, "produce", "--from", str(path), "--allow-invalid").returncode == 0
    reader = TopicReader(kafka_settings.bootstrap_servers, kafka_settings.topic(ACCOUNT_EVENTS))
    reader.read_until(lambda r: len(r) >= 16, 30, "both runs' good rows")
    assert sorted(orjson.loads(r.value)["event_id"] for r in reader.records) == sorted(
        2 * [g["event_id"] for g in good]
    )

    path.write_text("\n".join(lines[2:3] + lines[5:6]) + "\n")  # nothing valid at all
    proc = _churn(kafka_settings, "produce", "--from", str(path))
    assert proc.returncode == 1 and "sent 0," in proc.stdout
