"""A markdown model card logged with every candidate."""

from __future__ import annotations

from collections.abc import Mapping

from schemas.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from training.config import TrainConfig


def model_card(
    name: str,
    config: TrainConfig,
    metrics: Mapping[str, float],
    fingerprint: str,
    champion: Mapping[str, float] | None,
    decision: str,
) -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items()))
    champion_line = (
        f"Production model on the same holdout: ROC AUC {champion['roc_auc']:.4f}."
        if champion
        else "No production model existed; this is a bootstrap candidate."
    )
    return f"""# Model card: {name}

## What it predicts
The probability that a customer closes the account within {config.dataset.horizon_days}
days of the scored event, from the per-customer features of `stream.pipeline.features`.

## Inputs
Numeric: {", ".join(NUMERIC_FEATURES)}. Categorical: {", ".join(CATEGORICAL_FEATURES)}
(one-hot; a plan never seen in training encodes as no plan effect).

## Data
Point-in-time snapshots (label = account closed within the horizon; only snapshots
whose horizon had passed), split by customer. Dataset fingerprint `{fingerprint}`.
Classifier: `{config.model.kind}`; seed {config.seed}.

## Holdout metrics
| metric | value |
|---|---|
{rows}

`oracle_roc_auc` is the best any model can reach on this data (the simulator's own
hazard); `heuristic_roc_auc` is a hand-written rule.

## Gate
{champion_line} Decision: {decision}.

## Limits
Trained on simulated or recently observed behaviour; drift in prices, support load,
plans or in what drives churn makes it stale, which the drift agent watches for.
"""
