"""Topic configs on a real broker: the training topics' retention, and ``churn topics --check``.

Runs on both tiers: the embedded broker (Tansu) describes the configs a topic was created
with (not the broker defaults, as Apache Kafka does) and takes ``incremental_alter_configs``,
which is all this test needs.
"""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from typer.testing import CliRunner

from stream.cli.commands import app
from stream.kafka.config import confluent_config
from stream.kafka.topics import CHURN_FEATURES, CHURN_LABELS, DAY_MS, MODEL_EVENTS, training_retention_ms
from stream.settings import RETRAIN_WINDOW_DAYS, Settings

pytestmark = pytest.mark.integration

WEEK_MS = str(7 * DAY_MS)  # the broker's default retention


def churn(settings: Settings, *args: str):  # type: ignore[no-untyped-def]
    env = {
        "CHURN_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "CHURN_TOPIC_PREFIX": settings.topic_prefix,
        "CHURN_DATA_DIR": str(settings.data_dir),
        "COLUMNS": "250",
    }
    return CliRunner().invoke(app, ["topics", *args], env=env)


def configs(admin: AdminClient, topic: str) -> dict[str, str]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return {k: e.value for k, e in admin.describe_configs([resource])[resource].result(timeout=10).items()}


def test_training_topics_keep_their_window_and_check_reports_a_changed_config(kafka_settings: Settings) -> None:
    created = churn(kafka_settings)
    assert created.exit_code == 0, created.output
    admin = AdminClient(confluent_config(kafka_settings))
    wanted = training_retention_ms(kafka_settings)
    assert wanted >= (kafka_settings.horizon_days + RETRAIN_WINDOW_DAYS) * DAY_MS
    features, labels = kafka_settings.topic(CHURN_FEATURES), kafka_settings.topic(CHURN_LABELS)
    for topic in (features, labels):
        assert configs(admin, topic)["retention.ms"] == str(wanted), topic
    assert configs(admin, kafka_settings.topic(MODEL_EVENTS))["cleanup.policy"] == "compact"

    clean = churn(kafka_settings, "--check")
    assert clean.exit_code == 0, clean.output
    assert "match their specs" in clean.output

    # Someone sets the labels back to a week, as a topic created before this retention would have.
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        labels,
        incremental_configs=[ConfigEntry("retention.ms", WEEK_MS, incremental_operation=AlterConfigOpType.SET)],
    )
    admin.incremental_alter_configs([resource])[resource].result(timeout=10)
    assert configs(admin, labels)["retention.ms"] == WEEK_MS

    checked = churn(kafka_settings, "--check")
    assert checked.exit_code == 1, checked.output
    lines = [line for line in checked.stdout.splitlines() if line.strip()]
    assert lines == [f"{labels} retention.ms: wanted >= {wanted} ({wanted / DAY_MS:g} days), actual {WEEK_MS} (7 days)"]

    again = churn(kafka_settings)  # creating is still idempotent; it names what differs and leaves it
    assert again.exit_code == 0, again.output
    assert "created: none" in again.stdout
    assert f"differs from its spec: {labels} retention.ms" in again.stdout
    assert configs(admin, labels)["retention.ms"] == WEEK_MS
