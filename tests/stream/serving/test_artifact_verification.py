"""No model artifact is unpickled before its downloaded bytes match the registry's checksum tag.

A real MLflow registry (sqlite and an artifact store in a temporary folder) holds: version 1, a
valid model; version 2, registered with its checksum and then replaced in the artifact store by
another valid model as a pickle that creates a marker file when unpickled (``MLmodel`` pointed at
it, as an attacker who can write the store would do); version 3, registered without a checksum.
Every loader refuses 2 and 3 before unpickling (the marker never appears) and keeps what it
serves: the worker's production and challenger holders on the event path, the alias poll and at
start, the batch scorer and the retraining job's gate. A control loads a folder tampered the same
way without the check and sees its marker appear: the attack is real, so its absence means something.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from support.models import artifact_dir, fitted, register, tamper

from stream.batch.run import load_model
from stream.errors import ArtifactRefused
from stream.metrics import StreamMetrics
from stream.serving import registry
from stream.serving.model_holder import ModelHolder, RegistrySource
from stream.serving.shadow import ChallengerHolder
from stream.settings import Settings
from training.config import DatasetConfig, SimulationConfig, TrainConfig
from training.job import run_training

pytestmark = pytest.mark.unit

MODEL_LOG = "stream.serving.model_holder"


@dataclass(frozen=True)
class Store:
    settings: Settings
    marker: Path
    good: str
    tampered: str
    untagged: str

    def checksum(self, version: str) -> str:
        client = registry.connect(self.settings)
        return (client.get_model_version(self.settings.model_name, version).tags or {}).get(registry.CHECKSUM_TAG, "")

    def point(self, alias: str, version: str) -> None:
        registry.connect(self.settings).set_registered_model_alias(self.settings.model_name, alias, version)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    folder = tmp_path_factory.mktemp("artifact-store")
    settings = Settings(data_dir=folder / "registry", registry_retry_s=0.05)
    marker = folder / "unpickled"
    good = register(settings, fitted(seed=1))
    tampered = register(settings, fitted(seed=2))
    tamper(settings, tampered, marker)
    untagged = register(settings, fitted(seed=3), checksum=False)
    return Store(settings, marker, good, tampered, untagged)


def failures(metrics: StreamMetrics, reason: str, name: str = "churn_model_load_failures_total") -> float:
    return metrics.registry.get_sample_value(name, {"reason": reason}) or 0.0


def refusals(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == MODEL_LOG and "refused model version" in r.getMessage()]


def test_a_version_whose_bytes_match_its_tag_loads(store):
    loaded = RegistrySource(store.settings).load(store.good, store.checksum(store.good))
    assert (loaded.version, loaded.checksum) == (store.good, store.checksum(store.good))
    assert not store.marker.exists()


@pytest.mark.parametrize(
    ("which", "announced", "reason", "says"),
    [
        ("tampered", None, "checksum_mismatch", "its artifact's checksum"),
        ("tampered", "registry", "checksum_mismatch", "its artifact's checksum"),
        ("untagged", None, "checksum_missing", "has no recorded checksum"),
        ("good", "0" * 64, "event_checksum_mismatch", "the event's checksum 000000000000"),
    ],
)
def test_the_loader_refuses_before_unpickling(store, which, announced, reason, says):
    version = getattr(store, which)
    if announced == "registry":  # an event announcing the tag the registry holds does not make other bytes pass
        announced = store.checksum(version)
    with pytest.raises(ArtifactRefused, match=says) as refused:
        RegistrySource(store.settings).load(version, announced)
    assert refused.value.reason == reason and f"version {version}" in str(refused.value)
    assert not store.marker.exists()


async def test_the_holder_keeps_its_model_on_the_event_path_and_the_alias_poll(store, caplog):
    metrics = StreamMetrics.create(CollectorRegistry())
    holder = ModelHolder(store.settings, metrics)
    assert await holder.refresh(store.good)
    caplog.set_level(logging.INFO, MODEL_LOG)

    # A model event promoting the tampered version, with the checksum the registry records for it.
    assert not await holder.refresh(store.tampered, store.checksum(store.tampered))
    # The alias poll finding @production on the version without a checksum.
    store.point("production", store.untagged)
    try:
        assert not await holder.refresh()
    finally:
        store.point("production", store.good)

    assert holder.current is not None and holder.current.version == store.good
    assert failures(metrics, "checksum_mismatch") == 1 and failures(metrics, "checksum_missing") == 1
    assert metrics.registry.get_sample_value("churn_model_version") == float(store.good)
    lines = [r.getMessage() for r in refusals(caplog)]
    assert len(lines) == 2, lines
    assert f"refused model version {store.tampered} (checksum_mismatch)" in lines[0]
    assert f"refused model version {store.untagged} (checksum_missing)" in lines[1]
    assert all(" for @production: " in line and line.endswith(f"still serving {store.good}") for line in lines)
    assert all(r.levelno == logging.ERROR and r.exc_info is None for r in refusals(caplog))
    assert not store.marker.exists()


async def test_a_holder_started_on_a_tampered_version_waits_serving_nothing(store, caplog):
    metrics = StreamMetrics.create(CollectorRegistry())
    holder = ModelHolder(store.settings, metrics)
    attempts = iter(range(3))
    store.point("production", store.tampered)
    try:
        assert not await holder.wait_ready(lambda: next(attempts, None) is None)
    finally:
        store.point("production", store.good)
    assert holder.current is None and not holder.ready.is_set()
    assert failures(metrics, "checksum_mismatch") == 3
    assert len(refusals(caplog)) == 3 and "still serving nothing" in refusals(caplog)[0].getMessage()
    assert not store.marker.exists()


async def test_the_challenger_is_refused_the_same_way(store, caplog):
    metrics = StreamMetrics.create(CollectorRegistry())
    challenger = ChallengerHolder(store.settings, metrics)
    store.point(store.settings.shadow_alias, store.tampered)
    assert not await challenger.refresh()
    assert not await challenger.refresh(store.untagged)
    assert challenger.current is None
    assert failures(metrics, "checksum_mismatch", "churn_shadow_load_failures_total") == 1
    assert failures(metrics, "checksum_missing", "churn_shadow_load_failures_total") == 1
    assert failures(metrics, "checksum_mismatch") == 0  # production's count is production's
    assert [f" for @{store.settings.shadow_alias}: " in r.getMessage() for r in refusals(caplog)] == [True, True]
    assert not store.marker.exists()


def test_batch_scoring_and_the_gate_refuse_too(store):
    with pytest.raises(ArtifactRefused, match="its artifact's checksum"):
        load_model(store.settings, version=store.tampered)
    with pytest.raises(ArtifactRefused, match="has no recorded checksum"):
        load_model(store.settings, version=store.untagged)
    client = registry.connect(store.settings)
    # What the retraining job loads the production model with, to compare a candidate against it.
    for version in (store.tampered, store.untagged):
        with pytest.raises(ArtifactRefused):
            registry.load_version(client, store.settings.model_name, version)
    assert registry.load_version(client, store.settings.model_name, store.good) is not None
    assert not store.marker.exists()


def test_the_retraining_job_stops_before_registering_when_production_is_refused(store):
    """The gate compares a candidate with production; a production that fails its checksum stops the job
    with one line (the CLI's exit for a ``ChurnError``) rather than let a candidate replace it unseen."""
    config = TrainConfig(
        seed=11,
        simulation=SimulationConfig(n_customers=200, days=80),
        dataset=DatasetConfig(horizon_days=30, warmup_days=20, snapshot_rate=0.3, holdout_fraction=0.3),
    )
    client = registry.connect(store.settings)
    before = len(registry.list_versions(client, store.settings.model_name))
    store.point("production", store.tampered)
    try:
        with pytest.raises(ArtifactRefused, match="refused to compare with production") as refused:
            run_training(config, store.settings)
    finally:
        store.point("production", store.good)
    assert "\n" not in str(refused.value) and f"version {store.tampered}" in str(refused.value)
    assert len(registry.list_versions(client, store.settings.model_name)) == before
    assert not store.marker.exists()


def test_the_checksum_covers_every_file_of_the_model_folder(store, tmp_path):
    client = registry.connect(store.settings)
    with registry.downloaded_model(client, store.settings.model_name, store.good) as path:
        files = sorted(p.relative_to(path) for p in path.rglob("*") if p.is_file())
        # MLmodel says which file is the model and how to load it; model.skops is the model MLflow writes.
        assert {"MLmodel", "model.skops"} <= {f.as_posix() for f in files}
        original = registry.artifact_checksum(path)
        for name in files:
            data = (path / name).read_bytes()
            (path / name).write_bytes(data + b" ")
            assert registry.artifact_checksum(path) != original, name
            (path / name).write_bytes(data)
        (path / "extra.pkl").write_bytes(b"")
        assert registry.artifact_checksum(path) != original
        (path / "extra.pkl").unlink()
        assert registry.artifact_checksum(path) == original


def test_unchecked_a_tampered_artifact_would_run_its_code(store):
    """The control: MLflow's own loader, given a folder tampered as the store's version 2 was, unpickles the
    planted object. A version and a marker of its own, so the other tests' marker stays absent."""
    marker = store.marker.with_name("control")
    version = register(store.settings, fitted(seed=4))
    tamper(store.settings, version, marker)
    registry.load_sklearn(artifact_dir(store.settings, version))
    assert marker.exists()
