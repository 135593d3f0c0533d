"""Drift statistics: PSI golden values, windows, hysteresis, river detectors, concept monitor."""

import itertools
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from schemas.features import CATEGORICAL_FEATURES, FEATURE_NAMES, NUMERIC_FEATURES
from stream.drift.detectors import (
    ConceptDriftMonitor,
    Cooldown,
    DataDriftDetector,
    Finding,
    Hysteresis,
    ScoreStreamDetector,
    expected_auc,
    roc_auc,
)
from stream.drift.monitor import DriftConfig, DriftMonitor
from stream.drift.psi import PSI_THRESHOLDS, categorical_psi, numeric_counts, psi, severity
from stream.drift.windows import BIN_AT, FeatureWindow, WindowReport
from training.reference import reference_distributions

pytestmark = pytest.mark.unit

EPS = 1e-4
PLANS = ("basic", "standard", "premium")


def frame(rng: np.random.Generator, n: int, shift: float = 0.0, plans=PLANS) -> pd.DataFrame:
    """A synthetic feature frame with every model input; ``shift`` moves charges and usage."""
    return pd.DataFrame(
        {
            "tenure_months": rng.gamma(2.0, 12.0, n),
            "monthly_charges": rng.normal(60 + 40 * shift, 15, n).clip(0),
            "has_autopay": rng.integers(0, 2, n),
            "support_calls_30d": rng.poisson(1 + 3 * shift, n),
            "failed_payments_90d": rng.poisson(0.3, n),
            "days_since_last_event": rng.exponential(3.0, n),
            "usage_30d": rng.gamma(3.0, 10.0 * (1 + shift), n),
            "usage_trend": rng.normal(0, 0.5, n),
            "plan": rng.choice(list(plans), n),
        }
    )


def rows(df: pd.DataFrame) -> list[dict]:
    return df[list(FEATURE_NAMES)].to_dict("records")


# ---------------------------------------------------------------- PSI


def test_psi_two_bins_golden():
    # actual shares 0.3 / 0.7 against 0.5 / 0.5:
    # (0.3-0.5) ln(0.3/0.5) + (0.7-0.5) ln(0.7/0.5) = 0.2 ln(7/3)
    assert psi([0.5, 0.5], [30, 70]) == pytest.approx(0.2 * math.log(7 / 3), abs=1e-9)
    assert psi([0.5, 0.5], [30, 70]) == pytest.approx(0.16945957207744, abs=1e-9)


def test_psi_empty_bin_smoothed_with_eps():
    # actual 0.5 / 0.5 / 0 (floored to 1e-4) against 0.2 / 0.3 / 0.5
    expected = 0.3 * math.log(2.5) + 0.2 * math.log(0.5 / 0.3) + (EPS - 0.5) * math.log(EPS / 0.5)
    assert psi([0.2, 0.3, 0.5], [10, 10, 0]) == pytest.approx(expected, abs=1e-9)
    assert psi([0.2, 0.3, 0.5], [10, 10, 0]) == pytest.approx(4.63479722070, abs=1e-9)


def test_psi_bin_empty_on_both_sides_contributes_nothing():
    assert psi([0.0, 0.5, 0.5], [0, 30, 70]) == pytest.approx(0.2 * math.log(7 / 3), abs=1e-9)


@pytest.mark.parametrize(
    "shares, counts",
    [([0.25, 0.75], [1, 3]), ([0.1, 0.2, 0.3, 0.4], [10, 20, 30, 40]), ([0.0, 1.0], [0, 7])],
)
def test_psi_zero_on_identical_distributions(shares, counts):
    assert psi(shares, counts) == 0.0


def test_psi_of_empty_window_is_zero_and_shapes_must_match():
    assert psi([0.5, 0.5], [0, 0]) == 0.0
    with pytest.raises(ValueError):
        psi([0.5, 0.5], [1, 2, 3])


def test_numeric_counts_follow_the_reference_bin_convention():
    # bin i holds v with searchsorted(edges, v, side="right") == i: a value on an edge goes right
    assert numeric_counts([1.0, 2.0], [0.5, 1.0, 1.5, 2.0, 9.0]).tolist() == [1, 2, 2]
    assert numeric_counts([1.0, 2.0], []).tolist() == [0, 0, 0]


def test_psi_zero_against_own_training_reference():
    values = np.random.default_rng(3).gamma(2.0, 5.0, 1000)
    ref = reference_distributions(pd.DataFrame({n: values for n in NUMERIC_FEATURES} | {"plan": ["a"] * 1000}))
    spec = ref["numeric"]["tenure_months"]
    assert psi(spec["shares"], numeric_counts(spec["edges"], values)) == pytest.approx(0.0, abs=1e-12)


def test_categorical_psi_golden_and_unseen_category_is_drift():
    ref = {"basic": 0.6, "premium": 0.4}
    assert categorical_psi(ref, Counter({"basic": 6, "premium": 4})) == pytest.approx(0.0, abs=1e-12)
    # actual basic 0.6, premium 0.3, gold 0.1 (unseen: expected eps)
    expected = (0.3 - 0.4) * math.log(0.3 / 0.4) + (0.1 - EPS) * math.log(0.1 / EPS)
    got = categorical_psi(ref, Counter({"basic": 6, "premium": 3, "gold": 1}))
    assert got == pytest.approx(expected, abs=1e-9)
    assert got == pytest.approx(0.71885295962, abs=1e-9)
    assert severity(got) == "high"


def test_categorical_psi_only_unseen_categories_does_not_error():
    assert categorical_psi({"basic": 1.0}, {"brand-new": 5}) > PSI_THRESHOLDS["major"]
    assert categorical_psi({"1": 1.0}, {1: 5}) == pytest.approx(0.0, abs=1e-12)  # keys compared as str


def test_severity_follows_thresholds():
    assert PSI_THRESHOLDS == {"moderate": 0.1, "major": 0.25}
    assert [severity(v) for v in (0.0, 0.0999, 0.1, 0.2499, 0.25, 3.0)] == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
    ]


# ---------------------------------------------------------------- windows


@pytest.fixture(scope="module")
def reference() -> dict:
    rng = np.random.default_rng(11)
    df = frame(rng, 5000)
    return reference_distributions(df, scores=rng.beta(2, 8, 5000))


def test_window_closes_by_count(reference):
    rng = np.random.default_rng(12)
    window = FeatureWindow(reference, every_n=100)
    reports = []
    ts = rng.permutation(250).astype(float)  # out of order event times
    for i, (values, score) in enumerate(zip(rows(frame(rng, 250)), rng.beta(2, 8, 250))):
        report = window.update(values, float(score), float(ts[i]))
        if report is not None:
            reports.append((i, report))
    assert [i for i, _ in reports] == [99, 199]
    first = reports[0][1]
    assert first.count == 100 and first.score_count == 100
    assert (first.start_ts, first.end_ts) == (ts[:100].min(), ts[:100].max())
    assert set(first.psi) == set(FEATURE_NAMES) | {"score"}
    assert all(math.isfinite(v) and v >= 0 for v in first.psi.values())
    assert window.count == 50
    assert window.flush().count == 50
    assert window.flush() is None


@pytest.mark.parametrize("every", [{"every_n": 97}, {"every_s": 40.0}])
def test_a_batch_update_reports_what_updates_one_by_one_report(reference, every):
    rng = np.random.default_rng(21)
    n = 1000
    values = rows(frame(rng, n, shift=0.5, plans=(*PLANS, "flex")))
    for i in range(0, n, 37):  # values on and beyond the edges
        values[i]["usage_trend"] = [math.nan, math.inf, -math.inf, 0.0][i % 4]
    scores = [None if i % 11 == 0 else float(p) for i, p in enumerate(rng.beta(2, 8, n))]
    stamps = (np.arange(n) + rng.integers(-5, 5, n)).astype(float).tolist()

    one, many = FeatureWindow(reference, **every), FeatureWindow(reference, **every)
    expected = []
    for i, (row, score, ts) in enumerate(zip(values, scores, stamps)):
        report = one.update(row, score, ts)
        if report is not None:
            expected.append((i, report))
    got, start = [], 0
    for size in rng.integers(1, 250, 100):
        batch = slice(start, min(n, start + int(size)))
        got += [(start + i, r) for i, r in many.update_many(values[batch], scores[batch], stamps[batch])]
        start = batch.stop
        if start >= n:
            break
    assert len(expected) >= 8
    assert got == expected
    assert many.flush() == one.flush()


def test_a_count_window_fed_small_batches_bins_them_late_and_reports_the_same(reference):
    """Small batches wait unbinned until ``BIN_AT`` vectors do or the window closes; single updates mix in."""
    rng = np.random.default_rng(23)
    n, every = 5000, 1300
    values = rows(frame(rng, n, shift=0.3))
    scores = [None if i % 13 == 0 else float(p) for i, p in enumerate(rng.beta(2, 8, n))]
    stamps = rng.permutation(n).astype(float).tolist()
    one, mixed = FeatureWindow(reference, every_n=every), FeatureWindow(reference, every_n=every)
    expected = [
        (i, r)
        for i, (row, score, ts) in enumerate(zip(values, scores, stamps))
        if (r := one.update(row, score, ts)) is not None
    ]
    got, start, binned_mid_window = [], 0, False
    while start < n:
        if start % 7 == 0:  # now and then a single update between batches
            report = mixed.update(values[start], scores[start], stamps[start])
            got += [(start, report)] if report is not None else []
            start += 1
            continue
        end = min(n, start + int(rng.integers(1, 40)))
        got += [(start + i, r) for i, r in mixed.update_many(values[start:end], scores[start:end], stamps[start:end])]
        start = end
        assert mixed.count == start % every
        binned_mid_window |= mixed._count >= BIN_AT  # binned before the window closed (single updates: fewer)
    assert BIN_AT < every and binned_mid_window
    assert [i for i, _ in expected] == [1299, 2599, 3899]
    assert got == expected
    assert mixed.flush() == one.flush()
    assert mixed.count == 0 and mixed.flush() is None


def test_the_monitor_fed_in_batches_alerts_as_fed_one_vector_at_a_time(reference):
    rng = np.random.default_rng(22)
    config = DriftConfig(window_events=300, warmup_events=450, min_count=100, cooldown_s=50.0, sample=7)
    n = 6000
    values = rows(
        pd.concat([frame(rng, n // 2), frame(rng, n // 2, shift=1.0, plans=("basic", "flex"))], ignore_index=True)
    )
    for i, row in enumerate(values):
        row["customer_id"] = f"c{i % 300}"
    scores = np.concatenate([rng.beta(2, 8, n // 2), rng.beta(5, 3, n // 2)]).tolist()
    stamps = (np.arange(n) * 10.0).tolist()

    def alerts(monitor, sizes):
        out, start = [], 0
        for size in sizes:
            end = min(n, start + size)
            out += [
                (a.detector, a.kind, a.features, a.window_start, a.window_end)
                for a in monitor.observe(values[start:end], scores[start:end], stamps[start:end])
            ]
            start = end
        assert start == n
        return out

    class OneByOne(DriftMonitor):
        """The monitor taking a batch's vectors one at a time, as it did before windows took batches."""

        def _take(self, rows, probabilities, event_ts, partitions=None):
            alerts, fired = [], set()
            self._batch_clocks = {0: max(event_ts)} if len(event_ts) else {}
            for row, p, ts in zip(rows, probabilities, event_ts):
                self.clock = max(self.clock, ts)
                if self._seen < self.config.warmup_events:
                    self._seen += 1
                    continue
                report = self.window.update(row, p, ts)
                if report is not None:
                    self.last_report = report
                    alerts.extend(self._alerts(self.data.update(report), report.start_ts, report.end_ts))
                self._seen += 1
                if self._seen % self.config.sample == 0:
                    fired.update(self.scores.update(p))
                self.concept.add_score(str(row.get("customer_id", "")), ts, p)
            return alerts, fired

    sizes = [int(s) for s in rng.integers(1, 700, 100)] + [n]
    one, batched = OneByOne(reference, "1", config), DriftMonitor(reference, "1", config)
    expected = alerts(one, sizes)
    got = alerts(batched, sizes)
    assert any(kind == "data" for _, kind, *_ in expected) and any(kind == "prediction" for _, kind, *_ in expected)
    assert got == expected
    assert batched._seen == one._seen == n and batched.clock == one.clock
    # The same vectors reached the score detectors: KSWIN keeps the last 300 it saw.
    assert batched.scores.n == one.scores.n == n // config.sample - config.warmup_events // config.sample
    assert list(batched.scores.detectors["kswin"].window) == list(one.scores.detectors["kswin"].window)
    assert batched.concept.pending == one.concept.pending > 0


def test_window_closes_by_event_time(reference):
    window = FeatureWindow(reference, every_s=60.0)
    values = rows(frame(np.random.default_rng(13), 10))
    assert window.update(values[0], 0.1, 0.0) is None
    assert window.update(values[1], 0.2, 10.0) is None
    assert window.update(values[2], None, 59.9) is None
    report = window.update(values[3], 0.3, 60.0)  # first event of [60, 120) closes [0, 60)
    assert (report.count, report.score_count, report.start_ts, report.end_ts) == (3, 2, 0.0, 59.9)
    assert window.update(values[4], 0.3, 30.0) is None  # late: counted in the open window
    report = window.update(values[5], 0.3, 125.0)  # [120, 180): closes the window of 60 and 30
    assert (report.count, report.start_ts, report.end_ts) == (2, 30.0, 60.0)
    assert window.update(values[6], 0.3, 179.0) is None
    report = window.flush()
    assert (report.count, report.start_ts, report.end_ts) == (2, 125.0, 179.0)


def test_window_without_scores_reports_features_only(reference):
    window = FeatureWindow(reference, every_n=5)
    report = None
    for values in rows(frame(np.random.default_rng(14), 5)):
        report = window.update(values, None, 0.0)
    assert set(report.psi) == set(FEATURE_NAMES) and report.score_count == 0


def test_window_sees_shift_and_unseen_plan(reference):
    rng = np.random.default_rng(15)
    window = FeatureWindow(reference, every_n=2000)
    shifted = frame(rng, 2000, shift=1.0, plans=("basic", "standard", "premium", "ultra"))
    report = None
    for values in rows(shifted):
        report = window.update(values, 0.5, 0.0)
    assert report.psi["monthly_charges"] > PSI_THRESHOLDS["major"]
    assert report.psi["support_calls_30d"] > PSI_THRESHOLDS["major"]
    assert report.psi["plan"] > PSI_THRESHOLDS["major"]
    assert report.psi["score"] > PSI_THRESHOLDS["major"]
    assert report.psi["usage_trend"] < PSI_THRESHOLDS["moderate"]


def test_window_psi_matches_batch_psi(reference):
    df = frame(np.random.default_rng(16), 500)
    window = FeatureWindow(reference, every_n=500)
    report = None
    for values in rows(df):
        report = window.update(values, None, 0.0)
    for name in NUMERIC_FEATURES:
        spec = reference["numeric"][name]
        batch = psi(spec["shares"], numeric_counts(spec["edges"], df[name]))
        assert report.psi[name] == pytest.approx(batch, abs=1e-12)
    for name in CATEGORICAL_FEATURES:
        expected = categorical_psi(reference["categorical"][name]["shares"], Counter(df[name]))
        assert report.psi[name] == pytest.approx(expected, abs=1e-12)


def test_window_needs_exactly_one_setting(reference):
    with pytest.raises(ValueError):
        FeatureWindow(reference)
    with pytest.raises(ValueError):
        FeatureWindow(reference, every_n=10, every_s=60.0)
    with pytest.raises(ValueError):
        FeatureWindow(reference, every_s=0.0)


# ---------------------------------------------------------------- hysteresis, cooldown, data drift


def test_hysteresis_needs_k_breaches_in_a_row():
    h = Hysteresis(2)
    assert [h.update(b) for b in (True, False, True)] == [False, False, False]
    assert h.update(True) is True and h.drift_detected
    assert h.update(False) is False


def test_cooldown_on_event_time():
    c = Cooldown(100.0)
    assert c.ready(5.0)
    c.fire(5.0)
    assert not c.ready(104.9)
    assert c.ready(105.0)


def report(ts: float, count: int = 500, **psi_values: float) -> WindowReport:
    return WindowReport(psi=psi_values, start_ts=ts - 60, end_ts=ts, count=count, score_count=count)


def clean(ts: float) -> WindowReport:
    return report(ts, plan=0.01, monthly_charges=0.02, score=0.01)


def breach(ts: float) -> WindowReport:
    return report(ts, plan=0.9, monthly_charges=0.3, score=0.01)


def test_data_detector_breach_clean_breach_does_not_fire(reference):
    det = DataDriftDetector(reference, threshold=0.25, k=2, cooldown_s=3600)
    assert det.update(breach(60)) == []
    assert det.update(clean(120)) == []
    assert det.update(breach(180)) == [] and not det.drift_detected
    findings = det.update(breach(240))
    assert findings == [Finding("feature_psi", "data", {"plan": 0.9, "monthly_charges": 0.3}, "high")]
    assert det.drift_detected


def test_data_detector_cooldown_suppresses_repeats(reference):
    det = DataDriftDetector(reference, threshold=0.25, k=2, cooldown_s=3600)
    fired = [bool(det.update(breach(ts))) for ts in range(60, 3600 + 301, 60)]
    assert fired.index(True) == 1  # second window: k = 2
    assert sum(fired) == 2  # once at 120 s, then again only once the cooldown has run out
    assert fired[(120 + 3600) // 60 - 1] is True


def test_data_detector_score_is_prediction_drift_and_small_windows_are_skipped(reference):
    det = DataDriftDetector(reference, k=1, min_count=50)
    assert det.update(report(60, count=10, score=5.0)) == []
    findings = det.update(report(120, score=0.3, plan=0.01))
    assert findings == [Finding("score_psi", "prediction", {"score": 0.3}, "high")]
    # a window that does not measure a feature breaks its streak (k=2 here)
    det2 = DataDriftDetector(reference, k=2)
    det2.update(report(60, plan=0.9))
    assert det2.update(report(120, monthly_charges=0.01)) == []
    assert det2.update(report(180, plan=0.9)) == []


# ---------------------------------------------------------------- river on the score stream


def score_stream(seed: int, n: int, shift_at: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if shift_at is None:
        return rng.beta(2, 8, n)
    return np.concatenate([rng.beta(2, 8, shift_at), rng.beta(4, 6, n - shift_at)])


def detections(detector: ScoreStreamDetector, scores: np.ndarray) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for i, s in enumerate(scores):
        for name in detector.update(float(s)):
            found.setdefault(name, []).append(i)
    return found


def test_score_detectors_quiet_on_stationary_stream():
    assert detections(ScoreStreamDetector(seed=0), score_stream(0, 3000)) == {}


def test_score_detectors_golden_indices_after_shift_at_1000():
    found = detections(ScoreStreamDetector(seed=0), score_stream(0, 2000, shift_at=1000))
    assert found == {"page_hinkley": [1037], "kswin": [1039], "adwin": [1055]}


def test_score_detector_reports_drift_detected_like_river():
    det = ScoreStreamDetector(seed=0)
    fired_at = None
    for i, s in enumerate(score_stream(0, 1100, shift_at=1000)):
        names = det.update(float(s))
        assert det.drift_detected == bool(names)
        if names and fired_at is None:
            fired_at = i
    assert fired_at == 1037 and det.n == 1100


# ---------------------------------------------------------------- concept drift


H = 100.0


def test_maturing_respects_the_horizon():
    m = ConceptDriftMonitor(horizon_s=H, window=10)
    m.add_score("a", 0.0, 0.8)
    m.add_label("a", 50.0)  # within (0, 100]
    m.add_score("b", 0.0, 0.3)
    m.add_label("b", 150.0)  # after the horizon
    m.add_score("c", 10.0, 0.6)
    m.add_label("c", 10.0)  # at the score itself: not after it
    m.add_score("d", 20.0, 0.4)
    m.add_label("d", 120.0)  # exactly at the horizon
    assert m.advance(99.999) == []
    assert sorted(m.advance(100.0)) == [(0.3, 0), (0.8, 1)]
    assert m.advance(110.0) == [(0.6, 0)]
    assert m.advance(119.0) == []
    assert m.advance(120.0) == [(0.4, 1)]
    assert m.pending == 0 and m.matured == 4


def test_no_label_leaks_before_the_horizon_against_brute_force():
    rng = np.random.default_rng(21)
    m = ConceptDriftMonitor(horizon_s=H, window=100, max_pending=1000)
    scores, closes = [], {}
    now = 0.0
    for step in range(2000):
        now += float(rng.exponential(1.0))
        cid = f"c{rng.integers(50)}"
        if rng.random() < 0.1:
            m.add_label(cid, now)
            closes.setdefault(cid, []).append(now)
        else:
            p = float(rng.random())
            m.add_score(cid, now, p)
            scores.append((cid, now, p))
        if step % 7 == 0:
            matured = m.advance(now)
            due = [s for s in scores if s[1] + H <= now]
            scores = [s for s in scores if s[1] + H > now]
            expected = [(p, int(any(t < c <= t + H for c in closes.get(cid, ())))) for cid, t, p in due]
            assert sorted(matured) == sorted(expected)
    assert m.late == 0 and m.dropped == 0


def test_rolling_metrics_match_sklearn():
    rng = np.random.default_rng(22)
    m = ConceptDriftMonitor(horizon_s=H, window=200)
    p = np.round(rng.uniform(0.02, 0.98, 300), 2)  # ties exercise AUC's mid-ranks
    y = (rng.random(300) < p).astype(int)
    for i in range(300):
        m.add_score(f"c{i}", float(i), float(p[i]))
        if y[i]:
            m.add_label(f"c{i}", i + H / 2)
    pairs = m.advance(300.0 + H)
    assert len(pairs) == 300 and len(m.pairs) == 200
    assert list(m.pairs) == [(float(a), int(b)) for a, b in zip(p[100:], y[100:])]  # the last 200, in order
    probs, labels = map(np.array, zip(*m.pairs))
    assert m.log_loss == pytest.approx(log_loss(labels, probs, labels=[0, 1]), abs=1e-9)
    assert m.auc == pytest.approx(roc_auc_score(labels, probs), abs=1e-9)
    assert math.isnan(roc_auc(np.array([0.1, 0.2]), np.array([0, 0])))  # one class only


def flipping_stream(monitor: ConceptDriftMonitor, flip_at: int, n: int, seed: int = 0) -> list[tuple[int, dict]]:
    """Scores at t = i; churners close at i + H/2. After ``flip_at`` the label follows 1 - p.

    The ``(matured, performance)`` at each flag of the excess-loss detector."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.3, n)
    u = rng.random(n)
    y = np.where(np.arange(n) < flip_at, u < p, u < 0.32 - p)
    found = []
    for i in range(n):
        monitor.add_score(f"c{i}", float(i), float(p[i]))
        if y[i]:
            monitor.add_label(f"c{i}", i + H / 2)
        monitor.advance(float(i))
        if monitor.take_change():
            found.append((monitor.matured - 1, monitor.performance()))
    return found


@pytest.mark.parametrize("detector", ["page_hinkley", "adwin"])
def test_the_excess_loss_detector_flags_a_flip_and_the_window_shows_it(detector):
    m = ConceptDriftMonitor(horizon_s=H, window=1000, detector=detector)
    found = flipping_stream(m, flip_at=3000, n=6000)
    assert found, "the flip was not detected"
    index, _ = found[0]
    assert 3000 <= index <= 4200, index
    after = m.performance()
    assert after["log_loss_ratio"] > 1.2 and after["roc_auc"] < after["roc_auc_expected"] - 0.1


def test_concept_monitor_quiet_without_flip():
    m = ConceptDriftMonitor(horizon_s=H, window=1000)
    assert flipping_stream(m, flip_at=10**9, n=8000) == []
    measured = m.performance()
    assert 0.85 < measured["log_loss_ratio"] < 1.15
    assert abs(measured["roc_auc"] - measured["roc_auc_expected"]) < 0.06


def test_expected_auc_is_the_auc_of_labels_drawn_from_the_scores():
    rng = np.random.default_rng(3)
    for p in (np.round(rng.uniform(0, 1, 60), 1), rng.uniform(0, 0.3, 300), np.array([0.5, 0.5, 0.2])):
        pairs = p[:, None] * (1 - p[None, :])
        np.fill_diagonal(pairs, 0.0)
        order = (p[:, None] > p[None, :]) + 0.5 * (p[:, None] == p[None, :])
        assert expected_auc(p) == pytest.approx((pairs * order).sum() / pairs.sum(), abs=1e-12)
    assert math.isnan(expected_auc(np.array([])))


def test_the_calibration_of_the_holdout_scales_the_expected_loss():
    plain, scaled = (
        ConceptDriftMonitor(horizon_s=H, window=50),
        ConceptDriftMonitor(horizon_s=H, window=50, calibration=1.25),
    )
    for m in (plain, scaled):
        for i in range(50):
            m.add_score(f"c{i}", float(i), 0.1)
        m.advance(200.0)
    assert scaled.performance()["log_loss_expected"] == pytest.approx(1.25 * plain.performance()["log_loss_expected"])
    assert scaled.performance()["log_loss_ratio"] == pytest.approx(plain.performance()["log_loss_ratio"] / 1.25)


def test_concept_monitor_memory_is_bounded():
    m = ConceptDriftMonitor(horizon_s=H, window=10, max_pending=4)
    for t in range(10):
        m.add_score("a", float(t), 0.5)
    assert m.pending == 4 and m.dropped == 6
    for t in range(20):
        m.add_label("a", 5.0 + t)
    assert len(m._closes["a"]) == ConceptDriftMonitor.MAX_CLOSES
    assert [p for p, _ in m.advance(200.0)] == [0.5] * 4
    assert m.pending == 0 and not m._pending and not m._closes and not any(m._due.values())
    m.add_score("a", 50.0, 0.5)  # already mature against the watermark: dropped as late
    assert m.late == 1 and m.pending == 0


def test_drift_modules_import_no_faust_and_no_kafka():
    code = (
        "import sys, stream.drift.psi, stream.drift.windows, stream.drift.detectors\n"
        "banned = {'faust', 'confluent_kafka', 'aiokafka', 'mlflow'}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in banned)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])


def river_draws_kswin(**kwargs):
    """FastKSWIN with river's own sampler swapped in: ``random.sample`` on river's seeded RNG."""
    from stream.runtime.river_kswin import FastKSWIN

    class RiverDraws(FastKSWIN):
        def _subsample(self):
            return np.array(self._rng.sample(range(self.window_size - self.stat_size), self.stat_size))

        def _subsamples(self, k):
            return np.array([self._subsample() for _ in range(k)]).reshape(k, self.stat_size)

    return RiverDraws(**kwargs)


def test_fast_kswin_decides_exactly_as_rivers_kswin_on_the_same_draws():
    """Same subsets, same p-values, same detections, on a stream that shifts twice."""
    import random

    from river import drift

    rng = random.Random(5)
    values = (
        [rng.betavariate(2, 8) for _ in range(1500)]
        + [rng.betavariate(4, 6) for _ in range(1500)]
        + [rng.betavariate(2, 8) for _ in range(1000)]
    )
    river_kswin = drift.KSWIN(alpha=1e-5, window_size=300, stat_size=100, seed=3)
    fast = river_draws_kswin(alpha=1e-5, window_size=300, stat_size=100, seed=3)
    detections = 0
    for value in values:
        river_kswin.update(value)
        fast.update(value)
        assert fast.drift_detected == river_kswin.drift_detected
        assert fast.p_value == pytest.approx(river_kswin.p_value, rel=1e-9, abs=1e-15)
        assert list(fast.window) == list(river_kswin.window)
        detections += fast.drift_detected
    assert detections >= 2  # both shifts were seen, so the comparison covered detections and resets


def test_fast_kswin_subsets_are_uniform_distinct_and_seeded():
    from stream.runtime.river_kswin import FastKSWIN

    def draws(seed, n):
        kswin = FastKSWIN(alpha=1e-5, window_size=300, stat_size=100, seed=seed)
        return [kswin._subsample() for _ in range(n)]

    subsets = draws(3, 4000)
    for positions in subsets[:50]:
        assert len(set(positions.tolist())) == 100
        assert positions.min() >= 0 and positions.max() < 200
    # Each of the 200 older positions is in half the subsets: 2000 of 4000, sd ~32.
    counts = np.bincount(np.concatenate(subsets), minlength=200)
    assert counts.min() > 2000 - 5 * 32 and counts.max() < 2000 + 5 * 32
    assert all((a == b).all() for a, b in zip(subsets[:20], draws(3, 20)))
    assert any((a != b).any() for a, b in zip(subsets[:20], draws(4, 20)))


def test_fast_kswin_detects_a_shift_and_resets_after_it():
    """With its own draws: quiet before a shift, a detection within 150 values of it, then a fresh window."""
    from stream.runtime.river_kswin import FastKSWIN

    rng = np.random.default_rng(5)
    values = np.concatenate([rng.beta(2, 8, 1500), rng.beta(4, 6, 500)])
    kswin = FastKSWIN(alpha=1e-5, window_size=300, stat_size=100, seed=3)
    fired = []
    for i, value in enumerate(values):
        kswin.update(float(value))
        if kswin.drift_detected:
            fired.append(i)
            assert len(kswin.window) == 100  # the window keeps only the newest values
    assert fired and 1500 <= fired[0] < 1650


def shifting_values(seed: int = 5) -> list[float]:
    """Scores that shift twice, then a stretch of two-decimal scores (many ties)."""
    import random

    rng = random.Random(seed)
    return (
        [rng.betavariate(2, 8) for _ in range(1500)]
        + [rng.betavariate(4, 6) for _ in range(1500)]
        + [rng.betavariate(2, 8) for _ in range(1000)]
        + [round(rng.random(), 2) for _ in range(1500)]
    )


@pytest.mark.parametrize("batch", [1, 7, 40, 333, 6000, (1, 5, 6, 2, 9, 4, 13)])
def test_fast_kswin_update_many_leaves_it_as_one_update_per_value_does(batch):
    """Same detections per batch, and after each batch the same window, n, p-value, flag and generator.

    A tuple of sizes cycles through runs on both sides of ``BATCH_FROM``.
    """
    from stream.runtime.river_kswin import FastKSWIN

    values = shifting_values()
    one = FastKSWIN(alpha=1e-5, window_size=300, stat_size=100, seed=3)
    many = FastKSWIN(alpha=1e-5, window_size=300, stat_size=100, seed=3)
    sizes = itertools.cycle(batch if isinstance(batch, tuple) else (batch,))
    batches_with_detections = 0
    start = 0
    while start < len(values):
        chunk = values[start : start + next(sizes)]
        start += len(chunk)
        hit = False
        for value in chunk:
            one.update(value)
            hit = hit or one.drift_detected
        assert many.update_many(chunk) is hit
        assert (many.drift_detected, many.n, many.p_value) == (one.drift_detected, one.n, one.p_value)
        assert list(many.window) == list(one.window)
        if not one.drift_detected:  # after a detection the next update reseeds, whatever was drawn
            assert many._draws.bit_generator.state == one._draws.bit_generator.state
        batches_with_detections += hit
    assert batches_with_detections >= (1 if batch == 6000 else 3)


def test_fast_kswin_update_many_decides_as_rivers_kswin_on_the_same_draws():
    from river import drift

    values = shifting_values(7)
    river_kswin = drift.KSWIN(alpha=1e-5, window_size=300, stat_size=100, seed=3)
    fast = river_draws_kswin(alpha=1e-5, window_size=300, stat_size=100, seed=3)
    detections = 0
    for start in range(0, len(values), 50):
        chunk = values[start : start + 50]
        hit = False
        for value in chunk:
            river_kswin.update(value)
            hit = hit or river_kswin.drift_detected
        assert fast.update_many(chunk) is hit
        assert fast.drift_detected == river_kswin.drift_detected
        assert fast.p_value == pytest.approx(river_kswin.p_value, rel=1e-9, abs=1e-15)
        assert list(fast.window) == list(river_kswin.window)
        detections += hit
    assert detections >= 2


def test_fast_kswin_subsamples_are_its_successive_subsamples():
    from stream.runtime.river_kswin import FastKSWIN

    one = FastKSWIN(alpha=1e-5, window_size=300, stat_size=100, seed=9)
    many = FastKSWIN(alpha=1e-5, window_size=300, stat_size=100, seed=9)
    expected = np.array([one._subsample() for _ in range(25)])
    assert (many._subsamples(25) == expected).all()
    assert (many._subsample() == one._subsample()).all()


def test_score_detectors_update_many_reports_what_fired_on_any_score():
    scores = score_stream(0, 2000, shift_at=1000)
    one, many = ScoreStreamDetector(seed=0), ScoreStreamDetector(seed=0)
    fired_any = set()
    for start in range(0, len(scores), 64):
        chunk = scores[start : start + 64]
        fired = set()
        for score in chunk:
            fired.update(one.update(float(score)))
        assert many.update_many(chunk) == fired
        assert (many.n, many.drift_detected, many._fired) == (one.n, one.drift_detected, one._fired)
        fired_any |= fired
    assert fired_any == {"adwin", "kswin", "page_hinkley"}


# ---------------------------------------------------------------- harm and severity


IMPORTANCE = {"days_since_last_event": 0.6, "tenure_months": 0.12, "support_calls_30d": 0.01}


def judged(reference, statistics, *, score_psi=0.0, measured=None, history=()):
    monitor = DriftMonitor(reference, "1", DriftConfig(), importance=IMPORTANCE)
    monitor.last_report = WindowReport({"score": score_psi}, 0.0, 100.0, 500)
    monitor.last_performance = dict(measured or {})
    monitor._history.extend(history)
    return monitor.judge(Finding("feature_psi", "data", dict(statistics), "high"))


def test_a_shift_that_moves_the_scores_is_harm_before_any_label_matures(reference):
    harm, level, evidence = judged(reference, {"support_calls_30d": 0.9}, score_psi=0.3)
    assert harm and level == "high"
    assert evidence["importance.support_calls_30d"] == 0.01 and evidence["score_psi"] == 0.3


def test_a_shift_in_a_feature_the_model_barely_uses_is_low(reference):
    harm, level, evidence = judged(reference, {"support_calls_30d": 0.9}, score_psi=0.02)
    assert not harm and level == "low"
    assert evidence["shift_weighted"] == pytest.approx(0.009)


def test_an_important_feature_shifted_is_harm_even_with_the_scores_in_place(reference):
    harm, level, _ = judged(reference, {"days_since_last_event": 0.4}, score_psi=0.05)
    assert harm and level == "medium"


def test_labels_matured_under_the_shift_decide(reference):
    """A population ageing slowly: labels of scores made under most of the shift exist. The model
    holds on them (low) or does not (high)."""
    history = [(float(t), {"tenure_months": 0.25}) for t in range(10, 100, 10)]
    holds = {"log_loss_ratio": 1.02, "scored_from": 5.0, "pairs": 5000.0}
    harm, level, evidence = judged(reference, {"tenure_months": 0.3}, score_psi=0.2, measured=holds, history=history)
    assert (harm, level) == (False, "low") and evidence["log_loss_ratio"] == 1.02
    hurt = dict(holds, log_loss_ratio=1.6)
    verdict = judged(reference, {"tenure_months": 0.3}, score_psi=0.2, measured=hurt, history=history)
    assert verdict[:2] == (True, "high")


def test_labels_from_before_a_sudden_shift_say_nothing_about_it(reference):
    history = [(float(t), {"tenure_months": 0.01}) for t in range(10, 100, 10)]
    holds = {"log_loss_ratio": 1.0, "scored_from": 5.0, "pairs": 5000.0}
    harm, level, evidence = judged(reference, {"tenure_months": 0.6}, score_psi=0.3, measured=holds, history=history)
    assert harm and level == "high" and "log_loss_ratio" not in evidence


def test_without_logged_importances_a_shift_is_not_ruled_harmless(reference):
    monitor = DriftMonitor(reference, "1", DriftConfig())
    monitor.last_report = WindowReport({"score": 0.0}, 0.0, 100.0, 500)
    harm, level, evidence = monitor.judge(Finding("feature_psi", "data", {"usage_30d": 0.5}, "high"))
    assert harm and level == "medium" and "shift_weighted" not in evidence


def test_values_the_model_never_saw_are_harm_whatever_the_overall_loss_says(reference):
    monitor = DriftMonitor(reference, "1", DriftConfig(), importance=IMPORTANCE)
    monitor.last_report = WindowReport({"score": 0.01}, 0.0, 100.0, 500, unseen={"plan": 0.12})
    monitor.last_performance = {"log_loss_ratio": 0.95, "scored_from": 5.0, "pairs": 5000.0}
    monitor._history.extend((float(t), {"plan": 0.4}) for t in range(10, 100, 10))
    harm, level, evidence = monitor.judge(Finding("feature_psi", "data", {"plan": 0.5}, "high"))
    assert harm and level == "high" and evidence["unseen.plan"] == 0.12
    monitor.last_report = WindowReport({"score": 0.01}, 0.0, 100.0, 500, unseen={"plan": 0.01})
    assert monitor.judge(Finding("feature_psi", "data", {"plan": 0.5}, "high"))[:2] == (False, "low")


def test_a_window_reports_the_share_of_categories_it_never_saw(reference):
    window = FeatureWindow(reference, every_n=4)
    base = {name: 1.0 for name in NUMERIC_FEATURES}
    report = None
    for plan in ("basic", "flex", "flex", "premium"):
        report = window.update({**base, "plan": plan}, None, 1.0) or report
    assert report is not None and report.unseen == {"plan": 0.5}


def test_each_partition_matures_against_its_own_clock():
    """A worker drains its partitions unevenly: partition 1 far ahead says nothing of partition 0's labels."""
    m = ConceptDriftMonitor(horizon_s=H, window=100)
    m.add_score("slow", 0.0, 0.8, partition=0)
    m.add_score("fast", 0.0, 0.2, partition=1)
    assert m.advance(500.0, partition=1) == [(0.2, 0)]
    # Partition 0's clock is still at 0: its score waits for its label, and its late scores are kept.
    m.add_score("slow2", 10.0, 0.5, partition=0)
    assert m.late == 0 and m.pending == 2
    m.add_label("slow", 60.0, partition=0)
    assert sorted(m.advance(110.0, partition=0)) == [(0.5, 0), (0.8, 1)]
    m.add_score("fast2", 300.0, 0.4, partition=1)  # mature already against partition 1's clock
    assert m.late == 1
