"""Rolling windows of feature vectors and scores, reported as PSI per feature.

A :class:`FeatureWindow` is built from the reference distributions the training job
logs with every model (:func:`training.reference.reference_distributions`)::

    {"numeric": {name: {"edges": [...], "shares": [...]}},
     "categorical": {name: {"shares": {category: share}}},
     "score": {"edges": [...], "shares": [...]},          # optional
     "rows": n}

It keeps only bin counts: one ``bisect`` on at most ten edges per numeric feature,
one counter increment per categorical feature, so an update costs O(features) and
the window never stores rows. When a window closes, :meth:`FeatureWindow.update`
returns a :class:`WindowReport` with the PSI of every feature (and of the score).

Windows close either every ``every_n`` vectors or every ``every_s`` seconds of event
time (the stream's own clock, never the wall clock):

* **count**: the update that adds the ``every_n``-th vector closes the window, and
  that vector is in the report.
* **event time**: windows are tumbling and aligned to multiples of ``every_s`` since
  the epoch. The first vector whose event time lies at or past the end of the open
  window closes it; that vector opens the next window and is not in the report. A
  late vector (event time before the open window) is counted in the open window.
  Empty windows are never reported.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from stream.drift.psi import categorical_psi, psi

SCORE = "score"
BIN_AT = 512  # count windows bin waiting vectors once this many wait (see FeatureWindow.update_many)


@dataclass(frozen=True, slots=True)
class WindowReport:
    """One closed window: PSI per feature (and ``"score"``), event-time bounds, size.

    ``psi`` has a key for every feature of the reference, and ``"score"`` when the
    reference has a score baseline and the window saw at least one score.
    """

    psi: dict[str, float]
    start_ts: float
    end_ts: float
    count: int
    score_count: int = 0
    # Per categorical feature, the share of the window's values the reference never saw: a model
    # has learnt nothing about them (an unseen plan encodes as no plan at all).
    unseen: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class _Numeric:
    edges: list[float]
    shares: list[float]
    counts: list[int]

    @classmethod
    def from_reference(cls, name: str, spec: Mapping) -> _Numeric:
        edges = [float(e) for e in spec["edges"]]
        shares = [float(s) for s in spec["shares"]]
        if len(shares) != len(edges) + 1:
            raise ValueError(f"reference for {name!r}: {len(edges)} edges need {len(edges) + 1} shares")
        return cls(edges, shares, [0] * len(shares))

    def add(self, value: float) -> None:
        self.counts[bisect_right(self.edges, value)] += 1

    def add_many(self, values: np.ndarray) -> None:
        """:meth:`add` for every value (``searchsorted(side="right")`` is ``bisect_right``, NaN included)."""
        binned = np.bincount(np.searchsorted(self.edges, values, side="right"), minlength=len(self.counts))
        self.counts = [c + int(b) for c, b in zip(self.counts, binned)]

    def close(self) -> float:
        value = psi(self.shares, self.counts)
        self.counts = [0] * len(self.shares)
        return value


class FeatureWindow:
    """Accumulates feature vectors into rolling windows and reports PSI when one closes.

    Exactly one of ``every_n`` (count-based) or ``every_s`` (event-time based) is set.

    >>> ref = {"numeric": {"x": {"edges": [0.5], "shares": [0.5, 0.5]}}, "categorical": {}}
    >>> w = FeatureWindow(ref, every_n=2)
    >>> w.update({"x": 0.1}, None, 10.0) is None
    True
    >>> w.update({"x": 0.9}, None, 11.0)
    WindowReport(psi={'x': 0.0}, start_ts=10.0, end_ts=11.0, count=2, score_count=0, unseen={})
    """

    def __init__(self, reference: Mapping, *, every_n: int | None = None, every_s: float | None = None) -> None:
        if (every_n is None) == (every_s is None):
            raise ValueError("set exactly one of every_n (count window) or every_s (event-time window)")
        if every_n is not None and every_n < 1:
            raise ValueError(f"every_n must be >= 1, got {every_n}")
        if every_s is not None and not every_s > 0:
            raise ValueError(f"every_s must be > 0, got {every_s}")
        self.every_n = every_n
        self.every_s = every_s
        self._numeric = {n: _Numeric.from_reference(n, s) for n, s in reference.get("numeric", {}).items()}
        self._categorical: dict[str, tuple[dict[str, float], Counter[str]]] = {
            n: ({str(k): float(v) for k, v in s["shares"].items()}, Counter())
            for n, s in reference.get("categorical", {}).items()
        }
        self._score = _Numeric.from_reference(SCORE, reference[SCORE]) if SCORE in reference else None
        self._count = 0
        self._score_count = 0
        self._min_ts = math.inf
        self._max_ts = -math.inf
        self._window_end: float | None = None
        # Vectors of the open count window not yet binned: rows, scores, event times.
        self._pending: tuple[list, list, list] = ([], [], [])

    @property
    def features(self) -> tuple[str, ...]:
        """The features this window measures: the reference's numeric, then categorical ones."""
        return tuple(self._numeric) + tuple(self._categorical)

    @property
    def count(self) -> int:
        """Vectors in the open window."""
        return self._count + len(self._pending[0])

    def update(self, values: Mapping, score: float | None, event_ts: float) -> WindowReport | None:
        """Add one feature vector (and its score, if any); return a report when a window closes.

        ``values`` maps every reference feature to its value (extra keys are ignored);
        ``event_ts`` is the vector's event time in epoch seconds.
        """
        report = None
        if self.every_s is not None:
            if self._window_end is not None and event_ts >= self._window_end:
                report = self.flush()
            if self._window_end is None:
                self._window_end = (math.floor(event_ts / self.every_s) + 1) * self.every_s
        self._add(values, score, event_ts)
        if self.every_n is not None and self.count >= self.every_n:
            report = self.flush()
        return report

    def update_many(
        self, rows: Sequence[Mapping], scores: Sequence[float | None], stamps: Sequence[float]
    ) -> list[tuple[int, WindowReport]]:
        """:meth:`update` for a batch; each report comes with the index of the vector that closed it.

        Count windows keep the vectors of small batches until ``BIN_AT`` are waiting or
        the window closes, then bin every feature of them at once with NumPy: bins are
        counts, so when a vector is counted changes no report, and a paced stream's
        batches of a few vectors no longer pay NumPy's fixed cost per feature each. The
        reports are those of one update per vector. Event-time windows go vector by
        vector.
        """
        reports: list[tuple[int, WindowReport]] = []
        if self.every_n is None:
            for i, (row, score, ts) in enumerate(zip(rows, scores, stamps)):
                report = self.update(row, score, ts)
                if report is not None:
                    reports.append((i, report))
            return reports
        start, total = 0, len(rows)
        pending = self._pending
        while start < total:
            end = min(total, start + self.every_n - self.count)
            pending[0].extend(rows[start:end])
            pending[1].extend(scores[start:end])
            pending[2].extend(stamps[start:end])
            if self.count >= self.every_n:
                report = self.flush()
                if report is not None:
                    reports.append((end - 1, report))
            elif len(pending[0]) >= BIN_AT:
                self._bin_pending()
            start = end
        return reports

    def _bin_pending(self) -> None:
        if self._pending[0]:
            self._add_slice(*self._pending)
            for waiting in self._pending:
                waiting.clear()

    def _add_slice(self, rows: Sequence[Mapping], scores: Sequence[float | None], stamps: Sequence[float]) -> None:
        n = len(rows)
        for name, bins in self._numeric.items():
            bins.add_many(np.fromiter((row[name] for row in rows), dtype=np.float64, count=n))
        for name, (_, counter) in self._categorical.items():
            counter.update(str(row[name]) for row in rows)
        if self._score is not None:
            present = [float(s) for s in scores if s is not None]
            if present:
                self._score.add_many(np.asarray(present, dtype=np.float64))
                self._score_count += len(present)
        self._count += n
        self._min_ts = min(self._min_ts, min(stamps))
        self._max_ts = max(self._max_ts, max(stamps))

    def flush(self) -> WindowReport | None:
        """Close the open window now (on shutdown or a timer); ``None`` when it is empty."""
        self._window_end = None
        self._bin_pending()
        if self._count == 0:
            return None
        values = {name: bins.close() for name, bins in self._numeric.items()}
        unseen: dict[str, float] = {}
        for name, (shares, counter) in self._categorical.items():
            values[name] = categorical_psi(shares, counter)
            total = sum(counter.values())
            new = sum(n for value, n in counter.items() if value not in shares)
            if total and new:
                unseen[name] = new / total
            counter.clear()
        if self._score is not None:
            score_psi = self._score.close()
            if self._score_count:
                values[SCORE] = score_psi
        report = WindowReport(values, self._min_ts, self._max_ts, self._count, self._score_count, unseen)
        self._count = self._score_count = 0
        self._min_ts, self._max_ts = math.inf, -math.inf
        return report

    def _add(self, values: Mapping, score: float | None, event_ts: float) -> None:
        for name, bins in self._numeric.items():
            bins.add(float(values[name]))
        for name, (_, counter) in self._categorical.items():
            counter[str(values[name])] += 1
        if score is not None and self._score is not None:
            self._score.add(float(score))
            self._score_count += 1
        self._count += 1
        self._min_ts = min(self._min_ts, event_ts)
        self._max_ts = max(self._max_ts, event_ts)
