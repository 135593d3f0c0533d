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

from schemas.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES

Columns = Mapping[str, Sequence]
ColumnsPredictor = Callable[[Columns], np.ndarray]


def compile_pipeline(pipeline: object) -> ColumnsPredictor | None:
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
    intercept = float(classifier.intercept_[0])
    n_numeric = len(numeric)
    # Scaling folded into the weights: ((x - mean) / scale) @ w == x @ (w / scale) - mean @ (w / scale).
    numeric_weights = coef[:n_numeric] / scale
    base = intercept - float(mean @ numeric_weights)
    # Each category's weight, per categorical input; unknown categories weigh nothing.
    category_weights: list[dict[object, float]] = []
    offset = n_numeric
    for categories in encoder.categories_:
        weights = coef[offset : offset + len(categories)]
        category_weights.append({c: float(w) for c, w in zip(categories.tolist(), weights.tolist())})
        offset += len(categories)
    if offset != coef.shape[0]:
        return None

    def predict(columns: Columns) -> np.ndarray:
        x = np.array([columns[name] for name in NUMERIC_FEATURES], dtype=np.float64)
        z = numeric_weights @ x + base
        for name, weights in zip(CATEGORICAL_FEATURES, category_weights):
            get = weights.get
            z += np.fromiter((get(v, 0.0) for v in columns[name]), dtype=np.float64, count=x.shape[1])
        return 1.0 / (1.0 + np.exp(-z))

    return predict


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
