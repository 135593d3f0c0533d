"""Small fitted pipelines for the scoring tests, built the way training builds them."""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import OneHotEncoder

from schemas.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from stream.serving.model_holder import columns_to_frame
from training.config import ModelConfig
from training.model import build_pipeline


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
