"""The pure parts of retraining: parsing the feature log, the event-time window, the checks, the report, the event."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import orjson
import pandas as pd
import pytest

from schemas.features import FEATURE_NAMES
from stream.errors import ChurnError
from stream.pipeline.features import DAY
from training.config import DatasetConfig
from training.drift_report import feature_psi
from training.gate import GateDecision
from training.job import TrainOutcome
from training.model_events import model_event
from training.reference import reference_distributions
from training.retrain import check_split, data_window, parse_feature_log, snapshot_frame

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def vector(customer: str, event_id: str, day: float, **values) -> bytes:
    row = {
        "tenure_months": 3.0,
        "monthly_charges": 50.0,
        "has_autopay": 1,
        "support_calls_30d": 0,
        "failed_payments_90d": 0,
        "days_since_last_event": 1.0,
        "usage_30d": 10.0,
        "usage_trend": 0.0,
        "plan": "basic",
        **values,
    }
    ts = datetime.fromtimestamp(T0 + day * DAY, tz=UTC)
    return orjson.dumps(
        {"customer_id": customer, "event_id": event_id, "event_ts": ts, "feature_set_version": 1, **row}
    )


def label(customer: str, day: float) -> bytes:
    ts = datetime.fromtimestamp(T0 + day * DAY, tz=UTC)
    return orjson.dumps({"customer_id": customer, "event_id": f"{customer}-closed", "closed_at": ts})


def test_parse_deduplicates_skips_invalid_and_orders_by_event_time():
    records = [vector("c1", "e2", 2), vector("c1", "e1", 1), vector("c1", "e2", 2), b"{broken", vector("c2", "e3", 1)]
    log = parse_feature_log(records, [label("c1", 5), label("c1", 4), b"{}"])
    assert [v["event_id"] for v in log.vectors] == ["e1", "e3", "e2"]
    assert (log.records, log.duplicates, log.invalid, log.labels) == (5, 1, 2, 2)
    assert log.closed_at == {"c1": T0 + 4 * DAY}
    assert set(FEATURE_NAMES) <= set(log.vectors[0])


def test_window_is_the_most_recent_labelled_days():
    log = parse_feature_log([vector("c", f"e{d}", d) for d in range(101)], [])
    window = data_window(log, DatasetConfig(horizon_days=30, window_days=50))
    assert (window.clock_ts - T0) / DAY == 100
    assert (window.end_ts - T0) / DAY == 70 and (window.start_ts - T0) / DAY == 20
    assert (data_window(log, DatasetConfig(horizon_days=30), window_days=500).start_ts - T0) / DAY == 0
    frame = snapshot_frame(log, window, DatasetConfig(horizon_days=30, window_days=50))
    assert frame["event_ts"].min() == T0 + 20 * DAY and frame["event_ts"].max() == T0 + 70 * DAY


def test_since_keeps_only_the_world_after_it():
    log = parse_feature_log([vector("c", f"e{d}", d) for d in range(101)], [])
    config = DatasetConfig(horizon_days=30, window_days=50)
    window = data_window(log, config, since_ts=T0 + 45 * DAY)
    assert (window.start_ts - T0) / DAY == 45 and (window.end_ts - T0) / DAY == 70
    assert (data_window(log, config, since_ts=T0 + 5 * DAY).start_ts - T0) / DAY == 20  # the window still bounds it
    with pytest.raises(ChurnError, match="no snapshot since .* has a known label yet"):
        data_window(log, config, since_ts=T0 + 75 * DAY)


def test_a_log_too_short_or_empty_is_a_clear_error():
    with pytest.raises(ChurnError, match="feature log is empty"):
        data_window(parse_feature_log([], []), DatasetConfig())
    short = parse_feature_log([vector("c", f"e{d}", d) for d in range(20)], [])
    with pytest.raises(ChurnError, match="no snapshot has a known label yet"):
        data_window(short, DatasetConfig(horizon_days=30))


def test_split_check_names_what_is_missing():
    log = parse_feature_log([vector("c", f"e{d}", d) for d in range(100)], [])
    window = data_window(log, DatasetConfig(horizon_days=30))
    train = pd.DataFrame({"label": [0] * 300})
    holdout = pd.DataFrame({"label": [0] * 40 + [1] * 10})
    with pytest.raises(ChurnError) as err:
        check_split(train, holdout, window)
    message = str(err.value)
    assert "train has 0 churners (needs 5)" in message and "holdout has 50 snapshots (needs 50)" not in message
    assert "--window-days" in message
    check_split(pd.DataFrame({"label": [0] * 290 + [1] * 10}), holdout, window)


def test_feature_psi_is_zero_on_the_reference_and_high_on_a_shift():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({name: rng.gamma(2.0, 3.0, 5000) for name in FEATURE_NAMES if name != "plan"})
    frame["plan"] = rng.choice(["basic", "standard"], 5000)
    reference = reference_distributions(frame)
    assert max(feature_psi(reference, frame).values()) < 1e-9
    shifted = frame.assign(usage_30d=frame["usage_30d"] * 3, plan="flex")
    psi = feature_psi(reference, shifted)
    assert psi["usage_30d"] > 0.25 and psi["plan"] > 0.25 and psi["tenure_months"] < 1e-9


def outcome(promote: bool) -> TrainOutcome:
    reasons = [] if promote else ["roc_auc 0.5 below floor 0.7", "regression: roc_auc 0.5 vs production 0.8"]
    return TrainOutcome(
        version="7",
        run_id="r7",
        decision=GateDecision(promote, reasons),
        metrics={"roc_auc": 0.5},
        champion_version="6",
        checksum="abc",
    )


def test_model_events_for_promotion_and_rejection():
    now = datetime(2026, 3, 1, tzinfo=UTC)
    promoted = model_event("churn-model", outcome(True), "trigger=drift", now)
    assert (promoted.event_id, promoted.action, promoted.previous_version, promoted.checksum, promoted.run_id) == (
        "churn-model:7:promoted",
        "promoted",
        "6",
        "abc",
        "r7",
    )
    rejected = model_event("churn-model", outcome(False), "trigger=drift", now)
    assert rejected.action == "rejected" and rejected.checksum == "" and rejected.previous_version == ""
    assert rejected.reason.startswith("roc_auc 0.5 below floor 0.7; regression") and "trigger=drift" in rejected.reason


def test_the_oracle_of_a_world_generated_again_is_the_simulators_own():
    """The demo's retraining job measures the oracle by generating the published world again;
    it must give each snapshot the probability the simulator that published it gives."""
    from producers.simulator import SimConfig
    from training.config import SimulationConfig, TrainConfig
    from training.dataset import ORACLE, simulated_snapshots, world_oracle

    config = TrainConfig(
        seed=5, simulation=SimulationConfig(n_customers=150, days=100, scenario="concept_flip", onset_day=70)
    )
    frame, _ = simulated_snapshots(config)
    world = SimConfig(n_customers=150, days=400, seed=5, scenario="concept_flip", onset_day=70)
    rows = frame.iloc[:: max(1, len(frame) // 300)]
    got = world_oracle(SimConfig.from_json(world.to_json()), rows, config.dataset.horizon_days)
    assert len(rows) > 100 and rows[ORACLE].nunique() > 50
    np.testing.assert_allclose(got, rows[ORACLE].to_numpy(float), rtol=1e-12)
    # Another world's customers have other frailties: the check can fail.
    other = world_oracle(
        SimConfig(n_customers=150, days=400, seed=6, scenario="concept_flip", onset_day=70),
        rows,
        config.dataset.horizon_days,
    )
    assert not np.allclose(other, rows[ORACLE].to_numpy(float))
