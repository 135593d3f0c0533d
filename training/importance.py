"""Global feature importance of a pipeline: how much its ranking depends on each input.

Permutation importance on the holdout (scikit-learn's ``permutation_importance``,
scored by ROC AUC): the AUC lost when one feature's values are shuffled across rows.
It works for any pipeline, and it is what the drift monitor needs: a feature whose
shuffling costs the ranking nothing can shift without harming the model. The values
are returned as shares of the total (negative losses, noise, count as zero), so they
compare across models; each registered version logs them as
``importance/importance.json`` beside its reference distributions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance


def global_importance(
    pipeline, inputs: pd.DataFrame, labels: np.ndarray, rows: int = 5000, repeats: int = 3, seed: int = 0
) -> dict[str, float]:
    """Each input column's share of the ROC AUC the pipeline loses when that column is shuffled.

    At most ``rows`` rows of the holdout (sampled with ``seed``). An empty dict when the labels
    hold one class only (no AUC to lose).
    """
    if len(np.unique(labels)) < 2:
        return {}
    if len(inputs) > rows:
        picked = np.random.default_rng(seed).choice(len(inputs), size=rows, replace=False)
        inputs, labels = inputs.iloc[picked], np.asarray(labels)[picked]
    result = permutation_importance(pipeline, inputs, labels, scoring="roc_auc", n_repeats=repeats, random_state=seed)
    losses = np.clip(result.importances_mean, 0.0, None)
    total = float(losses.sum())
    if total <= 0:
        return {name: 0.0 for name in inputs.columns}
    return {name: round(float(loss / total), 6) for name, loss in zip(inputs.columns, losses)}


def importance_table(importance: dict[str, float]) -> str:
    """The importances as a Markdown table, largest first."""
    rows = sorted(importance.items(), key=lambda kv: -kv[1])
    return "| feature | share of ROC AUC lost when shuffled |\n|---|---|\n" + "".join(
        f"| {name} | {share:.3f} |\n" for name, share in rows
    )
