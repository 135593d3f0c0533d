"""Figures logged with each training run: ROC, calibration and global feature importance."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


def roc_figure(y: np.ndarray, curves: dict[str, np.ndarray]):
    """ROC curves of several scores (model, oracle, heuristic) on one set of labels."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, score in curves.items():
        fpr, tpr, _ = roc_curve(y, score)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC on the holdout")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def calibration_figure(y: np.ndarray, p: np.ndarray, n_bins: int = 10):
    """Reliability diagram: predicted probability against observed churn rate."""
    observed, predicted = calibration_curve(y, p, n_bins=n_bins, strategy="quantile")
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(predicted, observed, marker="o", label="model")
    top = max(float(predicted.max()), float(observed.max()), 0.05)
    ax.plot([0, top], [0, top], linestyle="--", color="grey", linewidth=0.8, label="perfect")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed churn rate")
    ax.set_title("Calibration on the holdout")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def importance_figure(importance: dict[str, float]):
    """Each input's share of the ROC AUC lost when it is shuffled (``training.importance``), largest on top."""
    rows = sorted(importance.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6, 0.4 * max(len(rows), 1) + 1.2))
    ax.barh([name for name, _ in rows], [share for _, share in rows])
    ax.set_xlabel("share of ROC AUC lost when shuffled")
    ax.set_title("Global feature importance on the holdout")
    fig.tight_layout()
    return fig


def close(fig) -> None:
    plt.close(fig)
