"""The NumPy path through the scaler / one-hot / logistic pipeline gives predict_proba's numbers,
and any other pipeline keeps predict_proba."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.preprocessing import OneHotEncoder

from schemas.features import CATEGORICAL_FEATURES, FEATURE_NAMES, NUMERIC_FEATURES
from stream.serving.linear_path import compile_pipeline, probe_columns, verified
from stream.serving.model_holder import LoadedModel, columns_to_frame
from training.config import ModelConfig
from training.dataset import LABEL, model_inputs
from training.model import build_pipeline

pytestmark = pytest.mark.unit


def fitted(kind: str = "logistic_regression", n: int = 600, seed: int = 5, **encoder):
    """A pipeline as training builds it, fitted on random rows (three plans)."""
    rng = np.random.default_rng(seed)
    pipeline = build_pipeline(ModelConfig(kind=kind, max_iter=200), seed)
    if encoder:
        pipeline.steps[0][1].transformers[1] = ("cat", OneHotEncoder(**encoder), list(CATEGORICAL_FEATURES))
    columns = {name: rng.normal(i + 1.0, i + 0.5, n).tolist() for i, name in enumerate(NUMERIC_FEATURES)}
    columns["plan"] = rng.choice(["basic", "standard", "premium"], n).tolist()
    logit = np.array(columns["tenure_months"]) - 1.0 + (np.array(columns["plan"]) == "basic")
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pipeline.fit(columns_to_frame(columns), labels)


def test_the_bootstrap_model_gives_the_same_probabilities(bootstrap_result):
    pipeline = bootstrap_result.pipeline
    fast = compile_pipeline(pipeline)
    assert fast is not None
    frame = model_inputs(bootstrap_result.split.holdout)
    columns = {name: frame[name].tolist() for name in FEATURE_NAMES}
    expected = pipeline.predict_proba(frame)[:, 1]
    got = fast(columns)
    assert LABEL not in columns and len(got) == len(frame) > 1000
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_unknown_categories_weigh_nothing_as_with_handle_unknown_ignore():
    pipeline = fitted()
    fast = compile_pipeline(pipeline)
    columns = probe_columns(pipeline)
    assert "an unknown category" in columns["plan"] and "basic" in columns["plan"]
    np.testing.assert_allclose(
        fast(columns), pipeline.predict_proba(columns_to_frame(columns))[:, 1], rtol=0, atol=1e-12
    )
    assert verified(pipeline, fast, columns_to_frame) is not None


def test_a_path_that_disagrees_is_refused():
    pipeline = fitted()
    fast = compile_pipeline(pipeline)
    assert verified(pipeline, lambda columns: fast(columns) + 1e-6, columns_to_frame) is None
    assert verified(pipeline, lambda columns: fast(columns)[:-1], columns_to_frame) is None


@pytest.mark.parametrize("shape", ["gradient boosting", "one-hot drops a category", "unknown category errors"])
def test_other_pipelines_are_not_compiled_and_keep_predict_proba(shape):
    pipeline = {
        "gradient boosting": lambda: fitted("hist_gradient_boosting"),
        "one-hot drops a category": lambda: fitted(drop="first", handle_unknown="ignore"),
        "unknown category errors": lambda: fitted(handle_unknown="error"),
    }[shape]()
    assert compile_pipeline(pipeline) is None
    model = LoadedModel("churn", "3", pipeline)
    assert model.fast is None
    columns = probe_columns(fitted())
    columns["plan"] = ["basic"] * len(columns["plan"])  # known to every one of these pipelines
    np.testing.assert_array_equal(
        model.predict_columns(columns), pipeline.predict_proba(columns_to_frame(columns))[:, 1]
    )


def test_a_loaded_model_scores_with_the_verified_path():
    pipeline = fitted()
    model = LoadedModel("churn", "4", pipeline)
    assert model.fast is not None
    columns = probe_columns(pipeline, n=50, seed=9)
    np.testing.assert_allclose(
        model.predict_columns(columns), model.predict(columns_to_frame(columns)), rtol=0, atol=1e-12
    )


def test_a_model_without_sklearn_steps_keeps_its_own_predict_proba():
    class Constant:
        def predict_proba(self, frame):
            return np.tile([0.25, 0.75], (len(frame), 1))

    model = LoadedModel("churn", "5", Constant())
    assert model.fast is None
    columns = {name: [1.0, 2.0] for name in NUMERIC_FEATURES} | {"plan": ["basic", "x"]}
    assert model.predict_columns(columns).tolist() == [0.75, 0.75]
