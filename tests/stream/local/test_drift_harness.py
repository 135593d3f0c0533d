"""The replay harness: a stable stream counted for false alarms, a scenario timed to its first alert."""

from __future__ import annotations

import pytest

from stream.drift.monitor import DriftConfig
from stream.local.drift_harness import Model, Row, measure, table
from training.dataset import SNAPSHOT, label_array, model_inputs
from training.importance import global_importance
from training.reference import reference_distributions

pytestmark = pytest.mark.unit


def test_the_harness_counts_stable_events_and_times_a_drift_shape(bootstrap_result):
    result = bootstrap_result
    x = model_inputs(result.split.train[result.split.train[SNAPSHOT] == "event"])
    holdout = result.split.holdout
    model = Model(
        lambda frame: result.pipeline.predict_proba(frame)[:, 1],
        reference_distributions(x, result.pipeline.predict_proba(x)[:, 1]),
        dict(result.metrics),
        global_importance(result.pipeline, model_inputs(holdout), label_array(holdout)),
    )
    rows = measure(
        model,
        DriftConfig(),
        seeds=(5,),
        customers=1000,
        stable_events=30_000,
        scenarios=("support_surge",),
        max_days_after=60,
        processes=2,
    )
    stable, surge = rows
    assert stable.scenario == "stable" and stable.events >= 30_000
    assert surge.scenario == "support_surge" and surge.events > 0
    # Four times the support calls are seen, after the onset, as a shift.
    assert surge.kind in ("data", "prediction", "concept") and surge.delay_days is not None
    assert 0 <= surge.delay_days <= 60 and surge.delay_events > 0
    text = table(rows)
    assert "| support_surge | 5 |" in text and "per million" in text


def test_the_table_says_when_a_drift_went_unseen():
    text = table([Row("stable", 1, 1_000_000, 0), Row("gradual_surge", 1, 90_000, 0)])
    assert "| gradual_surge | 1 | 90,000 | 0 | - | - |  |  |  |" in text
    assert "False alarms: 0 in 1,000,000 stable events (0.00 per million)." in text


def test_the_table_counts_a_seasonal_streams_alerts_after_its_first_season():
    rows = [
        Row("seasonal", 2, 300_000, 3, "data", "feature_psi", "low", False, 1.5, 2_400, 1),
        Row("support_surge", 2, 20_000, 1, "data", "feature_psi", "medium", True, 3.0, 6_000),
    ]
    text = table(rows)
    assert "| seasonal | 2 | 300,000 | 3 | data, feature_psi, low | no | 1.5 | 2,400 | 1 |" in text
    assert "| support_surge | 2 | 20,000 | 1 | data, feature_psi, medium | yes | 3.0 | 6,000 |  |" in text
