"""The sklearn pipeline: preprocessing inside, so the registry holds one artifact."""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from schemas.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from training.config import ModelConfig


def build_pipeline(config: ModelConfig, seed: int) -> Pipeline:
    """Scaling for numbers, one-hot (unknown categories ignored) for plans, then a classifier.

    A plan the model has never seen encodes as all zeros: the model degrades to
    "no plan effect" instead of failing.
    """
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), list(NUMERIC_FEATURES)),
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_FEATURES)),
        ],
        sparse_threshold=0.0,
    )
    if config.kind == "logistic_regression":
        clf = LogisticRegression(C=config.C, max_iter=config.max_iter, random_state=seed)
    else:
        clf = HistGradientBoostingClassifier(
            learning_rate=config.learning_rate,
            max_leaf_nodes=config.max_leaf_nodes,
            random_state=seed,
        )
    return Pipeline([("features", pre), ("classifier", clf)])
