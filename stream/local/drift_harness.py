"""Detection measured, not assumed: false alarms on stable streams, delay and kind per drift.

:func:`measure` replays simulated streams through the feature logic, a model and the
drift monitor at the settings a worker runs with (:meth:`DriftConfig.from_settings`),
over several seeds, each in a process of its own:

- **stable**: a stream without drift, replayed past the warm-up for at least
  ``stable_events`` events in total over the seeds; every alert on it is a false alarm;
- **each scenario** (the demo's four and the shapes the detectors were not tuned on: a
  surge ramped in over six weeks, a surge confined to one plan), replayed until its
  first alert after the onset or ``max_days_after`` days: the alert's kind, detector,
  harm and its delay after the onset in days and events;
- **seasonal**, a recurring peak, replayed for all ``max_days_after`` days: besides its
  first alert, how many alerts came after the first season (none should).

``churn drift-replay`` prints the table (``--out`` writes it as Markdown).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from producers.simulator import ALL_SCENARIOS, SEASON_DAYS, SimConfig, Simulator
from stream.drift.monitor import DriftConfig, DriftMonitor
from stream.local.drift_replay import Replay

DAY = 86_400.0
EVENTS_PER_CUSTOMER_DAY = 0.74
WARMUP_DAYS = 70


@dataclass(frozen=True)
class Model:
    """What a worker loads with a version: the scoring function and its drift baselines."""

    predict: Callable
    reference: dict
    baseline: dict
    importance: dict


@dataclass(frozen=True)
class Row:
    scenario: str  # "stable" for the stream without drift
    seed: int
    events: int  # replayed after the warm-up (stable) or after the onset (a scenario)
    alerts: int
    kind: str = ""
    detector: str = ""
    severity: str = ""
    harm: bool = False
    delay_days: float | None = None
    delay_events: int | None = None
    later_seasons: int | None = None  # seasonal only: alerts after the first season


_MODEL: Model | None = None  # inherited by the forked workers


def _replay(scenario: str | None, seed: int, customers: int, days: int, onset_day: int, config: DriftConfig) -> Row:
    model = _MODEL
    sim = Simulator(SimConfig(n_customers=customers, days=days, seed=seed, scenario=scenario, onset_day=onset_day))
    run = Replay(model.predict, model.reference, drift=config, onset_ts=sim.onset_ts)
    run.monitor = DriftMonitor(model.reference, "1", config, baseline=model.baseline, importance=model.importance)
    seasonal = scenario == "seasonal"
    result = run.play(sim.events(), until_detected=scenario is not None and not seasonal)
    if scenario is None:
        return Row("stable", seed, result.events - config.warmup_events, len(result.alerts))
    after = [(i, a) for i, a in result.alerts if result.onset_index is not None and i >= result.onset_index]
    events = result.events - (result.onset_index or result.events)
    later = sum(a.window_end.timestamp() >= sim.onset_ts + SEASON_DAYS * DAY for _, a in after) if seasonal else None
    if not after:
        return Row(scenario, seed, events, 0, later_seasons=later)
    index, alert = after[0]
    delay_days = (alert.window_end.timestamp() - sim.onset_ts) / DAY
    return Row(
        scenario,
        seed,
        events,
        len(after),
        alert.kind,
        alert.detector,
        alert.severity,
        alert.harm,
        round(delay_days, 1),
        index - result.onset_index,
        later,
    )


def measure(
    model: Model,
    config: DriftConfig,
    seeds: Sequence[int] = (1, 2, 3),
    customers: int = 3000,
    stable_events: int = 1_000_000,
    scenarios: Sequence[str] = ALL_SCENARIOS,
    onset_day: int = 90,
    max_days_after: int = 150,
    processes: int | None = None,
) -> list[Row]:
    """Every replay's row: the stable streams first, then each scenario and seed."""
    global _MODEL
    per_day = customers * EVENTS_PER_CUSTOMER_DAY
    warmup_events = int(per_day * WARMUP_DAYS)
    config = replace(config, warmup_events=warmup_events)
    stable_days = WARMUP_DAYS + int(stable_events / len(seeds) / per_day) + 2
    jobs = [(None, seed, customers, stable_days, onset_day, config) for seed in seeds]
    jobs += [
        (scenario, seed, customers, onset_day + max_days_after, onset_day, config)
        for scenario in scenarios
        for seed in seeds
    ]
    _MODEL = model
    with multiprocessing.get_context("fork").Pool(processes or os.cpu_count() or 1, maxtasksperchild=1) as pool:
        return pool.starmap(_replay, jobs, chunksize=1)


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table: one line per stable seed and per scenario and seed."""
    lines = [
        "| stream | seed | events | alerts | first alert (kind, detector, severity) | harm | delay days | "
        "delay events | alerts after the first season |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        first = f"{r.kind}, {r.detector}, {r.severity}" if r.kind else "-"
        lines.append(
            f"| {r.scenario} | {r.seed} | {r.events:,} | {r.alerts} | {first} | "
            f"{'yes' if r.harm else ('no' if r.kind else '-')} | "
            f"{'' if r.delay_days is None else r.delay_days} | "
            f"{'' if r.delay_events is None else f'{r.delay_events:,}'} | "
            f"{'' if r.later_seasons is None else r.later_seasons} |"
        )
    stable = [r for r in rows if r.scenario == "stable"]
    if stable:
        events, alarms = sum(r.events for r in stable), sum(r.alerts for r in stable)
        lines.append(f"\nFalse alarms: {alarms} in {events:,} stable events ({alarms / events * 1e6:.2f} per million).")
    return "\n".join(lines)
