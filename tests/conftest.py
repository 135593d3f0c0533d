"""Shared fixtures: the broker tiers of the session and per-test topic isolation.

Every test that asks for ``kafka_bootstrap`` runs once per broker tier:

- ``kafka``: Apache Kafka. testcontainers' Kafka when a Docker daemon answers (GitHub's
  runners), else Apache Kafka from Maven Central (the compose file's version) started by
  :class:`stream.kafka_cluster.KafkaCluster` where Java and Maven are;
- ``embedded``: the embedded broker (Tansu) on a free loopback port.

``CHURN_TEST_BOOTSTRAP`` names a running broker instead (one tier, ``explicit``);
``CHURN_TEST_BROKER=kafka|embedded`` runs one tier only. Each tier starts one broker for
the whole session; tests name their topics with ``unique_prefix`` (or their own prefix),
so they never share topics. The run ends with one line per tier naming its broker, and a
line for a tier that could not run and why; under ``CI=true`` such a tier fails the run.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterator

import pytest
from support.tiers import SECURE, TIER_OUTCOMES, TRIO, missing_tier, session_tiers, tier, tier_lines

from stream.errors import BrokerError
from stream.local.broker import EmbeddedBroker, free_port
from stream.settings import Settings

log = logging.getLogger(__name__)

MARKERS = {
    "unit": "fast tests without a broker",
    "integration": "needs a real Kafka broker (the kafka_bootstrap fixture)",
    "e2e": "the whole loop: broker, workers, registry",
    "broker_faults": "Apache Kafka's three-node cluster with brokers killed and restarted",
    "tiers": "tiers(*names): run only on these broker tiers (the others are deselected)",
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
    """testcontainers' Kafka in KRaft mode (its own Confluent image: its start-up script is written for it)."""
    from testcontainers.community.kafka import KafkaContainer

    return KafkaContainer().with_kraft()


# Under xdist (make test runs two processes, --dist loadgroup) each tier's tests go to one process: one broker
# per tier, the tiers side by side. A mark on a fixture param reaches every test using it at collection, before
# xdist reads the groups (a mark added later, in a collection hook, came too late and was ignored).
@pytest.fixture(
    scope="session",
    params=[
        pytest.param(name, id=name, marks=pytest.mark.xdist_group("embedded" if name == "embedded" else "kafka"))
        for name in session_tiers()
    ],
)
def broker_tier(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's broker of one tier (``request.param``): its ``host:port``."""
    name = request.param
    outcome = tier(name)
    if outcome.missing:
        pytest.skip(f"the {name} tier did not run: {outcome.missing}")
    if name == "explicit":
        outcome.broker = f"the broker at {os.environ['CHURN_TEST_BOOTSTRAP'].strip()} (CHURN_TEST_BOOTSTRAP)"
        yield os.environ["CHURN_TEST_BOOTSTRAP"].strip()
        return
    if name == "embedded":
        broker = EmbeddedBroker(port=free_port(), log_dir=tmp_path_factory.mktemp("embedded"))
        with broker:
            outcome.broker = f"the embedded broker (Tansu) on {broker.bootstrap}"
            yield broker.bootstrap
        return
    if _docker_answers():
        with _kafka_container() as kafka:
            outcome.broker = f"Apache Kafka in a container ({kafka.image}) on {kafka.get_bootstrap_server()}"
            yield kafka.get_bootstrap_server()
        return
    from stream.local.kafka_cluster import DEFAULT_KAFKA_VERSION, QUICK_START_JVM_OPTS, KafkaCluster

    # CHURN_TEST_KAFKA_VERSION runs the tier on another release (the compose file's by default).
    version = os.environ.get("CHURN_TEST_KAFKA_VERSION", DEFAULT_KAFKA_VERSION)
    try:
        cluster = KafkaCluster(
            1, version=version, log_dir=tmp_path_factory.mktemp("kafka"), jvm_opts=QUICK_START_JVM_OPTS
        ).start()
    except BrokerError as exc:
        missing_tier(name, str(exc))
    try:
        outcome.broker = f"Apache Kafka {version} from Maven Central (KRaft, one node) on {cluster.bootstrap}"
        yield cluster.bootstrap
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(broker_tier: str) -> str:
    """``host:port`` of this tier's broker, shared by the whole session."""
    return broker_tier


@pytest.fixture
def broker_kind(request: pytest.FixtureRequest, kafka_bootstrap: str) -> str:
    """The tier this test runs on: ``kafka``, ``embedded`` or ``explicit``."""
    return request.node.callspec.params["broker_tier"]


@pytest.fixture
def unique_prefix(request: pytest.FixtureRequest) -> str:
    """A topic prefix of this test alone, e.g. ``t-test_publish-1a2b3c4d-``."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", request.node.originalname or request.node.name)[:40]
    return f"t-{name}-{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, unique_prefix: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    """Settings pointing at the session broker, with this test's topic prefix."""
    return Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=unique_prefix, data_dir=tmp_path)


def _tier_of(item: pytest.Item) -> str | None:
    if "kafka_trio" in getattr(item, "fixturenames", ()):
        return TRIO
    if "kafka_secure" in getattr(item, "fixturenames", ()):
        return SECURE
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("broker_tier") if callspec is not None else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked ``tiers(...)`` runs on those tiers only."""
    kept, deselected = [], []
    for item in items:
        only = item.get_closest_marker("tiers")
        tier_name = _tier_of(item)
        if only is not None and tier_name not in (*only.args, "explicit"):
            deselected.append(item)
        else:
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    name = _tier_of(item)
    if name is None:
        return
    record = tier(name)
    # Carried on the report, so that the process that prints the summary (xdist's controller) has them too.
    report.user_properties.append(("broker_tier", (name, record.broker, record.missing)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for key, value in report.user_properties:
        if key != "broker_tier":
            continue
        name, broker, missing = value
        record = tier(name)
        record.broker = record.broker or broker
        record.missing = record.missing or missing
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            record.results[report.outcome] += 1


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    for line in tier_lines():
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    missing = [name for name, outcome in TIER_OUTCOMES.items() if outcome.missing]
    if missing and os.environ.get("CI", "").lower() == "true" and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def bootstrap_result():  # type: ignore[no-untyped-def]
    """The committed bootstrap config, trained once per session process (about 40 s)."""
    from training.config import DEFAULT_CONFIG, load_config
    from training.train import train

    return train(load_config(DEFAULT_CONFIG))
