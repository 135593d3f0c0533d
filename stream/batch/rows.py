"""Customer states to scored rows, a chunk at a time: the pure core of ``churn score-batch``.

**The as-of time.** Without one (``as_of=None``) each customer is evaluated at its own latest
event time, ``feature_values(state, state.last_ts)``: exactly the vector the stream scored
after that customer's latest applied event, so its batch score equals the stream's latest.
With one, every customer is evaluated at that time, as the silence re-score evaluates a quiet
customer (``days_since_last_event`` is the silence so far, windows end at the as-of). A state
cannot be rewound: one that already holds events after the as-of is skipped (``after_as_of``);
the events-file source replays only the events up to the as-of, so its states never are.

**Skipped, and counted.** Customers whose account is closed (``closed``: not part of the base
any more), with no event at or before the as-of (``no_event``), holding events after it
(``after_as_of``), or whose stored state cannot be decoded (``undecodable``).

**Scores.** One model call per chunk through :meth:`LoadedModel.explain_columns`'s arithmetic
(:meth:`LinearPath.explain_arrays`), the risk band by the worker's thresholds and the reasons'
terms rounded to 6 decimals with the very rounding the stream's :class:`Scorer` applies, so
every field equals the stream's for the same vector.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from schemas.features import FEATURE_NAMES, NUMERIC_FEATURES
from stream.pipeline.features import CustomerState, StateView, feature_values
from stream.serving.linear_path import round_array
from stream.serving.model_holder import LoadedModel

#: Why a customer was not scored.
CLOSED = "closed"
NO_EVENT = "no_event"
AFTER_AS_OF = "after_as_of"
UNDECODABLE = "undecodable"
SKIP_REASONS = (CLOSED, NO_EVENT, AFTER_AS_OF, UNDECODABLE)

_N_NUMERIC = len(NUMERIC_FEATURES)


def evaluation_time(state: CustomerState | StateView, as_of: float | None) -> tuple[float | None, str]:
    """When to evaluate ``state``: ``(time, "")``, or ``(None, why)`` when it is skipped.

    >>> s = CustomerState(customer_id="c", first_ts=10.0, last_ts=20.0)
    >>> evaluation_time(s, None), evaluation_time(s, 30.0), evaluation_time(s, 15.0), evaluation_time(s, 5.0)
    ((20.0, ''), (30.0, ''), (None, 'after_as_of'), (None, 'no_event'))
    """
    last = state.last_ts
    if last is None:
        return None, NO_EVENT
    if state.closed_ts is not None and (as_of is None or state.closed_ts <= as_of):
        return None, CLOSED
    if as_of is None:
        return last, ""
    first = state.first_ts if state.first_ts is not None else last
    if first > as_of:
        return None, NO_EVENT
    if last > as_of:
        return None, AFTER_AS_OF
    return as_of, ""


@dataclass
class FeatureChunk:
    """The model inputs of a chunk of customers, as columns (``FEATURE_NAMES`` to lists)."""

    customer_ids: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # each row's evaluation time, epoch seconds
    columns: dict[str, list] = field(default_factory=lambda: {name: [] for name in FEATURE_NAMES})
    skipped: Counter[str] = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.customer_ids)


def featurize(items: Iterable[CustomerState | bytes], as_of: float | None) -> FeatureChunk:
    """The feature vectors of ``items`` (states, or their ``customer-state`` table bytes) at the as-of."""
    chunk = FeatureChunk()
    ids, times, skipped = chunk.customer_ids, chunk.times, chunk.skipped
    appends = [(name, chunk.columns[name].append) for name in FEATURE_NAMES]
    for item in items:
        state: CustomerState | StateView
        if isinstance(item, CustomerState):
            state = item
        else:
            try:
                state = StateView.from_bytes(item)
            except (ValueError, TypeError, KeyError, IndexError):
                skipped[UNDECODABLE] += 1
                continue
        at, why = evaluation_time(state, as_of)
        if at is None:
            skipped[why] += 1
            continue
        values = feature_values(state, at)
        for name, append in appends:
            append(values[name])
        ids.append(state.customer_id)
        times.append(at)
    return chunk


@dataclass
class ScoredChunk:
    """A chunk's scores as arrays: one entry per row of its :class:`FeatureChunk`."""

    features: FeatureChunk
    probabilities: np.ndarray
    bands: list[str]
    # The reasons, or None for a model without exact ones: (top x rows) input indices into FEATURE_NAMES
    # and their terms of the log-odds, rounded as the stream rounds them.
    picked: np.ndarray | None
    contributions: np.ndarray | None
    model_name: str
    model_version: str


def score(model: LoadedModel, chunk: FeatureChunk, reasons: int, medium: float, high: float) -> ScoredChunk:
    """Score a chunk with one model call: probabilities, risk bands and ``reasons`` reasons per row."""
    picked = contributions = None
    if not len(chunk):
        probabilities = np.empty(0, dtype=np.float64)
    elif model.fast is not None and reasons > 0:
        probabilities, picked, terms = model.fast.explain_arrays(chunk.columns, reasons)
        contributions = round_array(terms, 6)
    else:
        probabilities = np.asarray(model.predict_columns(chunk.columns), dtype=np.float64)
    return ScoredChunk(
        chunk, probabilities, bands(probabilities, medium, high), picked, contributions, model.name, model.version
    )


def bands(probabilities: np.ndarray, medium: float, high: float) -> list[str]:
    """:func:`schemas.outputs.risk_band` of every probability.

    >>> bands(np.array([0.1, 0.3, 0.59, 0.6]), 0.3, 0.6)
    ['low', 'medium', 'medium', 'high']
    """
    names = np.array(["low", "medium", "high"], dtype=object)
    level = np.where(probabilities >= high, 2, np.where(probabilities >= medium, 1, 0))
    return names[level].tolist()


def reason_values(chunk: FeatureChunk, picked: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
    """Each reason's input value, row-major (a row's reasons together): numbers (NaN for a category)
    and categories (None for a number)."""
    top, n = picked.shape
    numeric = np.array([chunk.columns[name] for name in NUMERIC_FEATURES], dtype=np.float64).reshape(_N_NUMERIC, n)
    flat = picked.T.reshape(-1)
    rows = np.repeat(np.arange(n), top)
    is_number = flat < _N_NUMERIC
    numbers = np.full(flat.shape, np.nan)
    numbers[is_number] = numeric[flat[is_number], rows[is_number]]
    categories: list[str | None] = [None] * flat.size
    for i in np.flatnonzero(~is_number).tolist():
        categories[i] = chunk.columns[FEATURE_NAMES[flat[i]]][rows[i]]
    return numbers, categories
