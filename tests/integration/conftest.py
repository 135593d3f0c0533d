"""Fixtures for tests on a real broker: a trained model in a real MLflow registry, worker settings."""

from __future__ import annotations

import uuid

import pytest

from stream.settings import Settings
from support import free_port, worker_env
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


def isolated_env(bootstrap: str, data_dir, label: str, **over: str) -> dict[str, str]:
    """A worker environment isolated from other tests: own topics, group and port."""
    run = uuid.uuid4().hex[:8]
    return worker_env(
        {
            "CHURN_BOOTSTRAP_SERVERS": bootstrap,
            "CHURN_DATA_DIR": str(data_dir),
            "CHURN_TOPIC_PREFIX": f"t{run}-",
            "CHURN_APP_ID": f"churn-{label}-{run}",
            "CHURN_WEB_PORT": str(free_port()),
            "CHURN_LOG_LEVEL": "INFO",
        },
        **over,
    )


@pytest.fixture
def stream_env(kafka_bootstrap, registry_dir, tmp_path):
    """Environment for a worker isolated from other tests, on the session's registry."""
    # Silence re-scores add outputs that no input event has; their own test turns them on.
    return isolated_env(kafka_bootstrap, registry_dir, "test", CHURN_SCORE_BATCH_MS="20", CHURN_SILENCE_DAYS="0")
