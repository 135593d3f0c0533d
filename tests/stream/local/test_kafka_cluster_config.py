"""The Kafka test clusters agree with the compose file, and their launcher fails in one clear line.

The compose file's ``kafka`` service and :mod:`stream.local.kafka_cluster` share one broker
configuration (``KAFKA_FOO_BAR`` <-> ``foo.bar``): every compose setting other than a
node's addresses, id, storage and the compose knob for partitions must equal what a
one-node test cluster gets, and every shared setting must be in the compose file. The
image tag, the pom's ``kafka.version`` and ``DEFAULT_KAFKA_VERSION`` are one version.
No Java, Maven or network is needed here.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.errors import BrokerError, ConfigError
from stream.local import kafka_cluster
from stream.local.kafka_cluster import (
    DEFAULT_KAFKA_VERSION,
    LAUNCHER_CONFIG,
    NODE_KEYS,
    POM,
    SHARED_BROKER_CONFIG,
    KafkaCluster,
    ensure_kafka_jars,
    replication_config,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yaml"
# Compose-only: the compose knob TOPIC_PARTITIONS sets it; the test clusters create topics explicitly.
COMPOSE_ONLY = {"num.partitions"}


def _default(value: object) -> str:
    """A compose value with ``${VAR:-default}`` resolved as compose does when VAR is unset."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", text)


@pytest.fixture(scope="module")
def kafka_service() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())["services"]["kafka"]


@pytest.fixture(scope="module")
def compose_config(kafka_service: dict[str, Any]) -> dict[str, str]:
    """The kafka service's ``KAFKA_*`` environment as broker properties."""
    env = kafka_service["environment"]
    return {
        name.removeprefix("KAFKA_").lower().replace("_", "."): _default(value)
        for name, value in env.items()
        if name.startswith("KAFKA_")
    }


def test_compose_sets_every_shared_setting_to_the_same_value(compose_config: dict[str, str]) -> None:
    missing = {key: value for key, value in SHARED_BROKER_CONFIG.items() if compose_config.get(key) != value}
    assert not missing, f"docker-compose.yaml's kafka service should set {missing}"


def test_compose_has_no_setting_the_one_node_cluster_does_not_share(compose_config: dict[str, str]) -> None:
    one_node = {**SHARED_BROKER_CONFIG, **replication_config(1)}
    differ = {
        key: (value, one_node.get(key, "(not set by stream/local/kafka_cluster.py)"))
        for key, value in compose_config.items()
        if key not in NODE_KEYS and key not in COMPOSE_ONLY and one_node.get(key) != value
    }
    assert not differ, f"compose value vs stream/local/kafka_cluster.py: {differ}"


def test_compose_replication_is_the_one_node_clusters(compose_config: dict[str, str]) -> None:
    for key in ("default.replication.factor", "min.insync.replicas", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor", "transaction.state.log.min.isr"):  # fmt: skip
        assert compose_config[key] == replication_config(1)[key], key


def test_tests_stay_fast_and_deterministic() -> None:
    assert SHARED_BROKER_CONFIG["group.initial.rebalance.delay.ms"] == "0"
    assert SHARED_BROKER_CONFIG["auto.create.topics.enable"] == "false"


def test_one_kafka_version_in_compose_pom_and_launcher(kafka_service: dict[str, Any]) -> None:
    pom = ET.parse(POM).getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom_version = pom.find("m:properties/m:kafka.version", ns)
    assert pom_version is not None and pom_version.text == DEFAULT_KAFKA_VERSION
    assert kafka_service["image"] == f"apache/kafka:{DEFAULT_KAFKA_VERSION}"


def test_replication_follows_the_node_count() -> None:
    assert replication_config(3) == {
        "default.replication.factor": "3",
        "min.insync.replicas": "2",
        "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
        "share.coordinator.state.topic.replication.factor": "3",
        "share.coordinator.state.topic.min.isr": "2",
    }
    assert set(replication_config(1).values()) == {"1"}


def test_three_nodes_on_loopback_with_their_own_ports() -> None:
    cluster = KafkaCluster(3, log_dir="/nonexistent")
    configs = [cluster.broker_config(i) for i in range(3)]

    ports = [re.findall(r":(\d+)", c["listeners"]) for c in configs]
    assert len({p for pair in ports for p in pair}) == 6, "a client and a controller port per node"
    assert all(c["listeners"].count("127.0.0.1") == 2 for c in configs)
    assert {c["controller.quorum.voters"] for c in configs} == {configs[0]["controller.quorum.voters"]}
    assert configs[0]["controller.quorum.voters"].count("@127.0.0.1:") == 3
    assert [c["node.id"] for c in configs] == ["1", "2", "3"]
    for config in configs:
        assert SHARED_BROKER_CONFIG.items() <= config.items()
        assert LAUNCHER_CONFIG.items() <= config.items()
        assert config["min.insync.replicas"] == "2"
    assert cluster.bootstrap.count(",") == 2


def test_only_one_or_three_nodes_and_only_loopback() -> None:
    with pytest.raises(ConfigError, match="1 or 3 nodes"):
        KafkaCluster(2)
    with pytest.raises(ConfigError, match="loopback"):
        KafkaCluster(1, host="0.0.0.0")
    with pytest.raises(ConfigError, match="Maven version"):
        KafkaCluster(1, version="latest")


def test_missing_java_is_one_line_naming_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(kafka_cluster.shutil, "which", lambda name: None)

    with pytest.raises(BrokerError) as info:
        ensure_kafka_jars(cache_dir=tmp_path)

    message = str(info.value)
    assert "\n" not in message
    assert "Java 17+" in message and "openjdk-17-jre-headless" in message
    assert not any(tmp_path.iterdir()), "nothing fetched or made"


def test_missing_maven_is_one_line_naming_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(kafka_cluster, "find_java", lambda: "/usr/bin/java")
    monkeypatch.setattr(kafka_cluster.shutil, "which", lambda name: None)

    with pytest.raises(BrokerError) as info:
        ensure_kafka_jars(cache_dir=tmp_path)

    message = str(info.value)
    assert "\n" not in message
    assert "mvn not found" in message and "install maven" in message


def test_fetched_jars_are_reused_without_maven(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The marker file makes a second call a no-op (no mvn run), until the pom changes."""
    monkeypatch.setattr(kafka_cluster, "find_java", lambda: "/usr/bin/java")
    calls: list[str] = []

    def fake_fetch(mvn: str, pom: Path, version: str, version_dir: Path, lib: Path) -> None:
        calls.append(version)
        lib.mkdir(parents=True, exist_ok=True)
        (lib / f"kafka_2.13-{version}.jar").write_bytes(b"")

    monkeypatch.setattr(kafka_cluster, "find_mvn", lambda: "/usr/bin/mvn")
    monkeypatch.setattr(kafka_cluster, "_fetch_jars", fake_fetch)
    pom = tmp_path / "pom.xml"
    pom.write_text(POM.read_text())

    first = ensure_kafka_jars("3.9.1", cache_dir=tmp_path / "cache", pom=pom)
    second = ensure_kafka_jars("3.9.1", cache_dir=tmp_path / "cache", pom=pom)
    assert first == second == tmp_path / "cache" / "3.9.1" / "lib"
    assert calls == ["3.9.1"]

    pom.write_text(POM.read_text() + "<!-- changed -->\n")
    ensure_kafka_jars("3.9.1", cache_dir=tmp_path / "cache", pom=pom)
    assert calls == ["3.9.1", "3.9.1"], "a changed pom fetches again"


def test_maven_failure_names_its_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(kafka_cluster, "find_java", lambda: "/usr/bin/java")
    fake_mvn = tmp_path / "mvn"
    fake_mvn.write_text(
        "#!/bin/sh\necho '[ERROR] Could not find artifact org.apache.kafka:kafka_2.13:jar:0.0.1'\nexit 1\n"
    )
    fake_mvn.chmod(0o755)
    monkeypatch.setattr(kafka_cluster, "find_mvn", lambda: str(fake_mvn))

    with pytest.raises(BrokerError) as info:
        ensure_kafka_jars("0.0.1", cache_dir=tmp_path / "cache")

    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "cache" / "0.0.1" / "mvn.log") in message
    assert "Could not find artifact" in message
    assert not (tmp_path / "cache" / "0.0.1" / "lib").exists()


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch):
    """kafka-storage format reads an id starting with "-" as an option and fails ("expected one argument")."""
    import uuid

    from stream.local import kafka_cluster

    drawn = iter([uuid.UUID(bytes=bytes([0xF8]) + bytes(15)), uuid.UUID(bytes=bytes(range(16)))])
    monkeypatch.setattr(kafka_cluster.uuid, "uuid4", lambda: next(drawn))
    assert kafka_cluster._new_cluster_id() == "AAECAwQFBgcICQoLDA0ODw"
