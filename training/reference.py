"""Reference distributions of every model input: the drift agent's baseline.

Numeric features get decile bin edges from the training data and the share of rows
in each bin; categorical features get the share of each category. Stored as JSON
with the model run, so the scorer that serves a model also knows its baseline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from schemas.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES

N_BINS = 10


def numeric_reference(values: np.ndarray, n_bins: int = N_BINS) -> dict:
    """Interior quantile edges and the share of values in each resulting bin."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return {"edges": edges.tolist(), "shares": (counts / max(1, len(values))).tolist()}


def categorical_reference(values: pd.Series) -> dict:
    shares = values.astype(str).value_counts(normalize=True).sort_index()
    return {"shares": {str(k): float(v) for k, v in shares.items()}}


def reference_distributions(frame: pd.DataFrame, scores: np.ndarray | None = None) -> dict:
    """Baselines for every feature (and the score, when given)."""
    ref = {
        "numeric": {n: numeric_reference(frame[n].to_numpy(float)) for n in NUMERIC_FEATURES},
        "categorical": {n: categorical_reference(frame[n]) for n in CATEGORICAL_FEATURES},
        "rows": int(len(frame)),
    }
    if scores is not None:
        ref["score"] = numeric_reference(np.asarray(scores, dtype=float))
    return ref
