r"""Population Stability Index (PSI) between a reference and an observed distribution.

For bins (or categories) :math:`i` with expected share :math:`e_i` (from the
reference the training job logged) and actual share :math:`a_i = c_i / n` (observed
counts :math:`c_i`, :math:`n = \sum_i c_i`):

.. math::

    \mathrm{PSI} = \sum_i (a_i - e_i) \, \ln \frac{a_i}{e_i}

Every term is non-negative, so PSI is zero only when the shares match. An empty bin
would make a logarithm infinite, so both shares are floored at ``eps`` before the
sum: :math:`e_i \leftarrow \max(e_i, \varepsilon)`, :math:`a_i \leftarrow \max(a_i,
\varepsilon)` (no renormalization). A bin empty on both sides then contributes 0.

Convention (:data:`PSI_THRESHOLDS`): below 0.1 no meaningful shift, 0.1 to 0.25 a
moderate shift, 0.25 and above a major shift.

>>> round(psi([0.5, 0.5], [30, 70]), 6)  # 0.2 * ln(7/3)
0.16946
>>> psi([0.25, 0.75], [1, 3])
0.0
>>> severity(0.05), severity(0.1), severity(0.3)
('low', 'medium', 'high')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

Severity = Literal["low", "medium", "high"]

EPS = 1e-4
PSI_THRESHOLDS: Mapping[str, float] = {"moderate": 0.1, "major": 0.25}


def psi(expected_shares: Sequence[float], actual_counts: Sequence[float] | np.ndarray, eps: float = EPS) -> float:
    """PSI of observed ``actual_counts`` against reference ``expected_shares``, bin by bin.

    Both sequences have one entry per bin, in the same order. Shares are floored at
    ``eps`` (see the module docstring for the formula). No observations at all give
    0.0: an empty window is no evidence of drift.
    """
    if len(expected_shares) != len(actual_counts):
        raise ValueError(f"{len(expected_shares)} expected shares but {len(actual_counts)} actual counts")
    total = math.fsum(actual_counts)
    if total <= 0:
        return 0.0
    terms = []
    for e, c in zip(expected_shares, actual_counts):
        e = max(float(e), eps)
        a = max(c / total, eps)
        terms.append((a - e) * math.log(a / e))
    return math.fsum(terms)


def numeric_counts(edges: Sequence[float], values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Counts per bin of ``values`` for interior ``edges``: ``len(edges) + 1`` bins.

    Bin ``i`` holds the values ``v`` with ``searchsorted(edges, v, side="right") == i``,
    the convention of :mod:`training.reference`.

    >>> numeric_counts([1.0, 2.0], [0.5, 1.0, 1.5, 2.0, 9.0]).tolist()
    [1, 2, 2]
    """
    idx = np.searchsorted(np.asarray(edges, dtype=float), np.asarray(values, dtype=float), side="right")
    return np.bincount(idx, minlength=len(edges) + 1)


def categorical_psi(reference_shares: Mapping[str, float], actual: Mapping[str, float], eps: float = EPS) -> float:
    """PSI over categories; a category absent from the reference is drift, not an error.

    Each category seen in ``actual`` but not in ``reference_shares`` gets its own bin
    with expected share ``eps``, so it raises PSI. Keys are compared as strings, the
    way the reference stores them.

    >>> round(categorical_psi({"a": 0.5, "b": 0.5}, {"a": 5, "b": 5}), 12)
    0.0
    >>> categorical_psi({"a": 1.0}, {"a": 9, "new": 1}) > 0.25
    True
    """
    counts: dict[str, float] = {}
    for key, n in actual.items():
        counts[str(key)] = counts.get(str(key), 0.0) + n
    categories = list(reference_shares) + [k for k in counts if k not in reference_shares]
    expected = [reference_shares.get(k, 0.0) for k in categories]
    observed = [counts.get(k, 0.0) for k in categories]
    return psi(expected, observed, eps)


def severity(value: float) -> Severity:
    """Map a PSI to an alert severity: below moderate ``low``, below major ``medium``, else ``high``."""
    if value >= PSI_THRESHOLDS["major"]:
        return "high"
    if value >= PSI_THRESHOLDS["moderate"]:
        return "medium"
    return "low"
