"""The validation gate: may a candidate model replace production?

Pure: it compares numbers and signatures it is given. Three checks, every failing
one named in the decision:

* absolute floors (ROC AUC, PR AUC, Brier score, batch latency budget);
* no regression: the candidate's ROC AUC may trail the production model's, measured
  on the same fresh holdout, by at most ``max_auc_regression``;
* signature compatibility: the candidate's inputs are exactly the ``FeatureVector``
  model inputs, in order.

>>> from training.config import GateConfig
>>> ok = {"roc_auc": 0.8, "pr_auc": 0.3, "brier": 0.05, "batch_latency_ms": 5}
>>> decide(ok, None, list(FEATURE_NAMES), GateConfig()).promote
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from schemas.features import FEATURE_NAMES
from training.config import GateConfig


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

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


def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    candidate_inputs: Sequence[str],
    config: GateConfig,
) -> GateDecision:
    """Promote only when every check passes; otherwise list each failure."""
    reasons: list[str] = []
    auc = candidate["roc_auc"]
    if not auc >= config.min_roc_auc:
        reasons.append(f"roc_auc {auc:.4f} below floor {config.min_roc_auc}")
    if not candidate["pr_auc"] >= config.min_pr_auc:
        reasons.append(f"pr_auc {candidate['pr_auc']:.4f} below floor {config.min_pr_auc}")
    if not candidate["brier"] <= config.max_brier:
        reasons.append(f"brier {candidate['brier']:.4f} above ceiling {config.max_brier}")
    latency = candidate.get("batch_latency_ms")
    if latency is not None and latency > config.latency_budget_ms:
        reasons.append(f"batch latency {latency:.1f} ms over budget {config.latency_budget_ms} ms")
    if champion is not None:
        floor = champion["roc_auc"] - config.max_auc_regression
        if not auc >= floor:
            reasons.append(
                f"regression: roc_auc {auc:.4f} vs production {champion['roc_auc']:.4f} "
                f"on the same holdout (tolerance {config.max_auc_regression})"
            )
    reasons.extend(signature_problems(candidate_inputs))
    return GateDecision(promote=not reasons, reasons=reasons)
