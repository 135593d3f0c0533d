"""Production and the challenger measured on the same matured labels (``stream.drift.shadow``)."""

from __future__ import annotations

import numpy as np
import pytest

from stream.drift.shadow import ShadowComparison

pytestmark = pytest.mark.unit

DAY = 86_400.0


def stream(seed: int = 3, customers: int = 400, days: int = 120):
    """Daily scores of customers with a latent hazard; the hazard decides who closes when."""
    rng = np.random.default_rng(seed)
    hazard = rng.beta(1, 30, customers)
    closed = np.where(rng.random(customers) < hazard * 60, rng.uniform(10, days, customers), np.inf)
    return hazard, closed


def test_both_aliases_are_measured_on_the_same_events_and_the_better_model_wins():
    hazard, closed = stream()
    rng = np.random.default_rng(0)
    comparison = ShadowComparison(30 * DAY, {"production": "3", "challenger": "4"}, window=50_000)
    labelled = set()
    for day in range(120):
        ts = day * DAY
        alive = [c for c in range(len(hazard)) if closed[c] > ts]
        for c in range(len(hazard)):
            if c not in labelled and closed[c] <= ts:
                comparison.label(f"c{c}", float(closed[c]), c % 4)
                labelled.add(c)
        good = np.clip(hazard[alive] * 20, 0.001, 0.999)  # ranks by the true hazard
        noise = rng.uniform(0.01, 0.3, len(alive))  # knows nothing
        comparison.observe(
            [f"c{c}" for c in alive],
            [ts] * len(alive),
            {"production": noise, "challenger": good},
            [c % 4 for c in alive],
        )
    report = comparison.report()
    production, challenger = report["production"], report["challenger"]
    assert production["labels"] == challenger["labels"] == comparison.labels > 1000
    # Exactly the same events: the same labels in the same order in both windows.
    assert [y for _, y in comparison.joins["production"].pairs] == [y for _, y in comparison.joins["challenger"].pairs]
    assert challenger["roc_auc"] > production["roc_auc"] + 0.1
    assert challenger["brier"] < production["brier"]
    assert 0.4 < production["roc_auc"] < 0.6


def test_nothing_is_reported_before_a_label_matures_and_versions_are_checked():
    comparison = ShadowComparison(30 * DAY, {"production": "1", "challenger": "2"})
    comparison.observe(["a", "b"], [0.0, 0.0], {"production": [0.1, 0.2], "challenger": [0.3, 0.4]}, [0, 0])
    assert comparison.report() == {} and comparison.challenger == "challenger"
    with pytest.raises(ValueError):
        ShadowComparison(30 * DAY, {"challenger": "2", "other": "3"})
