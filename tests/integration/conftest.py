"""Fixtures for tests on a real broker: a trained model in a real MLflow registry, worker settings."""

from __future__ import annotations

import pytest
from support import isolated_env

from stream.settings import Settings
from training.config import DatasetConfig, GateConfig, SimulationConfig, TrainConfig
from training.job import run_training

SMALL_MODEL = TrainConfig(
    seed=11,
    simulation=SimulationConfig(n_customers=300, days=100),
    dataset=DatasetConfig(horizon_days=30, warmup_days=30, snapshot_rate=0.3, holdout_fraction=0.3),
    gate=GateConfig(min_roc_auc=0.5, min_pr_auc=0.0, max_brier=0.5),
)


@pytest.fixture(scope="session")
def registry_dir(tmp_path_factory):
    """A local sqlite MLflow registry holding one small model under @production."""
    data_dir = tmp_path_factory.mktemp("registry")
    outcome = run_training(SMALL_MODEL, Settings(data_dir=data_dir))
    assert outcome.decision.promote, outcome.decision.reasons
    return data_dir


@pytest.fixture
def stream_env(kafka_bootstrap, registry_dir, tmp_path):
    """Environment for a worker isolated from other tests, on the session's registry."""
    # Silence re-scores add outputs that no input event has; their own test turns them on.
    return isolated_env(kafka_bootstrap, registry_dir, "test", CHURN_SCORE_BATCH_MS="20", CHURN_SILENCE_DAYS="0")


@pytest.fixture(scope="module")
def kafka_trio(tmp_path_factory):
    """Apache Kafka's three-node cluster (replication 3, min.insync.replicas 2) for a module's broker faults."""
    from support.tiers import TRIO, missing_tier, tier_broker

    from stream.errors import BrokerError
    from stream.local.kafka_cluster import QUICK_START_JVM_OPTS, KafkaCluster

    cluster = KafkaCluster(3, log_dir=tmp_path_factory.mktemp("trio"), jvm_opts=QUICK_START_JVM_OPTS)
    try:
        cluster.start()
    except BrokerError as exc:
        missing_tier(TRIO, str(exc))
    tier_broker(TRIO, f"Apache Kafka {cluster.version} from Maven Central (KRaft, three nodes) on {cluster.bootstrap}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def kafka_secure(tmp_path_factory):
    """Apache Kafka with a SASL_SSL listener (TLS from a throwaway CA, SCRAM-SHA-512 users) enforcing ACLs.

    Its users: ``admin`` (a super user) and each role's user of ``deploy/kafka/acls.yaml``, each with a
    random password. No ACL is applied: each test applies what it needs under its own topic prefix.
    """
    import secrets

    from support.tiers import SECURE, missing_tier, tier_broker

    from stream.errors import BrokerError
    from stream.kafka.acls import load_roles
    from stream.local.kafka_cluster import QUICK_START_JVM_OPTS, KafkaCluster
    from stream.local.kafka_security import ADMIN_USER, BrokerSecurity, make_pki

    home = tmp_path_factory.mktemp("kafka-secure")
    try:
        pki = make_pki(home / "pki")
    except BrokerError as exc:
        missing_tier(SECURE, str(exc))
    users = {ADMIN_USER: secrets.token_hex(12)} | {r.user: secrets.token_hex(12) for r in load_roles().values()}
    cluster = KafkaCluster(
        1, log_dir=home / "logs", jvm_opts=QUICK_START_JVM_OPTS, security=BrokerSecurity(pki, users=users)
    )
    try:
        cluster.start()
    except BrokerError as exc:
        missing_tier(SECURE, str(exc))
    tier_broker(SECURE, f"Apache Kafka {cluster.version} (KRaft) with SASL_SSL, SCRAM-SHA-512 and ACLs on "
                f"{cluster.secure_bootstrap}")  # fmt: skip
    try:
        yield cluster
    finally:
        cluster.stop()
