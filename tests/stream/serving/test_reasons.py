"""A score's reasons: each input's term of the log-odds, exact for the linear pipeline training builds,
absent for any other model, and carried by every ``ChurnScore`` the scorer writes."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from support.models import fitted

from schemas.features import FEATURE_NAMES
from schemas.outputs import ChurnScore
from stream.metrics import StreamMetrics
from stream.pipeline.messages import Scorable
from stream.serving.linear_path import compile_pipeline, probe_columns
from stream.serving.model_holder import LoadedModel, columns_to_frame
from stream.serving.scoring import Scorer
from training.dataset import model_inputs

pytestmark = pytest.mark.unit


def log_odds(pipeline, columns) -> np.ndarray:
    """The pipeline's own log-odds, from scikit-learn (not from the NumPy path under test)."""
    return pipeline.decision_function(columns_to_frame(columns))


def test_the_terms_and_the_intercept_add_up_to_the_log_odds_of_the_trained_model(bootstrap_result):
    pipeline = bootstrap_result.pipeline
    frame = model_inputs(bootstrap_result.split.holdout)
    columns = {name: frame[name].tolist() for name in FEATURE_NAMES}
    path = compile_pipeline(pipeline)
    terms = path.contributions(columns)
    assert terms.shape == (len(FEATURE_NAMES), len(frame)) and len(frame) > 1000
    np.testing.assert_allclose(terms.sum(axis=0) + path.intercept, log_odds(pipeline, columns), rtol=0, atol=1e-9)
    # Every input takes part somewhere: none is a constant zero.
    assert (np.abs(terms).max(axis=1) > 0).all()


def test_unknown_categories_have_no_term_and_the_sum_still_holds():
    pipeline = fitted()
    columns = probe_columns(pipeline, n=40)
    path = compile_pipeline(pipeline)
    terms = path.contributions(columns)
    unknown = [i for i, plan in enumerate(columns["plan"]) if plan == "an unknown category"]
    assert unknown and (terms[FEATURE_NAMES.index("plan"), unknown] == 0).all()
    np.testing.assert_allclose(terms.sum(axis=0) + path.intercept, log_odds(pipeline, columns), rtol=0, atol=1e-9)


def test_the_reasons_are_the_largest_terms_largest_first_with_the_inputs_values():
    pipeline = fitted()
    columns = probe_columns(pipeline, n=30, seed=3)
    model = LoadedModel("churn", "4", pipeline)
    probabilities, reasons = model.explain_columns(columns, 3)
    np.testing.assert_allclose(probabilities, pipeline.predict_proba(columns_to_frame(columns))[:, 1], atol=1e-12)
    terms = model.fast.contributions(columns)
    for row, row_reasons in enumerate(reasons):
        assert len(row_reasons) == 3
        sizes = [abs(r["contribution"]) for r in row_reasons]
        assert sizes == sorted(sizes, reverse=True)
        others = [
            abs(terms[i, row])
            for i, name in enumerate(FEATURE_NAMES)
            if name not in {r["feature"] for r in row_reasons}
        ]
        assert min(sizes) >= max(others)
        for reason in row_reasons:
            assert reason["value"] == columns[reason["feature"]][row]
            assert reason["contribution"] == terms[FEATURE_NAMES.index(reason["feature"]), row]


def test_a_model_of_another_shape_gives_no_reasons_and_the_same_probabilities():
    pipeline = fitted("hist_gradient_boosting")
    model = LoadedModel("churn", "5", pipeline)
    columns = probe_columns(fitted(), n=20)
    columns["plan"] = ["basic"] * 20
    probabilities, reasons = model.explain_columns(columns, 3)
    assert reasons is None
    np.testing.assert_array_equal(probabilities, model.predict_columns(columns))


def _batch(columns, n: int) -> list[Scorable]:
    rows = []
    for i in range(n):
        row = {name: columns[name][i] for name in FEATURE_NAMES}
        row |= {"customer_id": f"c{i}", "event_id": f"e{i}", "event_ts": "2026-03-07T09:15:00+00:00"}
        rows.append(Scorable(key=f"c{i}".encode(), row=row, start_ms=0.0, event_s=0.0))
    return rows


@pytest.mark.parametrize("top", [0, 1, 3])
def test_every_score_record_carries_its_reasons_as_the_contract_says(top):
    pipeline = fitted()
    columns = probe_columns(pipeline, n=12, seed=1)
    model = LoadedModel("churn", "4", pipeline)
    scored = Scorer(StreamMetrics.create(), reasons=top).score(_batch(columns, 12), model, now=1.0)
    for out in scored.out:
        score = ChurnScore.model_validate_json(out.value)
        if top == 0:
            assert score.reasons is None and "reasons" not in orjson.loads(out.value)
            continue
        assert len(score.reasons) == top
        features = [r.feature for r in score.reasons]
        assert len(set(features)) == top and set(features) <= set(FEATURE_NAMES)
        sizes = [abs(r.contribution) for r in score.reasons]
        assert sizes == sorted(sizes, reverse=True)


def test_a_score_records_reasons_round_to_six_decimals_of_the_exact_terms():
    pipeline = fitted()
    columns = probe_columns(pipeline, n=5, seed=2)
    model = LoadedModel("churn", "4", pipeline)
    _, exact = model.explain_columns(columns, 3)
    scored = Scorer(StreamMetrics.create(), reasons=3).score(_batch(columns, 5), model, now=1.0)
    for out, row in zip(scored.out, exact):
        written = orjson.loads(out.value)["reasons"]
        assert [r["feature"] for r in written] == [r["feature"] for r in row]
        for w, r in zip(written, row):
            assert abs(w["contribution"] - r["contribution"]) <= 5e-7 + 1e-12
            assert w["contribution"] == round(w["contribution"], 6)
