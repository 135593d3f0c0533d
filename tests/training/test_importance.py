"""Global importances: each input's share of the ranking a pipeline loses when that input is shuffled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from training.importance import global_importance, importance_table

pytestmark = pytest.mark.unit


def test_the_input_the_ranking_rests_on_takes_the_share():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"signal": rng.normal(size=4000), "noise": rng.normal(size=4000)})
    labels = (frame["signal"] + rng.normal(scale=0.5, size=4000) > 0).astype(int).to_numpy()
    model = LogisticRegression().fit(frame, labels)
    shares = global_importance(model, frame, labels, rows=2000)
    assert set(shares) == {"signal", "noise"}
    assert shares["signal"] > 0.95 and shares["noise"] < 0.05
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-5)
    assert importance_table(shares).splitlines()[2].startswith("| signal |")


def test_one_class_has_no_ranking_to_lose():
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0]})
    model = LogisticRegression().fit(pd.DataFrame({"x": [0.0, 1.0]}), [0, 1])
    assert global_importance(model, frame, np.zeros(3, dtype=int)) == {}
