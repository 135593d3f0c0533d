"""``train(config) -> TrainResult``: a pure function of the config, no MLflow.

Builds the point-in-time dataset, fits the pipeline on the training customers and
evaluates it on the holdout customers, with the oracle AUC (the best any model can
reach on this data) and a heuristic baseline beside the model's metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from training.config import TrainConfig
from training.dataset import (
    ORACLE,
    Split,
    fingerprint,
    label_array,
    model_inputs,
    simulated_snapshots,
    split_by_customer,
)
from training.metrics import (
    auc_or_nan,
    batch_latency_ms,
    best_f1_threshold,
    classification_metrics,
    heuristic_score,
)
from training.model import build_pipeline

Progress = Callable[[str, float], None]


@dataclass
class TrainResult:
    pipeline: Pipeline
    metrics: dict[str, float]
    split: Split
    fingerprint: str


def fit(frame: pd.DataFrame, config: TrainConfig) -> Pipeline:
    """Fit the configured pipeline on a labelled snapshot frame."""
    y = label_array(frame)
    if config.model.shuffle_labels:
        y = np.random.default_rng(config.seed).permutation(y)
    pipeline = build_pipeline(config.model, config.seed)
    pipeline.fit(model_inputs(frame), y)
    return pipeline


def evaluate(pipeline: Pipeline, frame: pd.DataFrame, threshold: float, k_share: float) -> dict[str, float]:
    """Metrics of a fitted pipeline on a labelled frame."""
    p = pipeline.predict_proba(model_inputs(frame))[:, 1]
    return classification_metrics(label_array(frame), p, threshold, k_share)


def train_on_split(split: Split, config: TrainConfig) -> tuple[Pipeline, dict[str, float]]:
    """Fit on ``split.train``; metrics on ``split.holdout`` (plus baselines when present)."""
    if split.train.empty or split.holdout.empty:
        raise ValueError("the dataset is empty: no snapshot has a passed horizon")
    pipeline = fit(split.train, config)
    train_p = pipeline.predict_proba(model_inputs(split.train))[:, 1]
    threshold = best_f1_threshold(label_array(split.train), train_p)
    metrics = evaluate(pipeline, split.holdout, threshold, config.precision_at_k)
    y = label_array(split.holdout)
    metrics["heuristic_roc_auc"] = auc_or_nan(y, heuristic_score(split.holdout))
    if ORACLE in split.holdout:
        metrics["oracle_roc_auc"] = auc_or_nan(y, split.holdout[ORACLE].to_numpy(float))
    metrics["train_rows"] = float(len(split.train))
    metrics["holdout_rows"] = float(len(split.holdout))
    metrics["batch_latency_ms"] = batch_latency_ms(pipeline, model_inputs(split.holdout))
    return pipeline, metrics


def train(config: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Simulate, build the dataset, fit and evaluate. Deterministic for a config."""
    report = progress or (lambda stage, done: None)
    report("simulate", 0.0)
    frame, _ = simulated_snapshots(config, on_event=lambda n: report("simulate", float(n)))
    report("split", 0.0)
    split = split_by_customer(frame, config.dataset.holdout_fraction)
    report("fit", 0.0)
    pipeline, metrics = train_on_split(split, config)
    report("done", 0.0)
    return TrainResult(pipeline=pipeline, metrics=metrics, split=split, fingerprint=fingerprint(frame))
