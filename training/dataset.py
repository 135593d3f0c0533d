"""Point-in-time training datasets.

A row is a snapshot: the feature values of one customer at one event time ``t``,
computed by the same :mod:`stream.pipeline.features` functions the stream uses. Snapshots
are taken where the stream scores: at events (a sample of them), and every
``silence_days`` of a customer's quiet, as the worker's silence timer re-scores. Its label
is whether the customer closed the account within ``horizon`` after ``t``.
Only snapshots whose horizon has fully passed are kept, and nothing newer than
``t`` enters the features, so no label leaks into its own inputs.

Two sources produce the same frame: simulated histories replayed through the
feature logic (the bootstrap model) and the stream's own feature log joined with
its labels (retraining).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from producers.simulator import SimConfig, Simulator
from schemas.features import CATEGORICAL_FEATURES, FEATURE_NAMES, NUMERIC_FEATURES
from stream.pipeline.features import DAY, Admission, CustomerState, admit, apply, feature_values
from training.config import TrainConfig

LABEL = "label"
ORACLE = "oracle"
SNAPSHOT = "snapshot"  # "event" (emitted at an event) or "silence" (a silence re-score)
META_COLUMNS = ("customer_id", "event_id", "event_ts")


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame


def label_snapshots(
    snapshots: pd.DataFrame,
    closed_at: Mapping[str, float],
    horizon_days: int,
    end_ts: float,
    start_ts: float | None = None,
) -> pd.DataFrame:
    """Attach labels and keep only snapshots whose horizon has passed.

    ``snapshots`` has ``customer_id`` and ``event_ts`` (epoch seconds);
    ``closed_at`` maps a customer to the time the account closed. A snapshot at or
    after its customer's closure is dropped (the customer is gone).
    """
    horizon = horizon_days * DAY
    closed = snapshots["customer_id"].map(closed_at).astype(float)
    t = snapshots["event_ts"].astype(float)
    keep = (t + horizon <= end_ts) & ~(closed <= t)
    if start_ts is not None:
        keep &= t >= start_ts
    out = snapshots.loc[keep].copy()
    c = closed[keep]
    out[LABEL] = ((c > out["event_ts"]) & (c <= out["event_ts"] + horizon)).astype(int)
    return out.reset_index(drop=True)


def _keep(event_id: str, rate: float) -> bool:
    return zlib.crc32(event_id.encode()) % 10_000 < rate * 10_000


def simulated_snapshots(
    config: TrainConfig, on_event: Callable[[int], None] | None = None
) -> tuple[pd.DataFrame, Simulator]:
    """Replay a simulated history through the feature logic and label the snapshots."""
    sim_cfg = config.simulation
    sim_config = SimConfig(
        n_customers=sim_cfg.n_customers,
        days=sim_cfg.days,
        seed=config.seed,
        scenario=sim_cfg.scenario,
        onset_day=sim_cfg.onset_day,
    )
    sim = Simulator(sim_config)
    states: dict[str, CustomerState] = {}
    closed_at: dict[str, float] = {}
    rows: list[dict] = []
    rate = config.dataset.snapshot_rate
    horizon = config.dataset.horizon_days
    silence = config.dataset.silence_days * DAY

    def snapshot(state: CustomerState, customer_id: str, event_id: str, at: float, kind: str = "event") -> None:
        values = feature_values(state, at)
        values.update(customer_id=customer_id, event_id=event_id, event_ts=at)
        values[SNAPSHOT] = kind
        rows.append(values)

    def silent_snapshots(state: CustomerState, customer_id: str, until: float) -> None:
        # What the worker's silence timer emits: a re-score every `silence` of quiet.
        if state.last_ts is None or not silence:
            return
        at = state.last_ts + silence
        while at < until:
            snapshot(state, customer_id, f"{customer_id}@{int(at)}", at, "silence")
            at += silence

    for n, event in enumerate(sim.events(), 1):
        state = states.get(event.customer_id)
        if state is None:
            state = states[event.customer_id] = CustomerState()
        ts = event.ts.timestamp()
        if admit(state, event.event_id, ts) is not Admission.NEW:
            continue
        silent_snapshots(state, event.customer_id, ts)
        apply(state, event)
        if event.event_type == "account_closed":
            closed_at[event.customer_id] = ts
        elif _keep(event.event_id, rate):
            assert state.last_ts is not None  # apply() has just set the clock
            snapshot(state, event.customer_id, event.event_id, state.last_ts)
        if on_event is not None and n % 10_000 == 0:
            on_event(n)
    epoch = sim_config.start.timestamp()
    start_ts = epoch + config.dataset.warmup_days * DAY
    end_ts = epoch + sim_cfg.days * DAY
    for customer_id, state in states.items():
        if customer_id not in closed_at:
            silent_snapshots(state, customer_id, end_ts)
    frame = pd.DataFrame(rows, columns=[*FEATURE_NAMES, *META_COLUMNS, SNAPSHOT])
    frame.insert(len(FEATURE_NAMES) + len(META_COLUMNS), ORACLE, oracle_probabilities(sim, frame, horizon))
    return label_snapshots(frame, closed_at, horizon, end_ts, start_ts), sim


def oracle_probabilities(sim: Simulator, frame: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """The simulator's oracle for each snapshot (customer, feature values, event time), in one
    vectorized pass (per row it cost more than the features). ``sim`` must have created the
    customers: it has generated its events past the newest snapshot."""
    values = frame[list(FEATURE_NAMES)].to_dict("records")
    return sim.oracle_probabilities(
        frame["customer_id"].tolist(), values, frame["event_ts"].to_numpy(float), horizon_days
    )


def world_oracle(world: SimConfig, frame: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """:func:`oracle_probabilities` for snapshots of a stream the simulated ``world`` published
    (the demo's): the world is generated again, up to the day after the newest snapshot."""
    sim = Simulator(world)
    until_day = int((frame["event_ts"].max() - world.start.timestamp()) // DAY) + 1
    for _ in sim.events(until_day=until_day):
        pass
    return oracle_probabilities(sim, frame, horizon_days)


def feature_log_snapshots(
    vectors: Iterable[Mapping[str, object]],
    closed_at: Mapping[str, float],
    horizon_days: int,
    end_ts: float,
    start_ts: float | None = None,
) -> pd.DataFrame:
    """Snapshots from the stream's feature log (``churn-features`` records as dicts)."""
    rows = []
    for v in vectors:
        row = {name: v[name] for name in FEATURE_NAMES}
        ts = v["event_ts"]
        row.update(
            customer_id=v["customer_id"],
            event_id=v["event_id"],
            event_ts=ts if isinstance(ts, (int, float)) else pd.Timestamp(ts).timestamp(),
        )
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*FEATURE_NAMES, *META_COLUMNS])
    return label_snapshots(frame, closed_at, horizon_days, end_ts, start_ts)


def split_by_customer(frame: pd.DataFrame, holdout_fraction: float) -> Split:
    """Deterministic split by customer id, so no customer is on both sides."""
    bucket = frame["customer_id"].map(lambda c: zlib.crc32(str(c).encode()) % 10_000)
    mask = bucket < holdout_fraction * 10_000
    return Split(train=frame.loc[~mask].reset_index(drop=True), holdout=frame.loc[mask].reset_index(drop=True))


def model_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns, in contract order and with contract dtypes."""
    out = pd.DataFrame({name: frame[name].astype(float) for name in NUMERIC_FEATURES})
    for name in CATEGORICAL_FEATURES:
        out[name] = frame[name].astype(str)
    return out


def fingerprint(frame: pd.DataFrame) -> str:
    """A stable hash of a dataset's contents (rows, columns and values)."""
    digest = hashlib.sha256()
    digest.update(",".join(frame.columns).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def label_array(frame: pd.DataFrame) -> np.ndarray:
    return frame[LABEL].to_numpy(dtype=int)
