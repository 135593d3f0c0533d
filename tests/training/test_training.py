"""Training into a real MLflow sqlite registry in a temporary folder."""

from __future__ import annotations

import json

import pytest

from stream.settings import Settings
from training import registry
from training.config import DatasetConfig, GateConfig, ModelConfig, SimulationConfig, TrainConfig
from training.dataset import label_snapshots
from training.job import run_training
from training.train import train

pytestmark = pytest.mark.unit

SMALL = TrainConfig(
    seed=5,
    simulation=SimulationConfig(n_customers=400, days=110),
    dataset=DatasetConfig(horizon_days=30, warmup_days=30, snapshot_rate=0.3, holdout_fraction=0.3),
    gate=GateConfig(min_roc_auc=0.6, min_pr_auc=0.02, max_auc_regression=0.02),
)


def test_bootstrap_config_reaches_the_oracle(bootstrap_result):
    """The committed config's model: ROC AUC >= 0.75 and within 0.05 of the oracle."""
    metrics = bootstrap_result.metrics
    assert metrics["roc_auc"] >= 0.75
    assert metrics["oracle_roc_auc"] - metrics["roc_auc"] <= 0.05
    assert metrics["roc_auc"] > metrics["heuristic_roc_auc"]


def test_train_is_deterministic():
    a, b = train(SMALL), train(SMALL)
    assert a.fingerprint == b.fingerprint
    assert a.metrics["roc_auc"] == b.metrics["roc_auc"]


def test_labels_never_look_past_the_horizon():
    import pandas as pd

    day = 86_400.0
    snaps = pd.DataFrame({"customer_id": ["a", "a", "a", "b"], "event_ts": [0.0, 10 * day, 50 * day, 5 * day]})
    out = label_snapshots(snaps, {"a": 35 * day}, horizon_days=30, end_ts=60 * day)
    # a@0: closes at day 35, after its horizon -> 0; a@10: within -> 1; a@50: after closure -> dropped;
    # b@5: horizon passed, never closed -> 0.
    assert out[["customer_id", "event_ts", "label"]].values.tolist() == [
        ["a", 0.0, 0],
        ["a", 10 * day, 1],
        ["b", 5 * day, 0],
    ]
    late = label_snapshots(snaps, {}, horizon_days=30, end_ts=20 * day)
    assert late.empty


def test_register_promote_reject_and_roll_back(tmp_path):
    settings = Settings(data_dir=tmp_path)
    first = run_training(SMALL, settings)
    assert first.version == "1" and first.decision.promote
    client = registry.connect(settings)
    assert registry.version_for_alias(client, "churn-model", "production") == "1"

    run = client.get_run(first.run_id)
    assert run.data.metrics["roc_auc"] == pytest.approx(first.metrics["roc_auc"])
    assert "oracle_roc_auc" in run.data.metrics and "heuristic_roc_auc" in run.data.metrics
    assert run.data.tags["dataset.fingerprint"] == first.tags["dataset.fingerprint"]
    artifacts = {a.path for a in client.list_artifacts(first.run_id)}
    assert {"config.json", "model_card.md", "plots", "reference"} <= artifacts
    assert {a.path for a in client.list_artifacts(first.run_id, "plots")} == {
        "plots/roc.png",
        "plots/calibration.png",
        "plots/importance.png",
    }
    assert {a.path for a in client.list_artifacts(first.run_id, "importance")} >= {
        "importance/importance.json",
        "importance/importance.md",
    }
    table = open(client.download_artifacts(first.run_id, "importance/importance.md", str(tmp_path))).read()
    assert table.startswith("| feature |") and "tenure_months" in table
    ref = json.loads(open(client.download_artifacts(first.run_id, "reference/reference.json", str(tmp_path))).read())
    assert set(ref["numeric"]) >= {"tenure_months", "usage_trend"} and "plan" in ref["categorical"]
    mv = client.get_model_version("churn-model", "1")
    assert mv.tags["checksum"] == first.checksum
    with registry.downloaded_model(client, "churn-model", "1") as path:
        assert registry.artifact_checksum(path) == first.checksum
    assert not path.exists()

    # Same config again: same holdout, same model -> no regression -> promoted, v1 kept as @previous.
    second = run_training(SMALL, settings)
    assert second.version == "2" and second.decision.promote
    assert second.champion_version == "1"
    assert second.champion_metrics["roc_auc"] == pytest.approx(second.metrics["roc_auc"])
    assert registry.version_for_alias(client, "churn-model", "production") == "2"
    assert registry.version_for_alias(client, "churn-model", "previous") == "1"

    # A model trained on shuffled labels regresses: rejected, reasons recorded, production unchanged.
    bad = SMALL.model_copy(update={"model": ModelConfig(shuffle_labels=True)})
    third = run_training(bad, settings)
    assert not third.decision.promote
    assert any(r.startswith("regression") for r in third.decision.reasons)
    mv3 = client.get_model_version("churn-model", "3")
    assert mv3.tags["gate.decision"] == "rejected" and "regression" in mv3.tags["gate.reasons"]
    assert registry.version_for_alias(client, "churn-model", "production") == "2"

    assert registry.rollback(client, "churn-model") == ("2", "1")
    assert registry.version_for_alias(client, "churn-model", "production") == "1"
    assert registry.version_for_alias(client, "churn-model", "previous") == "2"
    versions = registry.list_versions(client, "churn-model")
    assert [v.version for v in versions] == ["3", "2", "1"]
    assert "production" in versions[2].aliases


def test_a_served_version_carries_its_holdout_metrics_importances_and_gate_evidence(tmp_path):
    """What the worker's drift monitor judges the live model against, as the worker loads it."""
    from schemas.features import FEATURE_NAMES
    from stream.serving.model_holder import RegistrySource

    settings = Settings(data_dir=tmp_path)
    outcome = run_training(SMALL, settings)
    loaded = RegistrySource(settings).load(outcome.version)
    assert loaded.metrics["log_loss"] == pytest.approx(outcome.metrics["log_loss"])
    assert loaded.metrics["expected_log_loss"] == pytest.approx(outcome.metrics["expected_log_loss"])
    assert set(loaded.importance) == set(FEATURE_NAMES)
    assert sum(loaded.importance.values()) == pytest.approx(1.0, abs=1e-4)
    # The serving model's age (churn_model_registered_timestamp_seconds): the version's creation, in seconds.
    created_ms = registry.connect(settings).get_model_version(settings.model_name, outcome.version).creation_timestamp
    assert loaded.registered_at == pytest.approx(created_ms / 1000.0)
    tags = registry.connect(settings).get_run(outcome.run_id).data.tags
    assert float(tags["gate.candidate_roc_auc"]) == pytest.approx(outcome.metrics["roc_auc"], abs=1e-5)
