"""Publisher behaviour that needs no broker: validation, counting, codec choice."""

from __future__ import annotations

import pytest
from aiokafka import codec

from producers.publisher import PRODUCER_DEFAULTS, Publisher
from stream.settings import Settings

pytestmark = pytest.mark.unit

VALID = {"event_type": "usage", "event_id": "e1", "customer_id": "c1", "ts": "2026-01-01T00:00:00Z", "amount": 1.0}


@pytest.fixture
def offline() -> Publisher:
    # Nothing listens on port 1; nothing valid is published in these tests.
    settings = Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="unit-")
    return Publisher.from_settings(settings, producer_overrides={"log_level": 0})


def test_invalid_dicts_are_counted_with_reasons_and_not_sent(offline: Publisher) -> None:
    assert offline.topic == "unit-account-events"
    assert offline.publish_obj({**VALID, "amount": -1}) is False
    assert offline.publish_obj({**VALID, "event_type": "nope"}) is False
    summary = offline.flush(0.1)
    assert (summary.sent, summary.invalid, summary.delivered, summary.failed) == (0, 2, 0, 0)
    assert "'e1'" in summary.errors[0] and "usage.amount" in summary.errors[0]
    assert not summary.ok


def test_kept_errors_are_capped(offline: Publisher) -> None:
    for i in range(20):
        offline.publish_obj({**VALID, "event_id": f"e{i}", "amount": "x"})
    summary = offline.summary()
    assert summary.invalid == 20 and len(summary.errors) == 5


def test_publish_takes_models_only(offline: Publisher) -> None:
    with pytest.raises(TypeError, match="publish_obj"):
        offline.publish(VALID)  # type: ignore[arg-type]


def test_producer_contract() -> None:
    assert PRODUCER_DEFAULTS["enable.idempotence"] is True
    assert PRODUCER_DEFAULTS["acks"] == "all"
    assert PRODUCER_DEFAULTS["partitioner"] == "murmur2_random"


def test_compression_is_one_the_faust_workers_can_decode() -> None:
    # The featurize agent reads account-events with aiokafka; lz4/snappy/zstd need cramjam.
    decodable = {
        "none": True,
        "gzip": codec.has_gzip(),
        "lz4": codec.has_lz4(),
        "snappy": codec.has_snappy(),
        "zstd": codec.has_zstd(),
    }
    assert decodable[str(PRODUCER_DEFAULTS["compression.type"])]
