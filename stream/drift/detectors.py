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
from numpy.lib.stride_tricks import sliding_window_view
from river import drift
from river.base import DriftDetector

from stream.drift.psi import PSI_THRESHOLDS, Severity, severity
from stream.drift.windows import SCORE, WindowReport

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


class FastKSWIN(drift.KSWIN):
    """River's KSWIN test, without a SciPy call and a Python-level sample per value.

    At every update KSWIN compares the newest ``stat_size`` values of its window with a
    random ``stat_size``-subset of the older ones, by a two-sample Kolmogorov-Smirnov
    test. River calls ``scipy.stats.ks_2samp`` (exact method at these sizes: about 300
    microseconds) and draws the subset with ``random.sample`` (about 14 microseconds
    of Python per update). This class:

    - computes the statistic D with NumPy, as SciPy does. For two samples of equal size
      n, D is a multiple of 1/n and SciPy's exact p-value depends on n and D alone (it
      rounds D * n to an integer first), so the p-value is read from a table of the
      n + 1 possible values that SciPy computes once. D is taken from the difference of
      the two samples' counts, in integers, and divided once;
    - draws the subset with NumPy's generator (a permutation of the older positions),
      seeded with ``seed``: the same test on an equally uniform subset, a few
      microseconds per update. Its draws differ from river's ``random.Random`` draws
      for the same seed, so single decisions can differ from river's; given the same
      subset they are river's exactly (:meth:`_subsample` is the one difference, and
      the unit tests swap river's sampler in to check it);
    - keeps the window in a NumPy ring written twice (at ``i`` and ``i + window_size``),
      so that the window in order is a view of the ring, not a copy of a deque made
      for every update (a third of the update's time). ``window`` reads as river's
      deque and can be assigned as river assigns it.

    The window handling, ``p_value`` and ``drift_detected`` are river's.

    :meth:`update_many` makes the updates of a run of values at once (see there).
    """

    # river's KSWIN starts p_value at the int 0, so its type reads as int; it holds SciPy's float p-values.
    p_value: float  # type: ignore[assignment]  # river's p_value is a float, typed int by its initial 0
    _tables: dict[int, list[float]] = {}
    BATCH_FROM = 6  # shorter runs of :meth:`update_many` go value by value

    def _reset(self):
        super()._reset()
        self._draws = np.random.default_rng(self.seed)

    @property
    def window(self) -> deque:
        """A copy of the window, oldest first, as river keeps it (assign to change it)."""
        return deque(self._ordered().tolist(), maxlen=self.window_size)

    @window.setter
    def window(self, values) -> None:
        size = self.window_size
        kept = [float(v) for v in values][-size:]
        self._ring = np.empty(2 * size, dtype=np.float64)
        self._ring[: len(kept)] = kept
        self._filled = len(kept)
        self._next = len(kept) % size  # where the next value goes; the oldest value once the ring is full

    def _ordered(self) -> np.ndarray:
        if self._filled < self.window_size:
            return self._ring[: self._filled]
        return self._ring[self._next : self._next + self.window_size]

    def _table(self) -> list[float]:
        """SciPy's exact p-value for each statistic k / ``stat_size``, k = 0 .. ``stat_size``; made once per size."""
        n = self.stat_size
        table = self._tables.get(n)
        if table is None:
            from scipy import stats

            base = np.arange(n, dtype=float)  # samples whose statistic is exactly k / n
            table = self._tables[n] = [
                float(stats.ks_2samp(base, base + k, method="exact").pvalue) for k in range(n + 1)
            ]
        return table

    def _p_value(self, statistic: float) -> float:
        return self._table()[round(statistic * self.stat_size)]

    def _subsample(self) -> np.ndarray:
        """Positions of the older values to test: a uniform ``stat_size``-subset of them."""
        older = self.window_size - self.stat_size
        return self._draws.permutation(older)[: self.stat_size]

    def _subsamples(self, k: int) -> np.ndarray:
        """:meth:`_subsample` for the next ``k`` updates, one per row: the same draws, in one call.

        ``permuted`` shuffles each row of a ``k``-row array of positions as ``permutation``
        shuffles one, row after row, from the same generator.
        """
        older = self.window_size - self.stat_size
        return self._draws.permuted(np.broadcast_to(np.arange(older), (k, older)), axis=1)[:, : self.stat_size]

    def update(self, x):
        if self.drift_detected:
            self._reset()
        self.n += 1
        size, stat = self.window_size, self.stat_size
        ring, i = self._ring, self._next
        ring[i] = ring[i + size] = x
        self._next = i + 1 if i + 1 < size else 0
        if self._filled < size:
            self._filled += 1
            if self._filled < size:
                self._drift_detected = False
                return
        values = ring[self._next : self._next + size]
        a, b = np.sort(values[self._subsample()]), np.sort(values[size - stat :])
        both = np.concatenate((a, b))
        counts = np.searchsorted(a, both, side="right") - np.searchsorted(b, both, side="right")
        statistic = max(int(counts.max()), -int(counts.min())) / stat
        self.p_value = self._p_value(statistic)
        if self.p_value <= self.alpha and statistic > 0.1:
            self._drift_detected = True
            self.window = values[size - stat :].tolist()
        else:
            self._drift_detected = False

    def update_many(self, values) -> bool:
        """:meth:`update` with each of ``values`` in turn; whether any of them was a detection.

        Afterwards the detector is exactly as those updates leave it (window, ``n``,
        ``p_value``, ``drift_detected``, the generator's draws). While the window is
        full and nothing was detected, the updates run at once, one row each:

        - the window after each update is a row of a sliding view over the window and the
          new values, with every value replaced by its rank among them (equal values,
          equal ranks), so that the test sees the same order and the same ties;
        - the subsets are drawn in one call (:meth:`_subsamples`);
        - each row counts its two samples per rank; the largest gap between the two
          running counts is D times ``stat_size``: the counts :meth:`update` compares,
          at every value, and between values they do not change.

        The run stops at its first detection. The update after it resets the detector,
        as in river, so the draws past it that the batch made are never used. Runs of
        fewer than ``BATCH_FROM`` values go one :meth:`update` at a time: the batch's
        dozen NumPy calls cost more than a few single updates (one value alone took four
        times as long).
        """
        values = np.asarray(values, dtype=np.float64)
        size, stat = self.window_size, self.stat_size
        detected = False
        start = 0
        while start < len(values):
            # The reset after a detection, filling, or a run too short to gain from NumPy's fixed costs.
            if self.drift_detected or self._filled < size or len(values) - start < self.BATCH_FROM:
                self.update(float(values[start]))
                detected = detected or self.drift_detected
                start += 1
                continue
            run = values[start:]
            k = len(run)
            seen = np.concatenate((self._ordered(), run))
            distinct, ranks = np.unique(seen, return_inverse=True)
            windows = sliding_window_view(ranks, size)[1:]
            older = np.take_along_axis(windows[:, : size - stat], self._subsamples(k), axis=1)
            width = len(distinct)
            rows = (np.arange(k) * width)[:, None]
            counts = np.bincount((older + rows).ravel(), minlength=k * width) - np.bincount(
                (windows[:, size - stat :] + rows).ravel(), minlength=k * width
            )
            gaps = np.abs(np.cumsum(counts.reshape(k, width), axis=1)).max(axis=1)
            statistics = gaps / stat
            p_values = np.asarray(self._table())[gaps]
            hits = (p_values <= self.alpha) & (statistics > 0.1)
            j = int(hits.argmax()) if hits.any() else k - 1
            self.n += j + 1
            self.p_value = float(p_values[j])
            window = seen[j + 1 : j + 1 + size]
            self._ring[:size] = window
            self._filled, self._next = size, 0
            self._drift_detected = bool(hits[j])
            if self._drift_detected:
                self.window = window[size - stat :].tolist()
                detected = True
            start += j + 1
        return detected


def default_score_detectors(seed: int = 0) -> dict[str, DriftDetector]:
    """ADWIN, KSWIN (seeded) and Page-Hinkley, tuned for churn probabilities in [0, 1].

    KSWIN runs a Kolmogorov-Smirnov test per value (:class:`FastKSWIN`: tens of
    microseconds, a quarter of that per value in a batch); the other two cost well
    under a microsecond.
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
