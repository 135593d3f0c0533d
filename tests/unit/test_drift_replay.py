"""Drift detection on simulated streams: silence on a stable world, the right alert after each onset."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from producers.simulator import SCENARIOS, SimConfig
from stream.drift.monitor import DriftConfig
from stream.drift.replay import replay
from training.dataset import SNAPSHOT, model_inputs
from training.reference import reference_distributions

pytestmark = pytest.mark.unit

WARMUP = DriftConfig(warmup_events=100_000)
ONSET_DAY = 150
MAX_DELAY = 40_000  # events after onset


SCENARIO_DAYS = 200
_MODEL: tuple | None = None  # (predict, reference) for the replay processes, inherited by fork


def _replay(scenario: str | None, days: int):
    predict, reference = _MODEL
    config = SimConfig(n_customers=2000, days=days, seed=11, scenario=scenario, onset_day=ONSET_DAY)
    # A scenario's replay ends at its first alert after the onset; the stable one runs to the end.
    return replay(config, predict, reference, drift=WARMUP, until_detected=scenario is not None)


@pytest.fixture(scope="module")
def replays(bootstrap_result):
    """Every replay of this module, run on all cores (each is independent and CPU-bound)."""
    global _MODEL
    result = bootstrap_result
    events = result.split.train[result.split.train[SNAPSHOT] == "event"]
    x = model_inputs(events)
    reference = reference_distributions(x, result.pipeline.predict_proba(x)[:, 1])
    _MODEL = (lambda frame: result.pipeline.predict_proba(frame)[:, 1]), reference
    jobs = {None: 240, **{scenario: SCENARIO_DAYS for scenario in SCENARIOS}}
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = {scenario: pool.submit(_replay, scenario, days) for scenario, days in jobs.items()}
        return {scenario: future.result() for scenario, future in futures.items()}


def test_a_stable_stream_raises_no_alert(replays):
    result = replays[None]
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
def test_each_scenario_raises_the_right_alert_soon_after_onset(replays, scenario, kind, feature, record_property):
    result = replays[scenario]
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
