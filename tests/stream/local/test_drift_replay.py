"""Drift detection on simulated streams: silence on a stable world, the right alert after each onset."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from producers.simulator import SCENARIOS, SimConfig, Simulator
from stream.drift.monitor import DriftConfig
from stream.local.drift_replay import Replay, replay
from training.dataset import SNAPSHOT, model_inputs
from training.reference import reference_distributions

pytestmark = pytest.mark.unit

WARMUP = DriftConfig(warmup_events=100_000)
ONSET_DAY = 150
MAX_DELAY = 40_000  # events after onset


SCENARIO_DAYS = 200
STABLE_DAYS = 240
_PREFIX: tuple | None = None  # (simulator, replay) at the onset day, inherited by the forked branches


def _config(scenario: str | None, days: int) -> SimConfig:
    return SimConfig(n_customers=2000, days=days, seed=11, scenario=scenario, onset_day=ONSET_DAY)


def _branch(scenario: str | None, days: int):
    """The replay's continuation from the onset day into ``scenario`` (in a fresh fork of the prefix)."""
    sim, run = _PREFIX
    sim.config = _config(scenario, days)
    run.onset_ts = sim.onset_ts
    # A scenario's replay ends at its first alert after the onset; the stable one runs to the end.
    return run.play(sim.resume(), until_detected=scenario is not None)


@pytest.fixture(scope="module")
def replays(bootstrap_result):
    """Every replay of this module: the stable stream's days before the onset replayed once,
    then each continuation (the stable one and a scenario each) in its own fork of it.

    The streams are the same up to the onset day (same seed, customers and draws), which
    ``test_a_branch_replays_like_the_whole_scenario_stream`` checks on a small world.
    """
    global _PREFIX
    result = bootstrap_result
    events = result.split.train[result.split.train[SNAPSHOT] == "event"]
    x = model_inputs(events)
    reference = reference_distributions(x, result.pipeline.predict_proba(x)[:, 1])
    sim = Simulator(_config(None, STABLE_DAYS))
    run = Replay(lambda frame: result.pipeline.predict_proba(frame)[:, 1], reference, drift=WARMUP)
    assert not run.feed(sim.events(until_day=ONSET_DAY))
    _PREFIX = sim, run
    jobs = {None: STABLE_DAYS, **{scenario: SCENARIO_DAYS for scenario in SCENARIOS}}
    # One task per process, forked from this one: each branch starts from the untouched prefix.
    with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1, maxtasksperchild=1) as pool:
        pending = {scenario: pool.apply_async(_branch, (scenario, days)) for scenario, days in jobs.items()}
        return {scenario: job.get(timeout=900) for scenario, job in pending.items()}


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


def test_a_branch_replays_like_the_whole_scenario_stream(bootstrap_result):
    """A replay fed the stable days before the onset, then resumed into a scenario, finds what the
    scenario's own replay finds, at the same events (the fixture above relies on it)."""
    result = bootstrap_result
    x = model_inputs(result.split.train[result.split.train[SNAPSHOT] == "event"])
    reference = reference_distributions(x, result.pipeline.predict_proba(x)[:, 1])

    def predict(frame):
        return result.pipeline.predict_proba(frame)[:, 1]

    small = DriftConfig(warmup_events=15_000, window_events=1000)
    world = {"n_customers": 400, "days": 110, "seed": 5, "onset_day": 70}
    whole = replay(SimConfig(scenario="price_hike", **world), predict, reference, drift=small, batch=300)
    sim = Simulator(SimConfig(scenario=None, **world))
    run = Replay(predict, reference, drift=small, batch=300)
    assert not run.feed(sim.events(until_day=world["onset_day"]))
    sim.config = SimConfig(scenario="price_hike", **world)
    run.onset_ts = sim.onset_ts
    branched = run.play(sim.resume())

    def found(r):
        return [(i, a.detector, a.kind, a.window_start, a.window_end, a.features) for i, a in r.alerts]

    assert whole.onset_index is not None and any(i >= whole.onset_index for i, _ in whole.alerts), (
        "the scenario raised no alert after its onset: nothing to compare"
    )
    assert (branched.events, branched.onset_index) == (whole.events, whole.onset_index)
    assert found(branched) == found(whole)
