"""The customer simulator: determinism, valid ordered events, scenarios, oracle, pacing."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import timedelta
from functools import cache

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from producers.simulator import (
    ALL_SCENARIOS,
    FLEX_PLAN,
    SCENARIOS,
    SEASON_DAYS,
    SEASON_PEAK_DAYS,
    SEASON_USAGE,
    SimConfig,
    Simulator,
    paced,
)
from schemas.events import AccountEvent, Usage, dump_event, parse_event
from stream.pipeline.features import DAY, CustomerState, apply, feature_values

pytestmark = pytest.mark.unit

SMALL = SimConfig(n_customers=150, days=60, seed=11, onset_day=30)


@cache
def run(config: SimConfig) -> tuple[Simulator, tuple[AccountEvent, ...]]:
    """Simulate once per config and share the result between tests."""
    sim = Simulator(config)
    return sim, tuple(sim.events())


def scenario(name: str | None, base: SimConfig = SMALL) -> SimConfig:
    return SimConfig(
        n_customers=base.n_customers, days=base.days, seed=base.seed, onset_day=base.onset_day, scenario=name
    )


def split(config: SimConfig) -> tuple[list[AccountEvent], list[AccountEvent]]:
    """Events of a run before and from the onset day."""
    sim, events = run(config)
    onset = config.start.timestamp() + config.onset_day * DAY
    return [e for e in events if e.ts.timestamp() < onset], [e for e in events if e.ts.timestamp() >= onset]


def active_days(config: SimConfig, lo: float, hi: float) -> int:
    """Customer-days of active customers between day ``lo`` and ``hi`` (event time)."""
    _, events = run(config)
    t0 = config.start.timestamp()
    opened: dict[str, float] = {}
    closed: dict[str, float] = {}
    for e in events:
        if e.event_type == "signup":
            opened[e.customer_id] = max(0.0, (e.ts.timestamp() - t0) / DAY)
        elif e.event_type == "account_closed":
            closed[e.customer_id] = (e.ts.timestamp() - t0) / DAY
    return round(sum(max(0.0, min(hi, closed.get(c, hi)) - max(lo, o)) for c, o in opened.items()))


# --- determinism and validity ---------------------------------------------------------


def test_same_seed_gives_identical_events():
    a = [dump_event(e) for e in Simulator(SMALL).events()]
    b = [dump_event(e) for e in run(SMALL)[1]]
    assert a == b


def test_iterating_twice_restarts_from_the_seed():
    sim = Simulator(SimConfig(n_customers=20, days=10))
    first = [dump_event(e) for e in sim.events()]
    assert [dump_event(e) for e in sim.events()] == first


def test_different_seed_gives_different_events():
    other = SimConfig(n_customers=SMALL.n_customers, days=SMALL.days, seed=SMALL.seed + 1, onset_day=SMALL.onset_day)
    a = [dump_event(e) for e in run(SMALL)[1]]
    b = [dump_event(e) for e in Simulator(other).events()]
    assert a != b


def test_golden_counts():
    """Tripwire: a change to the simulator or to the feature logic shows up here."""
    sim = Simulator(SimConfig(n_customers=20, days=10, seed=3))
    counts = Counter(e.event_type for e in sim.events())
    assert counts["signup"] == len(sim.customers)
    assert counts == Counter({"usage": 133, "signup": 21, "payment": 6, "support_call": 3, "account_closed": 2})


def test_every_event_validates_and_round_trips():
    for event in run(SMALL)[1]:
        assert parse_event(dump_event(event)) == event


def test_event_time_never_goes_backwards():
    events = run(SMALL)[1]
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(events))


def test_backdated_signups_open_the_stream():
    sim, events = run(SMALL)
    start = SMALL.start
    before = list(itertools.takewhile(lambda e: e.ts < start, events))
    assert len(before) == SMALL.n_customers
    assert {e.event_type for e in before} == {"signup"}
    assert all(e.ts >= start for e in events[len(before) :])
    oldest = min(e.ts for e in before)
    assert (start - oldest).days <= 48 * 31


def test_event_and_customer_ids_are_unique_and_prefixed():
    config = SimConfig(n_customers=30, days=20, id_prefix="run1-")
    sim = Simulator(config)
    events = list(sim.events())
    ids = [e.event_id for e in events]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("run1-e") for i in ids)
    assert all(c.startswith("run1-c") for c in sim.customers)
    assert {e.customer_id for e in events} == set(sim.customers)
    assert len(set(sim.customers)) == len(sim.customers) > config.n_customers  # new customers joined


def test_customer_lifecycle_is_consistent():
    """One signup, first; nothing after the account is closed; payments match the charges."""
    _, events = run(SMALL)
    by_customer: dict[str, list[AccountEvent]] = {}
    for e in events:
        by_customer.setdefault(e.customer_id, []).append(e)
    for history in by_customer.values():
        assert history[0].event_type == "signup"
        assert sum(e.event_type == "signup" for e in history) == 1
        closes = [i for i, e in enumerate(history) if e.event_type == "account_closed"]
        assert closes in ([], [len(history) - 1])
        plans = [(e.ts, e.monthly_charges) for e in history if e.event_type in ("signup", "plan_changed")]
        for payment in (e for e in history if e.event_type == "payment"):
            day_start = payment.ts.replace(hour=0, minute=0, second=0)  # the bill uses the charges at day start
            assert payment.amount == [c for ts, c in plans if ts < day_start][-1]


def test_events_are_generated_lazily():
    sim = Simulator(SimConfig(n_customers=50, days=100_000))
    head = list(itertools.islice(sim.events(), 60))
    assert len(head) == 60
    assert len(sim.customers) < 100


def test_population_stays_roughly_stable():
    config = SimConfig(n_customers=300, days=120, seed=5)
    sim = Simulator(config)
    events = list(sim.events())
    closed = sum(e.event_type == "account_closed" for e in events)
    active = len(sim.customers) - closed
    assert 0.85 * config.n_customers <= active <= 1.15 * config.n_customers


# --- configuration ----------------------------------------------------------------------


def test_unknown_scenario_names_the_allowed_ones():
    with pytest.raises(ValueError) as info:
        SimConfig(scenario="bogus")
    for name in SCENARIOS:
        assert name in str(info.value)


def test_onset_ts():
    assert Simulator(SimConfig()).onset_ts is None
    sim = Simulator(SimConfig(scenario="price_hike", onset_day=10))
    assert sim.onset_ts == SimConfig().start.timestamp() + 10 * DAY


# --- scenarios: nothing changes before the onset, the right thing changes after ---------


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_scenario_leaves_events_before_onset_untouched(name):
    before, _ = split(scenario(name))
    baseline, _ = split(scenario(None))
    assert [dump_event(e) for e in before] == [dump_event(e) for e in baseline]


def test_price_hike_raises_charges_after_onset():
    before, after = split(scenario("price_hike"))
    _, baseline_after = split(scenario(None))

    def mean_charges(events):
        return np.mean([e.monthly_charges for e in events if e.event_type in ("signup", "plan_changed")])

    def mean_payment(events):
        return np.mean([e.amount for e in events if e.event_type == "payment"])

    assert mean_charges(after) > 1.2 * mean_charges(before)
    assert mean_payment(after) > 1.2 * mean_payment(baseline_after)
    # every active customer got the hike on the onset day, with their own plan
    hikes = [e for e in after if e.event_type == "plan_changed"]
    assert len(hikes) >= 0.8 * SMALL.n_customers


def test_support_surge_multiplies_support_calls():
    config = scenario("support_surge")
    _, after = split(config)
    _, baseline_after = split(scenario(None))
    surge = sum(e.event_type == "support_call" for e in after)
    normal = sum(e.event_type == "support_call" for e in baseline_after)
    per_day = surge / active_days(config, config.onset_day, config.days)
    per_day_normal = normal / active_days(scenario(None), config.onset_day, config.days)
    assert per_day > 2.5 * per_day_normal


def test_seasonal_peaks_recur_in_the_first_week_of_every_season():
    config = scenario("seasonal")
    _, after = split(config)
    _, baseline_after = split(scenario(None))
    onset = config.start.timestamp() + config.onset_day * DAY

    def usage(events, peak: bool) -> float:
        return sum(
            e.amount
            for e in events
            if e.event_type == "usage" and ((e.ts.timestamp() - onset) // DAY % SEASON_DAYS < SEASON_PEAK_DAYS) == peak
        )

    assert usage(after, True) == pytest.approx(SEASON_USAGE * usage(baseline_after, True), rel=1e-3)
    assert usage(after, False) == pytest.approx(usage(baseline_after, False), rel=1e-6)
    assert usage(after, True) > 0 and usage(after, False) > 0


def test_new_plan_appears_only_after_onset():
    before, after = split(scenario("new_plan"))
    assert not any(getattr(e, "plan", None) == FLEX_PLAN for e in before)
    flex = [e for e in after if getattr(e, "plan", None) == FLEX_PLAN]
    assert {e.event_type for e in flex} == {"signup", "plan_changed"}


def test_concept_flip_reverses_autopay():
    sim = Simulator(scenario("concept_flip"))
    values = {
        "tenure_months": 12.0,
        "monthly_charges": 60.0,
        "has_autopay": 0,
        "support_calls_30d": 1,
        "failed_payments_90d": 0,
        "days_since_last_event": 1.0,
        "usage_30d": 100.0,
        "usage_trend": 0.0,
        "plan": "standard",
    }
    autopay = {**values, "has_autopay": 1}
    onset = sim.onset_ts
    early, late = onset - DAY, onset
    assert sim.true_hazard("c000001", autopay, early) < sim.true_hazard("c000001", values, early)
    assert sim.true_hazard("c000001", autopay, late) > sim.true_hazard("c000001", values, late)
    # without the scenario autopay always protects
    plain = Simulator(scenario(None))
    assert plain.true_hazard("c000001", autopay, late) < plain.true_hazard("c000001", values, late)


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_resumed_stream_branches_into_the_new_configs_own_stream(name):
    """Stopped at the onset day and resumed under a scenario's config, the stream is that config's stream."""
    stable = scenario(None)
    sim = Simulator(stable)
    before = list(sim.events(until_day=stable.onset_day))
    assert before and before[-1].ts.timestamp() < stable.start.timestamp() + stable.onset_day * DAY
    sim.config = scenario(name)
    branched = [*before, *sim.resume()]
    whole = list(Simulator(scenario(name)).events())
    assert [e.model_dump() for e in branched] == [e.model_dump() for e in whole]
    # The stable stream differs after the onset: the branch is not the stable stream again.
    assert [e.model_dump() for e in whole] != [e.model_dump() for e in run(stable)[1]]


# --- the hazard and the oracle -------------------------------------------------------------

BASE_VALUES = {
    "tenure_months": 12.0,
    "monthly_charges": 60.0,
    "has_autopay": 0,
    "support_calls_30d": 0,
    "failed_payments_90d": 0,
    "days_since_last_event": 1.0,
    "usage_30d": 100.0,
    "usage_trend": 0.0,
    "plan": "standard",
}


@pytest.mark.parametrize(
    ("feature", "value", "direction"),
    [
        ("tenure_months", 0.5, +1),
        ("monthly_charges", 95.0, +1),
        ("support_calls_30d", 3, +1),
        ("failed_payments_90d", 2, +1),
        ("days_since_last_event", 14.0, +1),
        ("usage_trend", -2.0, +1),
        ("has_autopay", 1, -1),
        ("plan", "premium", -1),
        ("plan", FLEX_PLAN, +1),
    ],
)
def test_hazard_responds_to_features(feature, value, direction):
    sim = Simulator(SimConfig())
    at = SimConfig().start.timestamp()
    base = sim.true_hazard("someone", BASE_VALUES, at)
    changed = sim.true_hazard("someone", {**BASE_VALUES, feature: value}, at)
    assert np.sign(changed - base) == direction


def test_oracle_is_the_horizon_probability_of_the_hazard():
    sim = Simulator(SimConfig())
    at = SimConfig().start.timestamp()
    h = sim.true_hazard("someone", BASE_VALUES, at)
    assert 0.0 < h < 0.01
    assert sim.oracle_probability("someone", BASE_VALUES, at, 30) == pytest.approx(1 - (1 - h) ** 30)
    assert sim.oracle_probability("someone", BASE_VALUES, at, 0) == 0.0


def test_oracle_of_many_rows_is_each_rows_own_oracle_across_the_flip():
    """The vectorized oracle flips per row at the onset and gives unknown ids the mean frailty."""
    sim = Simulator(scenario("concept_flip"))
    events = list(sim.events())  # creates the customers and their frailties
    known = sorted({e.customer_id for e in events})[:3]
    onset = sim.onset_ts
    rows = [
        (c, {**BASE_VALUES, "has_autopay": autopay, "support_calls_30d": calls}, at)
        for c in [*known, "stranger"]
        for autopay in (0, 1)
        for calls in (0, 2)
        for at in (onset - DAY, onset, onset + 3 * DAY)
    ]
    ids, values, at = zip(*rows, strict=True)
    many = sim.oracle_probabilities(ids, values, np.array(at), 30)
    one = [sim.oracle_probability(c, v, t, 30) for c, v, t in rows]
    np.testing.assert_allclose(many, one, rtol=1e-12)
    # Autopay protects before the onset only, and customers differ by their frailty.
    before = {
        (c, v["has_autopay"]): p
        for (c, v, t), p in zip(rows, one, strict=True)
        if t < onset and v["support_calls_30d"] == 0
    }
    after = {
        (c, v["has_autopay"]): p
        for (c, v, t), p in zip(rows, one, strict=True)
        if t == onset and v["support_calls_30d"] == 0
    }
    assert all(before[c, 1] < before[c, 0] and after[c, 1] > after[c, 0] for c in [*known, "stranger"])
    assert len({before[c, 0] for c in [*known, "stranger"]}) == 4
    with pytest.raises(ValueError, match="horizon_days"):
        sim.oracle_probabilities(ids, values, np.array(at), -1)


def snapshots(config: SimConfig, days: list[int], horizon: int = 30):
    """Point-in-time snapshots replayed through the shared feature logic: (label, oracle score)."""
    sim, events = run(config)
    start = config.start.timestamp()
    cuts = [start + d * DAY for d in days]
    states: dict[str, CustomerState] = {}
    taken: list[tuple[float, str, dict]] = []
    closed: dict[str, float] = {}
    i = 0
    for e in events:
        ts = e.ts.timestamp()
        while i < len(cuts) and ts >= cuts[i]:
            taken += [(cuts[i], c, feature_values(s, cuts[i])) for c, s in states.items() if s.closed_ts is None]
            i += 1
        apply(states.setdefault(e.customer_id, CustomerState()), e)
        if e.event_type == "account_closed":
            closed[e.customer_id] = ts
    labels = np.array([c in closed and at < closed[c] <= at + horizon * DAY for at, c, _ in taken])
    scores = np.array([sim.oracle_probability(c, v, at, horizon) for at, c, v in taken])
    return labels, scores


ORACLE = SimConfig(n_customers=500, days=140, seed=7)


def test_churn_base_rate_is_sane():
    labels, scores = snapshots(ORACLE, [60, 75, 90, 105])
    assert 0.04 <= labels.mean() <= 0.15
    assert 0.02 <= scores.mean() <= 0.15


def test_oracle_ranks_churners_well():
    labels, scores = snapshots(ORACLE, [60, 75, 90, 105])
    auc = roc_auc_score(labels, scores)
    assert auc >= 0.75, auc


# --- pacing ---------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _usage_at(days: float, n: int) -> AccountEvent:
    return Usage(event_id=f"e{n}", customer_id="c1", ts=SMALL.start + timedelta(days=days), amount=1.0)


def test_paced_waits_for_the_accelerated_clock():
    clock = FakeClock()
    events = [_usage_at(d, n) for n, d in enumerate([0.0, 0.5, 0.5, 2.0])]
    out = list(paced(events, 10.0, clock=clock, sleep=clock.sleep))
    assert out == events
    assert clock.sleeps == pytest.approx([5.0, 15.0])


def test_paced_does_not_wait_when_behind_schedule():
    clock = FakeClock()
    events = [_usage_at(d, n) for n, d in enumerate([0.0, 1.0, 2.0])]

    def slow_consumer():
        for e in paced(events, 10.0, clock=clock, sleep=clock.sleep):
            clock.now += 30.0  # the consumer itself takes longer than a simulated day
            yield e

    assert len(list(slow_consumer())) == 3
    assert clock.sleeps == []


def test_paced_applies_a_changed_pace_from_the_moment_it_changes():
    clock = FakeClock()
    events = [_usage_at(d, n) for n, d in enumerate([0.0, 1.0, 2.0, 3.0])]
    pace = [10.0]
    out = []
    for event in paced(events, lambda: pace[0], clock=clock, sleep=clock.sleep):
        out.append(event)
        if len(out) == 2:
            pace[0] = 40.0  # day 1 is past: the days after it cost 40 s each
    assert out == events
    assert clock.sleeps == pytest.approx([10.0, 40.0, 40.0])
    with pytest.raises(ValueError):
        list(paced(events, lambda: float("nan")))


def test_paced_zero_is_as_fast_as_possible():
    clock = FakeClock()
    events = [_usage_at(d, n) for n, d in enumerate([0.0, 3.0])]
    assert list(paced(events, 0, clock=clock, sleep=clock.sleep)) == events
    assert clock.sleeps == []
    with pytest.raises(ValueError):
        list(paced(events, -1.0))


def test_paced_simulator_stream_skips_the_backdated_signups():
    clock = FakeClock()
    config = SimConfig(n_customers=10, days=3)
    events = list(paced(Simulator(config).events(), 1.0, clock=clock, sleep=clock.sleep, start=config.start))
    assert len(events) > config.n_customers
    assert clock.now - 100.0 <= 3.0  # three simulated days, one second each
