"""The NumPy path through the scaler / one-hot / logistic pipeline gives predict_proba's numbers,
and any other pipeline keeps predict_proba."""

from __future__ import annotations

import numpy as np
import pytest
from support.models import fitted

from schemas.features import FEATURE_NAMES, NUMERIC_FEATURES
from stream.serving.linear_path import compile_pipeline, probe_columns, verified
from stream.serving.model_holder import LoadedModel, columns_to_frame
from training.dataset import LABEL, model_inputs

pytestmark = pytest.mark.unit


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
