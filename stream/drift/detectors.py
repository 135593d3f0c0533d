"""Drift detectors: river's shape (``update`` + ``drift_detected``), no I/O, event time only.

* :class:`Hysteresis` and :class:`Cooldown` — the two guards against flapping alerts.
* :class:`DataDriftDetector` — PSI of features (``kind="data"``) and of the score
  (``kind="prediction"``) from :class:`~stream.drift.windows.WindowReport`\\ s.
* :class:`ScoreStreamDetector` — river's ADWIN, KSWIN and Page-Hinkley on the raw
  score stream.
* :class:`ConceptDriftMonitor` — joins scores with churn labels once the horizon has
  passed, keeps rolling log loss and AUC, and runs a river detector on the
  per-example log loss (``kind="concept"``).

Each returns :class:`Finding`\\ s (or detector names) that the drift agent turns
into ``DriftAlert``\\ s.
"""

from __future__ import annotations

import heapq
import itertools
import math
from bisect import insort
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from river import drift
from river.base import DriftDetector

from stream.drift.psi import PSI_THRESHOLDS, Severity, severity
from stream.drift.windows import SCORE, WindowReport
from stream.runtime.river_kswin import FastKSWIN

Kind = Literal["data", "prediction", "concept"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One detector fired: what it watched and the statistics behind the decision.

    ``statistics`` maps names to finite floats (for data drift: feature -> PSI), ready
    for ``DriftAlert.features``.
    """

    detector: str
    kind: Kind
    statistics: dict[str, float] = field(default_factory=dict)
    severity: Severity = "low"


class Hysteresis:
    """Fires only once a condition has held for ``k`` consecutive updates.

    It keeps firing while the condition keeps holding; one clean update starts over.

    >>> h = Hysteresis(2)
    >>> [h.update(b) for b in (True, False, True, True, True)]
    [False, False, False, True, True]
    """

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.streak = 0

    def update(self, breached: bool) -> bool:
        """Record one window; ``True`` when the last ``k`` windows all breached."""
        self.streak = self.streak + 1 if breached else 0
        return self.drift_detected

    @property
    def drift_detected(self) -> bool:
        return self.streak >= self.k


class Cooldown:
    """Suppresses repeat alerts for ``seconds`` of event time after one fires.

    >>> c = Cooldown(60)
    >>> c.ready(0.0), c.fire(0.0), c.ready(59.0), c.ready(60.0)
    (True, None, False, True)
    """

    def __init__(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cooldown must be >= 0 seconds, got {seconds}")
        self.seconds = seconds
        self.last_fired: float | None = None

    def ready(self, now_ts: float) -> bool:
        """Whether an alert may fire at event time ``now_ts``."""
        return self.last_fired is None or now_ts - self.last_fired >= self.seconds

    def fire(self, now_ts: float) -> None:
        """Record an alert at event time ``now_ts``."""
        self.last_fired = now_ts


class DataDriftDetector:
    """PSI drift of features and score, with per-signal hysteresis and a cooldown.

    Built from the reference distributions dict; fed one
    :class:`~stream.drift.windows.WindowReport` per closed window. A signal (a feature,
    or ``"score"``) drifts when its PSI is at least ``threshold`` in ``k`` consecutive
    windows; a window that does not measure a signal breaks its streak. Windows with
    fewer than ``min_count`` vectors are too noisy and are skipped entirely. At most one
    ``"data"`` finding (detector ``feature_psi``, all drifted features) and one
    ``"prediction"`` finding (detector ``score_psi``) per window, each with its own
    cooldown on the window's last event time.
    """

    FEATURES = "feature_psi"
    SCORES = "score_psi"

    def __init__(
        self,
        reference: Mapping,
        threshold: float = PSI_THRESHOLDS["major"],
        k: int = 2,
        cooldown_s: float = 6 * 3600.0,
        min_count: int = 50,
    ) -> None:
        self.threshold = threshold
        self.min_count = min_count
        self.features = tuple(reference.get("numeric", {})) + tuple(reference.get("categorical", {}))
        signals = self.features + ((SCORE,) if SCORE in reference else ())
        self._hysteresis = {name: Hysteresis(k) for name in signals}
        self._cooldown = {self.FEATURES: Cooldown(cooldown_s), self.SCORES: Cooldown(cooldown_s)}
        self._findings: list[Finding] = []

    def update(self, report: WindowReport) -> list[Finding]:
        """Take one closed window; return the findings it triggers (often none)."""
        self._findings = []
        if report.count < self.min_count:
            return self._findings
        drifted = {
            name: report.psi[name]
            for name, hyst in self._hysteresis.items()
            if hyst.update(report.psi.get(name, -math.inf) >= self.threshold)
        }
        score = {SCORE: drifted.pop(SCORE)} if SCORE in drifted else {}
        checks: tuple[tuple[str, Kind, dict[str, float]], ...] = (
            (self.FEATURES, "data", drifted),
            (self.SCORES, "prediction", score),
        )
        for detector, kind, stats in checks:
            cooldown = self._cooldown[detector]
            if stats and cooldown.ready(report.end_ts):
                cooldown.fire(report.end_ts)
                self._findings.append(Finding(detector, kind, stats, severity(max(stats.values()))))
        return self._findings

    @property
    def drift_detected(self) -> bool:
        """Whether the last window produced a finding."""
        return bool(self._findings)


def default_score_detectors(seed: int = 0) -> dict[str, DriftDetector]:
    """ADWIN, KSWIN (seeded) and Page-Hinkley, tuned for churn probabilities in [0, 1].

    KSWIN runs a Kolmogorov-Smirnov test per value (:class:`FastKSWIN`, cheaper per
    value in a batch); the other two cost far less.
    """
    return {
        "adwin": drift.ADWIN(delta=0.002),
        "kswin": FastKSWIN(alpha=1e-5, window_size=300, stat_size=100, seed=seed),
        "page_hinkley": drift.PageHinkley(min_instances=30, delta=0.02, threshold=8.0),
    }


class ScoreStreamDetector:
    """River drift detectors on the stream of scores; reports which fired on each value.

    River 0.26 detectors return ``None`` from ``update`` and expose ``drift_detected``
    after it; each resets itself on the update that follows a detection.
    """

    def __init__(self, seed: int = 0, detectors: Mapping[str, DriftDetector] | None = None) -> None:
        self.detectors = dict(detectors) if detectors is not None else default_score_detectors(seed)
        self.n = 0
        self._fired: list[str] = []

    def update(self, score: float) -> list[str]:
        """Feed one score; return the names of the detectors that fired on it."""
        self.n += 1
        self._fired = []
        for name, detector in self.detectors.items():
            detector.update(score)
            if detector.drift_detected:
                self._fired.append(name)
        return self._fired

    def update_many(self, scores) -> set[str]:
        """:meth:`update` with each score in turn; the names of the detectors that fired on any of them."""
        fired = set()
        for name, detector in self.detectors.items():
            many = getattr(detector, "update_many", None)
            if many is not None:
                hit = many(scores)
            else:
                hit = False
                for score in scores:
                    detector.update(score)
                    hit = hit or detector.drift_detected
            if hit:
                fired.add(name)
        if len(scores):
            self.n += len(scores)
            self._fired = [name for name, detector in self.detectors.items() if detector.drift_detected]
        return fired

    @property
    def drift_detected(self) -> bool:
        return bool(self._fired)


def log_loss_1(probability: float, label: int, eps: float = 1e-15) -> float:
    """Log loss of one prediction, probabilities clipped to ``[eps, 1 - eps]``."""
    p = min(max(probability, eps), 1 - eps)
    return -math.log(p) if label else -math.log1p(-p)


def roc_auc(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); NaN with one class only."""
    labels = np.asarray(labels, dtype=bool)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = np.unique(np.asarray(probabilities, dtype=float), return_inverse=True, return_counts=True)
    mid_ranks = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = float(mid_ranks[inverse][labels].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def expected_log_loss(probability: float, eps: float = 1e-6) -> float:
    """The log loss a calibrated model expects at ``probability``: the entropy of Bernoulli(p)."""
    p = min(max(probability, eps), 1 - eps)
    return -(p * math.log(p) + (1 - p) * math.log1p(-p))


def mean_expected_log_loss(probabilities: np.ndarray, eps: float = 1e-6) -> float:
    """:func:`expected_log_loss` averaged over many scores, in one NumPy pass."""
    p = np.clip(np.asarray(probabilities, dtype=float), eps, 1 - eps)
    return float(-(p * np.log(p) + (1 - p) * np.log1p(-p)).mean())


def expected_auc(probabilities: np.ndarray) -> float:
    """The ROC AUC these scores would reach if each label were drawn with its score's probability.

    The ranking quality a calibrated model promises on exactly this mix of customers, to
    compare the measured AUC with (ties count half). NaN for an empty array.
    """
    p = np.sort(np.asarray(probabilities, dtype=float))
    if p.size == 0:
        return math.nan
    q = 1.0 - p
    positives, negatives = float(p.sum()), float(q.sum())
    if positives <= 0 or negatives <= 0:
        return math.nan
    _, first = np.unique(p, return_index=True)
    below = np.concatenate(([0.0], np.cumsum(q)))[first]  # negatives' weight strictly below each value
    tied = np.add.reduceat(q, first)
    weight = np.add.reduceat(p, first)
    own = float((p * q).sum())  # a score is not ranked against itself
    pairs = positives * negatives - own
    if pairs <= 0:
        return math.nan
    return (float((weight * (below + tied / 2.0)).sum()) - own / 2.0) / pairs


@dataclass(eq=False, slots=True)
class _Pending:
    event_ts: float
    probability: float
    alive: bool = True


class ConceptDriftMonitor:
    """Joins scores with labels after the horizon and measures the model against its own promise.

    A score at ``event_ts`` matures when ``now_ts >= event_ts + horizon_s``; its label
    is 1 when the customer closed in ``(event_ts, event_ts + horizon_s]``, else 0. No
    label is read before a score matures. ``now_ts`` is the stream's event-time
    watermark: labels up to it are assumed to have arrived.

    Matured pairs feed a rolling window of the last ``window`` pairs. The model's own
    baseline is what its scores promise if they are calibrated: the expected log loss of
    a score ``p`` is the entropy of Bernoulli(``p``), and the expected AUC that of labels
    drawn from the scores (:func:`expected_auc`). Both follow the live mix of customers
    and the live base rate the model predicts, so a population that changes while the
    model extrapolates over it correctly keeps the measured loss near the expected one; a
    changed concept does not. ``calibration`` (the holdout's measured over expected log
    loss, from the registry) corrects for a model that was never exactly calibrated.

    Pairs also feed a river detector on the per-example excess loss (measured minus
    expected; Page-Hinkley in ``"up"`` mode by default, or ADWIN): a rise flags a change
    point between checks. :meth:`performance` summarizes the window; the drift monitor
    turns it into alerts (hysteresis, cooldown).

    Memory is bounded: at most ``max_pending`` pending scores per customer (the
    oldest is dropped) and ``MAX_CLOSES`` closes, matured scores are evicted, and
    closes older than ``now_ts - horizon_s`` are forgotten (no pending score can use
    them). A score that arrives already mature relative to the watermark is counted in
    ``late`` and dropped, because its labels may have been forgotten.

    Counters for metrics: ``matured``, ``pending``, ``dropped`` (per-customer cap),
    ``late``; ``watermark`` is the greatest ``now_ts`` seen.
    """

    MAX_CLOSES = 8
    DETECTORS: Mapping[str, Callable[[], DriftDetector]] = {
        "adwin": lambda: drift.ADWIN(delta=0.002),
        "page_hinkley": lambda: drift.PageHinkley(min_instances=500, delta=0.05, threshold=50.0, mode="up"),
    }

    def __init__(
        self,
        horizon_s: float,
        window: int = 5000,
        detector: Literal["adwin", "page_hinkley"] = "page_hinkley",
        max_pending: int = 64,
        calibration: float = 1.0,
    ) -> None:
        if horizon_s <= 0 or window < 1 or max_pending < 1:
            raise ValueError("horizon_s, window and max_pending must be positive")
        if not calibration > 0:
            raise ValueError(f"calibration must be positive, got {calibration}")
        self.horizon_s = horizon_s
        self.detector_name = detector
        self.max_pending = max_pending
        self.calibration = calibration
        self.detector = self.DETECTORS[detector]()
        self.pairs: deque[tuple[float, int]] = deque(maxlen=window)
        self.pair_ts: deque[float] = deque(maxlen=window)  # event time of each pair's score
        self.matured = 0
        self.late = 0
        self.dropped = 0
        self.pending = 0
        # Event time up to which each partition's scores and labels are in. A worker drains its
        # partitions unevenly (a backlog, a takeover): one partition's clock says nothing about
        # another's labels, so each matures against its own.
        self.watermarks: dict[int, float] = {}
        self.changes = 0  # times the detector flagged a rise in excess loss
        self._pending: dict[str, deque[_Pending]] = {}
        self._due: dict[int, list[tuple[float, int, str, _Pending]]] = {}
        self._stale = 0
        self._seq = itertools.count()
        self._closes: dict[str, list[float]] = {}
        self._close_heap: list[tuple[float, str]] = []
        self._changed = False

    @property
    def watermark(self) -> float:
        """The greatest event time any partition has reached."""
        return max(self.watermarks.values(), default=-math.inf)

    def add_score(self, customer_id: str, event_ts: float, probability: float, partition: int = 0) -> None:
        """Hold a score of a customer of ``partition`` until it matures."""
        if event_ts + self.horizon_s <= self.watermarks.get(partition, -math.inf):
            self.late += 1
            return
        queue = self._pending.setdefault(customer_id, deque())
        if len(queue) >= self.max_pending:
            queue.popleft().alive = False
            self._stale += 1
            self.dropped += 1
            self.pending -= 1
        item = _Pending(event_ts, probability)
        queue.append(item)
        self.pending += 1
        due = self._due.get(partition)
        if due is None:
            due = self._due[partition] = []
        heapq.heappush(due, (event_ts + self.horizon_s, next(self._seq), customer_id, item))
        if self._stale > 1024 and self._stale * 2 > sum(len(d) for d in self._due.values()):
            for heap in self._due.values():
                heap[:] = [entry for entry in heap if entry[3].alive]
                heapq.heapify(heap)
            self._stale = 0

    def add_label(self, customer_id: str, closed_ts: float, partition: int = 0) -> None:
        """Record that the customer (of ``partition``) closed the account at ``closed_ts``."""
        if closed_ts <= self.watermarks.get(partition, -math.inf) - self.horizon_s:
            return
        closes = self._closes.setdefault(customer_id, [])
        if closed_ts not in closes:
            insort(closes, closed_ts)
            heapq.heappush(self._close_heap, (closed_ts, customer_id))
            if len(closes) > self.MAX_CLOSES:
                del closes[0]

    def advance(self, now_ts: float, partition: int | None = None) -> list[tuple[float, int]]:
        """Mature every score of ``partition`` (of every partition when None) due by ``now_ts``;
        return the ``(probability, label)`` pairs.

        The pairs also feed the rolling window and the detector.
        """
        parts = list(self._due) if partition is None else [partition]
        matured: list[tuple[float, int]] = []
        for part in parts:
            self.watermarks[part] = max(self.watermarks.get(part, -math.inf), now_ts)
            matured += self._mature(self._due.get(part, []), now_ts)
        if partition is None:
            self.watermarks = {p: max(c, now_ts) for p, c in self.watermarks.items()} or {0: now_ts}
        # A close is needed until every partition's scores before it have matured.
        self._forget_closes(min(self.watermarks.values()) - self.horizon_s)
        return matured

    def _mature(self, due: list, now_ts: float) -> list[tuple[float, int]]:
        matured: list[tuple[float, int]] = []
        while due and due[0][0] <= now_ts:
            _, _, customer_id, item = heapq.heappop(due)
            if not item.alive:
                self._stale -= 1
                continue
            queue = self._pending[customer_id]
            queue.remove(item)
            self.pending -= 1
            if not queue:
                del self._pending[customer_id]
            label = int(self._closed_within(customer_id, item.event_ts))
            matured.append((item.probability, label))
            self._observe(item.probability, label, item.event_ts)
        return matured

    def take_change(self) -> bool:
        """Whether the detector flagged a rise in excess loss since the last call."""
        changed, self._changed = self._changed, False
        return changed

    @property
    def log_loss(self) -> float:
        """Mean log loss over the rolling window (NaN when empty)."""
        if not self.pairs:
            return math.nan
        return math.fsum(log_loss_1(p, y) for p, y in self.pairs) / len(self.pairs)

    @property
    def auc(self) -> float:
        """ROC AUC over the rolling window (NaN until both labels are present)."""
        if not self.pairs:
            return math.nan
        probabilities, labels = zip(*self.pairs)
        return roc_auc(np.array(probabilities), np.array(labels))

    def performance(self) -> dict[str, float]:
        """The window measured against the model's promise (empty while the window is empty).

        ``log_loss_ratio`` is measured over expected log loss, divided by ``calibration``:
        about 1 while the model holds, above it when the concept has moved.
        """
        if not self.pairs:
            return {}
        p = np.fromiter((a for a, _ in self.pairs), float, len(self.pairs))
        y = np.fromiter((b for _, b in self.pairs), float, len(self.pairs))
        clipped = np.clip(p, 1e-6, 1 - 1e-6)
        loss = float(-(y * np.log(clipped) + (1 - y) * np.log1p(-clipped)).mean())
        expected = mean_expected_log_loss(p)
        out = {
            "pairs": float(len(p)),
            "log_loss": loss,
            "log_loss_expected": expected * self.calibration,
            "log_loss_ratio": loss / (expected * self.calibration) if expected > 0 else math.nan,
            "brier": float(((p - y) ** 2).mean()),
            "brier_expected": float((p * (1 - p)).mean()),
            "base_rate": float(y.mean()),
            "mean_probability": float(p.mean()),
            "roc_auc": roc_auc(p, y),
            "roc_auc_expected": expected_auc(p),
            "scored_from": min(self.pair_ts),
            # The event time at which the newest of these labels was known: its score's plus the horizon.
            "known_at": max(self.pair_ts) + self.horizon_s,
        }
        return out

    def _closed_within(self, customer_id: str, event_ts: float) -> bool:
        closes = self._closes.get(customer_id)
        if not closes:  # most customers: no generator to build per matured score
            return False
        end = event_ts + self.horizon_s
        return any(event_ts < c <= end for c in closes)

    def _forget_closes(self, before: float) -> None:
        while self._close_heap and self._close_heap[0][0] <= before:
            closed_ts, customer_id = heapq.heappop(self._close_heap)
            closes = self._closes.get(customer_id)
            if closes is None or closed_ts not in closes:
                continue  # already dropped by the per-customer cap
            closes.remove(closed_ts)
            if not closes:
                del self._closes[customer_id]

    def _observe(self, probability: float, label: int, event_ts: float) -> None:
        self.matured += 1
        self.pairs.append((probability, label))
        self.pair_ts.append(event_ts)
        excess = log_loss_1(probability, label, eps=1e-6) - expected_log_loss(probability) * self.calibration
        self.detector.update(excess)
        if self.detector.drift_detected:
            self.changes += 1
            self._changed = True
