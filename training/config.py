"""Training configuration: a committed YAML file parsed into a typed model."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stream.errors import ConfigError
from stream.settings import RETRAIN_WINDOW_DAYS

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "bootstrap.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimulationConfig(_Section):
    n_customers: int = Field(3000, ge=10)
    days: int = Field(240, ge=30)
    scenario: str | None = None
    onset_day: int = Field(90, ge=0)


class DatasetConfig(_Section):
    horizon_days: int = Field(30, ge=1)
    warmup_days: int = Field(60, ge=0, description="skip snapshots before this day (features need history)")
    snapshot_rate: float = Field(0.15, gt=0, le=1, description="share of event-time feature vectors kept")
    silence_days: float = Field(7.0, ge=0, description="silence re-score interval (0: none), as the worker's timer")
    holdout_fraction: float = Field(0.25, gt=0, lt=1)
    window_days: float = Field(
        RETRAIN_WINDOW_DAYS,
        gt=0,
        description="retraining: days of labelled feature-log snapshots to learn from, the most recent",
    )


class ModelConfig(_Section):
    kind: Literal["logistic_regression", "hist_gradient_boosting"] = "logistic_regression"
    C: float = Field(1.0, gt=0)
    max_iter: int = Field(1000, ge=10)
    learning_rate: float = Field(0.1, gt=0)
    max_leaf_nodes: int = Field(31, ge=2)
    shuffle_labels: bool = Field(False, description="train on permuted labels: a deliberately bad model")


class GateConfig(_Section):
    min_roc_auc: float = Field(0.70, ge=0, le=1)
    min_pr_auc: float = Field(0.10, ge=0, le=1)
    max_brier: float = Field(0.25, ge=0, le=1)
    max_auc_regression: float = Field(0.01, ge=0, le=1, description="allowed AUC drop against production")
    min_gain_over_production: float = Field(
        0.02,
        ge=0,
        le=1,
        description="a candidate beating production's ROC AUC on the same holdout by this much is promoted even "
        "below the absolute floors (drift can make every model score lower)",
    )
    max_gap_to_oracle: float = Field(
        0.05, ge=0, le=1, description="where the oracle is measured, the ROC AUC floor is at most this far below it"
    )
    latency_budget_ms: float = Field(200.0, gt=0, description="predict_proba on a 1,000-row batch")


class TrainConfig(_Section):
    seed: int = 7
    simulation: SimulationConfig = SimulationConfig()
    dataset: DatasetConfig = DatasetConfig()
    model: ModelConfig = ModelConfig()
    gate: GateConfig = GateConfig()
    precision_at_k: float = Field(0.1, gt=0, le=1, description="top share of customers for precision@k")


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML config; any problem raises ``ConfigError`` saying what to fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (pass --config with an existing YAML file)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"config file {path} is invalid: {problems}") from exc
