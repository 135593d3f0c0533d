"""Drift detection on simulated streams: silence on a stable world, the right alert after each onset."""

from __future__ import annotations

import pytest

from producers.simulator import SimConfig
from stream.drift.monitor import DriftConfig
from stream.drift.replay import replay
from training.config import DEFAULT_CONFIG, load_config
from training.dataset import SNAPSHOT, model_inputs
from training.reference import reference_distributions
from training.train import train

pytestmark = pytest.mark.unit

WARMUP = DriftConfig(warmup_events=100_000)
ONSET_DAY = 150
MAX_DELAY = 40_000  # events after onset


@pytest.fixture(scope="module")
def model():
    result = train(load_config(DEFAULT_CONFIG))
    events = result.split.train[result.split.train[SNAPSHOT] == "event"]
    x = model_inputs(events)
    reference = reference_distributions(x, result.pipeline.predict_proba(x)[:, 1])
    return (lambda frame: result.pipeline.predict_proba(frame)[:, 1]), reference


def run(model, scenario, days=240):
    predict, reference = model
    config = SimConfig(n_customers=2000, days=days, seed=11, scenario=scenario, onset_day=ONSET_DAY)
    return replay(config, predict, reference, drift=WARMUP)


def test_a_stable_stream_raises_no_alert(model):
    result = run(model, None)
    assert result.events - WARMUP.warmup_events >= 200_000
    assert result.alerts == []


@pytest.mark.parametrize(
    ("scenario", "kind", "feature"),
    [
        ("price_hike", "data", "monthly_charges"),
        ("support_surge", "data", "support_calls_30d"),
        ("new_plan", "data", "plan"),
        ("concept_flip", "concept", None),
    ],
)
def test_each_scenario_raises_the_right_alert_soon_after_onset(model, scenario, kind, feature, record_property):
    result = run(model, scenario, days=200)
    first = result.first()
    assert first is not None, f"{scenario}: no alert at all"
    index, alert = first
    assert index >= result.onset_index, f"{scenario}: alert before onset"
    assert alert.kind == kind
    if feature is not None:
        assert feature in alert.features
    delay = result.delay()
    record_property("detection_delay_events", delay)
    print(f"{scenario}: {alert.detector} ({alert.kind}) {delay} events after onset; stats {alert.features}")
    assert delay <= MAX_DELAY
