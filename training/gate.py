"""The validation gate: may a candidate model replace production?

Pure: it compares numbers and signatures it is given. Every failing check is named in
the decision, and every number it judged is in ``GateDecision.evidence``.

* Absolute floors (ROC AUC, PR AUC, Brier score). They guard a first model, and a
  candidate when no production model was measured. When drift has made the world
  harder, no model reaches the old floors, and keeping production there keeps the
  worse model: so a candidate whose ROC AUC beats production's, on the same fresh
  holdout, by at least ``min_gain_over_production`` is promoted with the floors it
  misses waived (named in the evidence). Where the simulator's oracle was measured on
  the holdout (the best any model can reach there), the ROC AUC floor is at most
  ``max_gap_to_oracle`` below it.
* No regression: the candidate's ROC AUC may trail production's, on the same
  holdout, by at most ``max_auc_regression``.
* Hard limits, never waived: the batch latency budget, and the signature (the
  candidate's inputs are exactly the ``FeatureVector`` model inputs, in order).

>>> from training.config import GateConfig
>>> ok = {"roc_auc": 0.8, "pr_auc": 0.3, "brier": 0.05, "batch_latency_ms": 5}
>>> decide(ok, None, list(FEATURE_NAMES), GateConfig()).promote
True
>>> harder = {"roc_auc": 0.69, "pr_auc": 0.3, "brier": 0.05}
>>> decide(harder, {"roc_auc": 0.64}, list(FEATURE_NAMES), GateConfig()).evidence["floors_waived"]
'roc_auc'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeGuard

from schemas.features import FEATURE_NAMES
from training.config import GateConfig


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    evidence: dict[str, float | str] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        return "promoted" if self.promote else "rejected: " + "; ".join(self.reasons)


def signature_problems(input_names: Sequence[str]) -> list[str]:
    """What keeps a model with these input columns from serving ``FeatureVector``s."""
    expected = list(FEATURE_NAMES)
    names = list(input_names)
    if names == expected:
        return []
    missing = [n for n in expected if n not in names]
    extra = [n for n in names if n not in expected]
    if missing or extra:
        return [f"signature mismatch: missing {missing}, unexpected {extra}"]
    return [f"signature mismatch: input order {names} differs from {expected}"]


def _finite(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and math.isfinite(value)


def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    candidate_inputs: Sequence[str],
    config: GateConfig,
) -> GateDecision:
    """Promote only when every check passes; otherwise list each failure.

    ``candidate`` may carry ``oracle_roc_auc``: the best ROC AUC attainable on the same holdout.
    """
    auc = candidate["roc_auc"]
    evidence: dict[str, float | str] = {
        "candidate_roc_auc": auc,
        "candidate_pr_auc": candidate["pr_auc"],
        "candidate_brier": candidate["brier"],
    }
    roc_floor = config.min_roc_auc
    oracle = candidate.get("oracle_roc_auc")
    if _finite(oracle):
        evidence["oracle_roc_auc"] = oracle
        roc_floor = min(roc_floor, oracle - config.max_gap_to_oracle)
    evidence["roc_auc_floor"] = roc_floor

    floors: dict[str, str] = {}
    if not auc >= roc_floor:
        floors["roc_auc"] = f"roc_auc {auc:.4f} below floor {roc_floor:.4f}"
    if not candidate["pr_auc"] >= config.min_pr_auc:
        floors["pr_auc"] = f"pr_auc {candidate['pr_auc']:.4f} below floor {config.min_pr_auc}"
    if not candidate["brier"] <= config.max_brier:
        floors["brier"] = f"brier {candidate['brier']:.4f} above ceiling {config.max_brier}"

    reasons: list[str] = []
    beats_production = False
    if champion is not None:
        evidence["production_roc_auc"] = champion["roc_auc"]
        gain = auc - champion["roc_auc"] if _finite(auc) and _finite(champion["roc_auc"]) else math.nan
        evidence["gain_over_production"] = gain
        beats_production = gain >= config.min_gain_over_production
        if not auc >= champion["roc_auc"] - config.max_auc_regression:
            reasons.append(
                f"regression: roc_auc {auc:.4f} vs production {champion['roc_auc']:.4f} "
                f"on the same holdout (tolerance {config.max_auc_regression})"
            )
    if floors and beats_production:
        evidence["floors_waived"] = ",".join(floors)
    else:
        reasons.extend(floors.values())
    latency = candidate.get("batch_latency_ms")
    if latency is not None and latency > config.latency_budget_ms:
        reasons.append(f"batch latency {latency:.1f} ms over budget {config.latency_budget_ms} ms")
    reasons.extend(signature_problems(candidate_inputs))
    return GateDecision(promote=not reasons, reasons=reasons, evidence=evidence)
