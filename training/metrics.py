"""Model metrics on a holdout, with the oracle and a heuristic baseline beside them."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    roc_auc_score,
)

from stream.drift.detectors import mean_expected_log_loss


def heuristic_score(frame: pd.DataFrame) -> np.ndarray:
    """A hand-written risk rule, the baseline any model must beat.

    Support calls, failed payments and silence raise risk; tenure and autopay lower it.
    """
    return (
        frame["support_calls_30d"].to_numpy(float)
        + 2.0 * frame["failed_payments_90d"].to_numpy(float)
        + frame["days_since_last_event"].to_numpy(float) / 7.0
        - frame["has_autopay"].to_numpy(float)
        - frame["tenure_months"].to_numpy(float) / 12.0
    )


def precision_at_k(y: np.ndarray, p: np.ndarray, share: float) -> float:
    """Precision among the top ``share`` of scores."""
    k = max(1, int(round(len(p) * share)))
    top = np.argsort(-p, kind="stable")[:k]
    return float(y[top].mean())


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability threshold that maximizes F1 (chosen on training data)."""
    grid = np.unique(np.quantile(p, np.linspace(0.5, 0.995, 100)))
    scores = [f1_score(y, p >= t, zero_division=0) for t in grid]
    return float(grid[int(np.argmax(scores))])


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float, k_share: float) -> dict[str, float]:
    """ROC AUC, PR AUC, F1, precision@k, Brier score, log loss (measured and expected) and base rate."""
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "f1": float(f1_score(y, p >= threshold, zero_division=0)),
        "precision_at_k": precision_at_k(y, p, k_share),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])),
        # What the scores promise if calibrated: the workers compare live log loss with it.
        "expected_log_loss": mean_expected_log_loss(p),
        "base_rate": float(y.mean()),
        "threshold": threshold,
    }


def auc_or_nan(y: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else float("nan")


def batch_latency_ms(model, inputs: pd.DataFrame, rows: int = 1000, repeats: int = 5) -> float:
    """Median wall time of ``predict_proba`` on a batch of ``rows`` rows."""
    batch = inputs.sample(n=rows, replace=len(inputs) < rows, random_state=0)
    model.predict_proba(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_proba(batch)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def prefixed(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": v for k, v in metrics.items()}
