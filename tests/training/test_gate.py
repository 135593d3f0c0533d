"""The validation gate's three decisions and its floors."""

import pytest

from schemas.features import FEATURE_NAMES
from training.config import GateConfig
from training.gate import decide

pytestmark = pytest.mark.unit

GOOD = {"roc_auc": 0.82, "pr_auc": 0.35, "brier": 0.06, "batch_latency_ms": 4.0}
CONFIG = GateConfig(min_roc_auc=0.7, min_pr_auc=0.1, max_brier=0.25, max_auc_regression=0.01, latency_budget_ms=50)


def test_promotes_a_good_first_model():
    decision = decide(GOOD, None, list(FEATURE_NAMES), CONFIG)
    assert decision.promote and decision.reasons == []


def test_promotes_within_tolerance_of_production():
    decision = decide({**GOOD, "roc_auc": 0.815}, {"roc_auc": 0.82}, list(FEATURE_NAMES), CONFIG)
    assert decision.promote


def test_rejects_a_regression_against_production_on_the_same_holdout():
    decision = decide({**GOOD, "roc_auc": 0.79}, {"roc_auc": 0.82}, list(FEATURE_NAMES), CONFIG)
    assert not decision.promote
    assert len(decision.reasons) == 1 and decision.reasons[0].startswith("regression")


def test_rejects_a_signature_mismatch():
    inputs = [n for n in FEATURE_NAMES if n != "plan"] + ["region"]
    decision = decide(GOOD, None, inputs, CONFIG)
    assert not decision.promote
    assert decision.reasons == ["signature mismatch: missing ['plan'], unexpected ['region']"]


def test_rejects_reordered_inputs():
    decision = decide(GOOD, None, list(reversed(FEATURE_NAMES)), CONFIG)
    assert not decision.promote and "order" in decision.reasons[0]


@pytest.mark.parametrize(
    ("change", "word"),
    [
        ({"roc_auc": 0.6}, "roc_auc"),
        ({"pr_auc": 0.05}, "pr_auc"),
        ({"brier": 0.3}, "brier"),
        ({"batch_latency_ms": 80.0}, "latency"),
        ({"roc_auc": float("nan")}, "roc_auc"),
    ],
)
def test_rejects_below_each_floor(change, word):
    decision = decide({**GOOD, **change}, None, list(FEATURE_NAMES), CONFIG)
    assert not decision.promote
    assert any(word in r for r in decision.reasons)


def test_lists_every_failure():
    bad = {"roc_auc": 0.5, "pr_auc": 0.01, "brier": 0.5, "batch_latency_ms": 500.0}
    decision = decide(bad, {"roc_auc": 0.8}, ["x"], CONFIG)
    assert len(decision.reasons) == 6


def test_promotes_a_candidate_that_beats_production_below_the_old_floor():
    """After drift no model reaches the old floor: a clearly better candidate still replaces production."""
    harder = {**GOOD, "roc_auc": 0.6954}
    decision = decide(harder, {"roc_auc": 0.6454}, list(FEATURE_NAMES), CONFIG)
    assert decision.promote, decision.reasons
    assert decision.evidence["floors_waived"] == "roc_auc"
    assert decision.evidence["gain_over_production"] == pytest.approx(0.05)


def test_floor_without_a_clear_gain_still_rejects():
    decision = decide({**GOOD, "roc_auc": 0.66}, {"roc_auc": 0.65}, list(FEATURE_NAMES), CONFIG)
    assert not decision.promote
    assert decision.reasons == ["roc_auc 0.6600 below floor 0.7000"]


def test_a_candidate_worse_than_production_is_rejected_even_above_the_floors():
    decision = decide({**GOOD, "roc_auc": 0.74}, {"roc_auc": 0.80}, list(FEATURE_NAMES), CONFIG)
    assert not decision.promote and decision.reasons[0].startswith("regression")


def test_the_oracle_lowers_an_unattainable_floor():
    """Where the best attainable AUC is 0.72, a floor of 0.70 would reject nearly every model."""
    decision = decide({**GOOD, "roc_auc": 0.68, "oracle_roc_auc": 0.72}, None, list(FEATURE_NAMES), CONFIG)
    assert decision.promote, decision.reasons
    assert decision.evidence["roc_auc_floor"] == pytest.approx(0.67)


def test_waiving_never_covers_latency_or_signature():
    slow = {**GOOD, "roc_auc": 0.66, "batch_latency_ms": 80.0}
    decision = decide(slow, {"roc_auc": 0.60}, list(reversed(FEATURE_NAMES)), CONFIG)
    assert not decision.promote
    assert any("latency" in r for r in decision.reasons) and any("signature" in r for r in decision.reasons)
