"""Topic specs from Settings, and ensure_topics against a scripted admin client."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass, field

import pytest
from confluent_kafka import KafkaError, KafkaException

from stream.errors import BrokerError
from stream.kafka.topics import (
    ALL_TOPICS,
    DAY_MS,
    MISSING,
    RETENTION_MARGIN_DAYS,
    UNSET,
    TopicDifference,
    TopicNames,
    TopicSpec,
    TopicState,
    describe_topics,
    ensure_topics,
    topic_differences,
    topic_specs,
    training_retention_ms,
)
from stream.settings import Settings
from training.config import DEFAULT_CONFIG, load_config

pytestmark = pytest.mark.unit


def test_specs_cover_every_topic_with_prefix_and_shape() -> None:
    settings = Settings(topic_prefix="run7-", topic_partitions=6, topic_replication=3)
    specs = {s.name: s for s in topic_specs(settings)}
    assert list(specs) == [f"run7-{t}" for t in ALL_TOPICS]
    for name in ("account-events", "account-events-dlq", "account-events-repartition", "churn-scores"):
        assert (specs[f"run7-{name}"].partitions, specs[f"run7-{name}"].config) == (6, {})
    retention = {"retention.ms": str(training_retention_ms(settings))}
    for name in ("churn-features", "churn-labels"):
        assert (specs[f"run7-{name}"].partitions, specs[f"run7-{name}"].config) == (6, retention)
    assert specs["run7-drift-alerts"].config == {}
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


# --- retention of the topics retraining reads ------------------------------------------------------


def test_training_retention_is_horizon_plus_window_plus_margin() -> None:
    assert training_retention_ms(Settings()) == round((30 + 60 + RETENTION_MARGIN_DAYS) * DAY_MS)
    assert training_retention_ms(Settings(horizon_days=45)) == round((45 + 60 + RETENTION_MARGIN_DAYS) * DAY_MS)
    assert training_retention_ms(Settings(horizon_days=0.5)) == round((0.5 + 60 + RETENTION_MARGIN_DAYS) * DAY_MS)


def test_training_retention_setting_overrides_the_derivation() -> None:
    assert training_retention_ms(Settings(training_retention_days=365)) == 365 * DAY_MS
    assert training_retention_ms(Settings(training_retention_days=0)) == training_retention_ms(Settings())
    specs = {s.name: s for s in topic_specs(Settings(training_retention_days=1.5))}
    assert specs["churn-labels"].config == {"retention.ms": str(int(1.5 * DAY_MS))}


def test_derived_retention_covers_what_the_default_retraining_config_reads() -> None:
    """A retraining run with the committed config reads one horizon plus its window back from the clock."""
    dataset = load_config(DEFAULT_CONFIG).dataset
    settings = Settings()
    assert settings.horizon_days >= dataset.horizon_days
    assert training_retention_ms(settings) >= (dataset.horizon_days + dataset.window_days) * DAY_MS


def test_the_training_retention_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream.errors import ConfigError
    from stream.settings import load_settings

    monkeypatch.setenv("CHURN_TRAINING_RETENTION_DAYS", "120")
    assert training_retention_ms(load_settings()) == 120 * DAY_MS
    monkeypatch.setenv("CHURN_TRAINING_RETENTION_DAYS", "-1")
    with pytest.raises(ConfigError, match="^invalid setting CHURN_TRAINING_RETENTION_DAYS: .*greater than or equal"):
        load_settings()


# --- the specs against what the broker has ------------------------------------------------------------


WANTED = [
    TopicSpec("f", 4, {"retention.ms": "1000"}),
    TopicSpec("m", 1, {"cleanup.policy": "compact"}),
    TopicSpec("s", 4),
]


def _matching() -> dict[str, TopicState]:
    return {
        "f": TopicState(4, 1, {"retention.ms": "1000", "segment.ms": "5"}),
        "m": TopicState(1, 1, {"cleanup.policy": "compact"}),
        "s": TopicState(4, 1, {"retention.ms": "1"}),  # configs a spec does not set are not compared
    }


def test_no_differences_when_the_broker_matches() -> None:
    assert topic_differences(WANTED, _matching()) == []


def test_each_difference_is_one_entry_with_topic_key_wanted_actual() -> None:
    actual = _matching()
    actual["f"] = TopicState(6, 3, {"retention.ms": "999"})
    actual["m"] = TopicState(1, 1, {"cleanup.policy": "delete"})
    del actual["s"]
    assert topic_differences(WANTED, actual) == [
        TopicDifference("f", "partitions", "4", "6"),
        TopicDifference("f", "replication", "1", "3"),
        TopicDifference("f", "retention.ms", ">= 1000", "999"),
        TopicDifference("m", "cleanup.policy", "compact", "delete"),
        TopicDifference("s", "topic", "exists", MISSING),
    ]


def test_retention_is_a_floor_longer_or_forever_meets_it() -> None:
    for kept in ("1000", "5000", "-1"):
        actual = {**_matching(), "f": TopicState(4, 1, {"retention.ms": kept})}
        assert topic_differences(WANTED, actual) == [], kept


def test_a_config_the_broker_does_not_describe_is_a_difference() -> None:
    actual = {**_matching(), "f": TopicState(4, 1, {})}  # e.g. created without it after the broker refused it
    assert topic_differences(WANTED, actual) == [TopicDifference("f", "retention.ms", ">= 1000", UNSET)]


def test_difference_lines_name_topic_key_wanted_and_actual() -> None:
    week = str(7 * DAY_MS)
    assert TopicDifference("t-churn-labels", "retention.ms", f">= {97 * DAY_MS}", week).line() == (
        f"t-churn-labels retention.ms: wanted >= {97 * DAY_MS} (97 days), actual {week} (7 days)"
    )
    assert TopicDifference("x", "retention.ms", ">= 5", "-1").line().endswith("actual -1 (forever)")
    assert TopicDifference("m", "partitions", "1", "3").line() == "m partitions: wanted 1, actual 3"


def test_specs_of_the_settings_against_a_broker_with_default_retention() -> None:
    """What `churn topics --check` finds on topics created before the training topics had a retention."""
    settings = Settings()
    specs = topic_specs(settings)
    week = {"retention.ms": str(7 * DAY_MS)}
    actual = {s.name: TopicState(s.partitions, s.replication, {**week, **s.config}) for s in specs}
    actual["churn-features"] = TopicState(4, 1, week)
    actual["churn-labels"] = TopicState(4, 1, week)
    differences = topic_differences(specs, actual)
    assert [(d.topic, d.key, d.actual) for d in differences] == [
        ("churn-features", "retention.ms", week["retention.ms"]),
        ("churn-labels", "retention.ms", week["retention.ms"]),
    ]


@dataclass
class FakeEntry:
    value: str | None


@dataclass
class FakePartition:
    replicas: list


@dataclass
class DescribingAdmin:
    """list_topics and describe_configs of a broker holding ``topics``: name -> (partitions, replicas, configs)."""

    topics: dict[str, tuple[int, int, dict[str, str | None]]]

    def list_topics(self, timeout: float) -> FakeMetadata:
        return FakeMetadata(
            {
                n: FakeTopic({p: FakePartition(list(range(r))) for p in range(ps)})
                for n, (ps, r, _) in self.topics.items()
            }
        )

    def describe_configs(self, resources, request_timeout):  # type: ignore[no-untyped-def]
        futures = {}
        for resource in resources:
            future: Future = Future()
            future.set_result({k: FakeEntry(v) for k, v in self.topics[resource.name][2].items()})
            futures[resource] = future
        return futures


def test_describe_topics_reads_partitions_replication_and_configs() -> None:
    admin = DescribingAdmin({"f": (4, 3, {"retention.ms": "1000", "sasl.secret": None}), "other": (1, 1, {})})
    states = describe_topics(admin, ["f", "absent"])  # type: ignore[arg-type]
    assert states == {"f": TopicState(4, 3, {"retention.ms": "1000"})}
    assert topic_differences(WANTED[:1], states) == [TopicDifference("f", "replication", "1", "3")]
