"""Topic specs from Settings, and ensure_topics against a scripted admin client."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass, field

import pytest
from confluent_kafka import KafkaError, KafkaException

from stream.errors import BrokerError
from stream.kafka.topics import ALL_TOPICS, TopicNames, TopicSpec, ensure_topics, topic_specs
from stream.settings import Settings

pytestmark = pytest.mark.unit


def test_specs_cover_every_topic_with_prefix_and_shape() -> None:
    settings = Settings(topic_prefix="run7-", topic_partitions=6, topic_replication=3)
    specs = {s.name: s for s in topic_specs(settings)}
    assert list(specs) == [f"run7-{t}" for t in ALL_TOPICS]
    for name in ("account-events", "account-events-dlq", "churn-features", "churn-scores", "churn-labels"):
        assert (specs[f"run7-{name}"].partitions, specs[f"run7-{name}"].config) == (6, {})
    assert specs["run7-drift-alerts"].partitions == 1
    assert specs["run7-model-events"].partitions == 1
    assert specs["run7-model-events"].config == {"cleanup.policy": "compact"}
    assert {s.replication for s in specs.values()} == {3}
    assert TopicNames.from_settings(settings).model_events == "run7-model-events"


@dataclass
class FakeTopic:
    partitions: dict
    error: object = None


@dataclass
class FakeMetadata:
    topics: dict


@dataclass
class FakeAdmin:
    """Topics appear in metadata when created; configs in ``reject`` are refused."""

    existing: dict[str, int] = field(default_factory=dict)
    reject_config: KafkaError | None = None
    fail: dict[str, KafkaError] = field(default_factory=dict)
    calls: list = field(default_factory=list)

    def list_topics(self, timeout: float) -> FakeMetadata:
        return FakeMetadata({n: FakeTopic(dict.fromkeys(range(p))) for n, p in self.existing.items()})

    def create_topics(self, new_topics, operation_timeout, request_timeout):  # type: ignore[no-untyped-def]
        futures = {}
        for topic in new_topics:
            self.calls.append((topic.topic, dict(topic.config)))
            future: Future = Future()
            if topic.topic in self.fail:
                future.set_exception(KafkaException(self.fail[topic.topic]))
            elif topic.config and self.reject_config is not None:
                future.set_exception(KafkaException(self.reject_config))
            elif topic.topic in self.existing:
                future.set_exception(KafkaException(KafkaError(KafkaError.TOPIC_ALREADY_EXISTS)))
            else:
                self.existing[topic.topic] = topic.num_partitions
                future.set_result(None)
            futures[topic.topic] = future
        return futures


SPECS = [TopicSpec("a", 4), TopicSpec("m", 1, {"cleanup.policy": "compact"})]


def test_creates_missing_only() -> None:
    admin = FakeAdmin(existing={"a": 4})
    assert ensure_topics(admin, SPECS, timeout=1) == ["m"]  # type: ignore[arg-type]
    assert admin.calls == [("m", {"cleanup.policy": "compact"})]
    assert ensure_topics(admin, SPECS, timeout=1) == []  # type: ignore[arg-type]


def test_rejected_config_degrades_to_a_plain_topic_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    admin = FakeAdmin(reject_config=KafkaError(KafkaError.INVALID_CONFIG, "no compaction here"))
    with caplog.at_level(logging.WARNING, logger="stream.kafka.topics"):
        assert sorted(ensure_topics(admin, SPECS, timeout=1)) == ["a", "m"]  # type: ignore[arg-type]
    assert ("m", {}) in admin.calls
    assert "rejected config {'cleanup.policy': 'compact'} of topic m" in caplog.text


def test_real_failure_raises_broker_error() -> None:
    admin = FakeAdmin(fail={"a": KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied")})
    with pytest.raises(BrokerError, match="a: denied"):
        ensure_topics(admin, SPECS, timeout=1)  # type: ignore[arg-type]


def test_partition_mismatch_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    admin = FakeAdmin(existing={"a": 2, "m": 1})
    with caplog.at_level(logging.WARNING, logger="stream.kafka.topics"):
        assert ensure_topics(admin, SPECS, timeout=1) == []  # type: ignore[arg-type]
    assert "topic a has 2 partitions, expected 4" in caplog.text


def test_topic_that_never_shows_up_times_out() -> None:
    class Invisible(FakeAdmin):
        def list_topics(self, timeout: float) -> FakeMetadata:
            return FakeMetadata({})

    with pytest.raises(BrokerError, match="did not appear"):
        ensure_topics(Invisible(), SPECS, timeout=0.3)  # type: ignore[arg-type]
