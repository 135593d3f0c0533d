"""River's KSWIN drift test, made fast: a subclass of ``river.drift.KSWIN``.

It overrides river's ``_reset`` and sets its ``_drift_detected``, private names of
river's detector, so it lives in :mod:`stream.runtime` (docs/runtime.md); the score
stream detectors (:mod:`stream.drift.detectors`) use it.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from river import drift


class FastKSWIN(drift.KSWIN):
    """River's KSWIN test, without a SciPy call and a Python-level sample per value.

    At every update KSWIN compares the newest ``stat_size`` values of its window with a
    random ``stat_size``-subset of the older ones, by a two-sample Kolmogorov-Smirnov
    test. River calls ``scipy.stats.ks_2samp`` (exact method at these sizes), which
    dominated an update's time, and draws the subset with ``random.sample``, in Python,
    at every update. This class:

    - computes the statistic D with NumPy, as SciPy does. For two samples of equal size
      n, D is a multiple of 1/n and SciPy's exact p-value depends on n and D alone (it
      rounds D * n to an integer first), so the p-value is read from a table of the
      n + 1 possible values that SciPy computes once. D is taken from the difference of
      the two samples' counts, in integers, and divided once;
    - draws the subset with NumPy's generator (a permutation of the older positions),
      seeded with ``seed``: the same test on an equally uniform subset, at less cost
      than ``random.sample``. Its draws differ from river's ``random.Random`` draws
      for the same seed, so single decisions can differ from river's; given the same
      subset they are river's exactly (:meth:`_subsample` is the one difference, and
      the unit tests swap river's sampler in to check it);
    - keeps the window in a NumPy ring written twice (at ``i`` and ``i + window_size``),
      so that the window in order is a view of the ring, not a copy of a deque made
      for every update (a large part of the update's time). ``window`` reads as river's
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
        dozen NumPy calls, each with a fixed cost, cost more than a few single updates.
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
