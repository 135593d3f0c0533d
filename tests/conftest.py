"""Shared fixtures: a Kafka broker for the session and per-test topic isolation.

``kafka_bootstrap`` follows the architecture's order: ``CHURN_TEST_BOOTSTRAP`` if set,
else a testcontainers Kafka when a Docker daemon answers, else the embedded Tansu
broker on a free loopback port. Every test that touches Kafka names its topics with
``unique_prefix`` so tests never share topics, even on a shared broker.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterator

import pytest

from stream.broker import EmbeddedBroker, free_port
from stream.settings import Settings

log = logging.getLogger(__name__)

MARKERS = {
    "unit": "fast tests without a broker",
    "agent": "Faust agents in a test context (memory store, no broker)",
    "integration": "needs a real Kafka broker (the kafka_bootstrap fixture)",
    "e2e": "the whole loop: broker, workers, registry",
}


def pytest_configure(config: pytest.Config) -> None:
    # Registered here as well as in pyproject so --strict-markers works either way.
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")


def _docker_answers() -> bool:
    """True when a Docker daemon answers a ping within a couple of seconds."""
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no usable Docker"
        log.info("no Docker daemon (%s); not using testcontainers", exc)
        return False
    return True


def _kafka_container():  # type: ignore[no-untyped-def]
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # older testcontainers
        from testcontainers.kafka import KafkaContainer
    return KafkaContainer()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a Kafka broker shared by the whole session."""
    explicit = os.environ.get("CHURN_TEST_BOOTSTRAP", "").strip()
    if explicit:
        yield explicit
        return
    if _docker_answers():
        with _kafka_container() as kafka:
            yield kafka.get_bootstrap_server()
        return
    broker = EmbeddedBroker(port=free_port(), log_dir=tmp_path_factory.mktemp("broker"))
    with broker:
        log.info("embedded broker for tests on %s (started in %.3fs)", broker.bootstrap, broker.startup_seconds)
        yield broker.bootstrap


@pytest.fixture
def unique_prefix(request: pytest.FixtureRequest) -> str:
    """A topic prefix of this test alone, e.g. ``t-test_publish-1a2b3c4d-``."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", request.node.name)[:40]
    return f"t-{name}-{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, unique_prefix: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    """Settings pointing at the session broker, with this test's topic prefix."""
    return Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=unique_prefix, data_dir=tmp_path)
