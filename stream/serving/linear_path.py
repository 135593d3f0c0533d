"""A NumPy path through a fitted scaler / one-hot / logistic-regression pipeline.

The registry's model is an sklearn ``Pipeline``: a ``ColumnTransformer`` with a
``StandardScaler`` on the numeric inputs and a ``OneHotEncoder`` on the categorical
ones, then a binary ``LogisticRegression``. Its ``predict_proba`` on a pandas frame
has a fixed cost per call (building the frame, column selection, validation in
every step), larger still inside a busy worker, whatever the batch size: at the
batch sizes a paced stream forms (tens to hundreds of events) that was the largest
part of scoring a batch.

:func:`compile_pipeline` reads the fitted parameters once and returns a function
from the batch's columns to probabilities that does the same arithmetic in a few
NumPy operations: ``(x - mean) / scale``, one indicator column per known category
(an unknown category is all zeros, as with ``handle_unknown="ignore"``), then
``expit(X @ coef + intercept)``. A pipeline of any other shape or settings is not
compiled (``None``) and the caller keeps ``predict_proba``. A compiled path is used
only after :func:`verified` has compared it with ``predict_proba`` on probe rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from schemas.features import CATEGORICAL_FEATURES, FEATURE_NAMES, NUMERIC_FEATURES

Columns = Mapping[str, Sequence]
ColumnsPredictor = Callable[[Columns], np.ndarray]


def compile_pipeline(pipeline: object) -> LinearPath | None:
    """The NumPy equivalent of ``pipeline.predict_proba(frame)[:, 1]``, or ``None`` for any other shape."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if type(pipeline) is not Pipeline or len(pipeline.steps) != 2:
        return None
    (_, features), (_, classifier) = pipeline.steps
    if type(features) is not ColumnTransformer or type(classifier) is not LogisticRegression:
        return None
    if len(getattr(classifier, "classes_", ())) != 2 or classifier.coef_.shape[0] != 1:
        return None
    remainder = [t for t in features.transformers_ if t[0] == "remainder"]
    if remainder and remainder[0][1] != "drop" and list(remainder[0][2]):
        return None
    fitted = _fitted(features)
    if len(fitted) != 2:
        return None
    (_, scaler, numeric), (_, encoder, categorical) = fitted
    if type(scaler) is not StandardScaler or type(encoder) is not OneHotEncoder:
        return None
    if list(numeric) != list(NUMERIC_FEATURES) or list(categorical) != list(CATEGORICAL_FEATURES):
        return None
    if encoder.drop is not None or encoder.handle_unknown != "ignore" or getattr(encoder, "max_categories", None):
        return None
    if getattr(encoder, "min_frequency", None) or getattr(encoder, "_infrequent_enabled", False):
        return None

    mean = np.asarray(scaler.mean_ if scaler.with_mean else np.zeros(len(numeric)), dtype=np.float64)
    scale = np.asarray(scaler.scale_ if scaler.with_std else np.ones(len(numeric)), dtype=np.float64)
    coef = np.asarray(classifier.coef_[0], dtype=np.float64)
    n_numeric = len(numeric)
    # Each category's weight, per categorical input; unknown categories weigh nothing.
    category_weights: list[dict[object, float]] = []
    offset = n_numeric
    for categories in encoder.categories_:
        weights = coef[offset : offset + len(categories)]
        category_weights.append({c: float(w) for c, w in zip(categories.tolist(), weights.tolist())})
        offset += len(categories)
    if offset != coef.shape[0]:
        return None
    return LinearPath(coef[:n_numeric] / scale, mean, float(classifier.intercept_[0]), tuple(category_weights))


class LinearPath:
    """The fitted arithmetic of a scaler / one-hot / logistic-regression pipeline.

    Calling it gives the churn probabilities of a batch given as columns. :meth:`contributions`
    splits each row's log-odds into one term per input: ``coef * (x - mean) / scale`` for a
    numeric input (its distance from the training mean, in the model's units), the weight of
    its category for a categorical one (0 for an unknown category). The terms and the
    intercept add up to the log-odds exactly, so the largest terms are the score's reasons.
    """

    def __init__(
        self,
        numeric_weights: np.ndarray,
        mean: np.ndarray,
        intercept: float,
        category_weights: tuple[dict[object, float], ...],
    ) -> None:
        self.numeric_weights = numeric_weights  # coef / scale: per unit of the raw input
        self.mean = mean
        self.intercept = intercept
        self.category_weights = category_weights
        # Scaling folded into the weights: ((x - mean) / scale) @ w == x @ (w / scale) - mean @ (w / scale).
        self._base = intercept - float(mean @ numeric_weights)

    def __call__(self, columns: Columns) -> np.ndarray:
        x = np.array([columns[name] for name in NUMERIC_FEATURES], dtype=np.float64)
        z = self.numeric_weights @ x + self._base
        for name, weights in zip(CATEGORICAL_FEATURES, self.category_weights):
            get = weights.get
            z += np.fromiter((get(v, 0.0) for v in columns[name]), dtype=np.float64, count=x.shape[1])
        return _expit(z)

    def contributions(self, columns: Columns) -> np.ndarray:
        """Each input's term of each row's log-odds: shape (inputs in ``FEATURE_NAMES`` order, rows)."""
        x = np.array([columns[name] for name in NUMERIC_FEATURES], dtype=np.float64)
        terms = np.empty((len(FEATURE_NAMES), x.shape[1]), dtype=np.float64)
        np.multiply(self.numeric_weights[:, None], x - self.mean[:, None], out=terms[: len(NUMERIC_FEATURES)])
        for i, (name, weights) in enumerate(zip(CATEGORICAL_FEATURES, self.category_weights), len(NUMERIC_FEATURES)):
            get = weights.get
            terms[i] = np.fromiter((get(v, 0.0) for v in columns[name]), dtype=np.float64, count=x.shape[1])
        return terms

    def explain_arrays(self, columns: Columns, top: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The probabilities, and each row's ``top`` largest terms by size, largest first, as arrays:
        ``picked`` (``top`` x rows) holds their inputs' indices in ``FEATURE_NAMES``, ``sizes`` the terms.

        The one definition of a score's reasons: :meth:`explain` builds the stream's from it, and a
        caller that writes columns (the batch scorer) takes the arrays without a Python object per row.
        """
        terms = self.contributions(columns)
        probabilities = _expit(terms.sum(axis=0) + self.intercept)
        picked = np.argsort(-np.abs(terms), axis=0, kind="stable")[:top]
        return probabilities, picked, np.take_along_axis(terms, picked, axis=0)

    def explain(
        self, columns: Columns, top: int, digits: int | None = None
    ) -> tuple[np.ndarray, list[list[dict[str, object]]]]:
        """The probabilities and, per row, its ``top`` largest terms by size, largest first.

        Each reason is ``{"feature", "value", "contribution"}``: the input, its value in the row and
        its term (rounded to ``digits`` decimals when given, as ``round`` does), ready for a score record.
        """
        probabilities, picked, sizes = self.explain_arrays(columns, top)
        if digits is not None:
            sizes = round_array(sizes, digits)
        values = [columns[name] for name in FEATURE_NAMES]
        names = FEATURE_NAMES
        reasons = [
            [{"feature": names[f], "value": values[f][row], "contribution": c} for f, c in zip(features, row_sizes)]
            for row, (features, row_sizes) in enumerate(zip(picked.T.tolist(), sizes.T.tolist()))
        ]
        return probabilities, reasons


def round_array(x: np.ndarray, digits: int) -> np.ndarray:
    """:func:`stream.pipeline.features.rounder` over an array: the same float as ``round(v, digits)`` for every element
    (scores' reasons are rounded with it, in the stream and in batch; ``numpy.round`` differs in
    the last bit).

    >>> round_array(np.array([0.1234565, -2.5e-7, 1.0000005]), 6).tolist() == [round(v, 6) for v in (0.1234565, -2.5e-7, 1.0000005)]
    True
    """
    scale = 10.0**digits
    with np.errstate(invalid="ignore"):  # infinities: handed to ``round`` below
        y = x * scale
        r = np.floor(y)
        d = y - r
        r = r + (d > 0.5)
        out = r / scale
    # What the rounder leaves to ``round`` itself: halves, zeros (their sign), huge and non-finite values.
    fallback = (d == 0.5) | (r == 0) | ~(np.abs(y) < 1e15)
    for index in zip(*np.nonzero(fallback)):
        out[index] = round(float(x[index]), digits)
    return out


def _expit(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _fitted(features) -> list[tuple]:
    """A fitted ``ColumnTransformer``'s (name, transformer, columns), the remainder left out."""
    return [t for t in features.transformers_ if t[0] != "remainder"]


def probe_columns(pipeline: object, n: int = 256, seed: int = 0) -> dict[str, list]:
    """Rows to check a compiled path on (a pipeline :func:`compile_pipeline` accepts): numeric values
    around the fitted means, every known category and one unknown."""
    rng = np.random.default_rng(seed)
    (_, scaler, _), (_, encoder, _) = _fitted(pipeline.steps[0][1])
    spread = np.where(scaler.scale_ > 0, scaler.scale_, 1.0) * 2.0
    values = rng.normal(scaler.mean_, spread, size=(n, len(scaler.mean_)))
    columns: dict[str, list] = {name: values[:, i].tolist() for i, name in enumerate(NUMERIC_FEATURES)}
    for name, categories in zip(CATEGORICAL_FEATURES, encoder.categories_):
        choices = [*categories.tolist(), "an unknown category"]
        columns[name] = [choices[i % len(choices)] for i in range(n)]
    return columns


def verified(
    pipeline: object, predict: ColumnsPredictor, frame_of: Callable[[Columns], object], tolerance: float = 1e-9
) -> float | None:
    """The largest difference between ``predict`` and ``pipeline.predict_proba`` on probe rows, when
    within ``tolerance``; ``None`` when it is not (the compiled path must not be used)."""
    columns = probe_columns(pipeline)
    expected = pipeline.predict_proba(frame_of(columns))[:, 1]
    got = predict(columns)
    if got.shape != expected.shape:
        return None
    worst = float(np.max(np.abs(got - expected)))
    return worst if worst <= tolerance else None
