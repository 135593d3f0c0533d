"""Small fitted pipelines for the scoring tests, built the way training builds them."""

from __future__ import annotations

from pathlib import Path

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


def register(settings, pipeline, checksum: bool = True) -> str:
    """Log ``pipeline`` to the settings' MLflow registry as a new version of the model, signed with the
    contract's inputs, and (``checksum``) tagged with its artifact's checksum as training tags it."""
    import mlflow
    from mlflow.models import infer_signature

    from training import registry

    client = registry.connect(settings)
    example = columns_to_frame(
        {name: [1.0, 2.0] for name in NUMERIC_FEATURES} | {name: ["basic", "premium"] for name in CATEGORICAL_FEATURES}
    )
    with mlflow.start_run(experiment_id=registry.ensure_experiment(client, settings)):
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(example, pipeline.predict_proba(example)),
            registered_model_name=settings.model_name,
            pip_requirements=["scikit-learn", "pandas", "numpy"],  # no environment inference: seconds saved
        )
    version = str(info.registered_model_version)
    if checksum:
        with registry.downloaded_model(client, settings.model_name, version) as path:
            client.set_model_version_tag(
                settings.model_name, version, registry.CHECKSUM_TAG, registry.artifact_checksum(path)
            )
    return version


class Plant:
    """Creates ``marker`` when unpickled (with nothing of this module needed to do it): the proof that a
    pickle was loaded, as a hostile artifact's code would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def artifact_dir(settings, version: str) -> Path:
    """Where the artifact store keeps a version's model files on disk (a local registry)."""
    from urllib.parse import urlparse

    from training import registry

    uri = registry.connect(settings).get_model_version_download_uri(settings.model_name, version)
    return Path(urlparse(uri).path)


def tamper(settings, version: str, marker: Path, seed: int = 99) -> None:
    """Replace a registered version's model in the artifact store with another valid model, pickled with an
    object that creates ``marker`` when it is unpickled: ``model.pkl`` written and ``MLmodel`` pointed at it
    (MLflow writes and loads ``model.skops`` by default), as an attacker who can write the store would."""
    import pickle

    import yaml

    folder = artifact_dir(settings, version)
    other = fitted(seed=seed)
    other.planted = Plant(marker)
    (folder / "model.pkl").write_bytes(pickle.dumps(other))
    spec = yaml.safe_load((folder / "MLmodel").read_text())
    spec["flavors"]["sklearn"].update(pickled_model="model.pkl", serialization_format="pickle")
    spec["flavors"]["python_function"]["model_path"] = "model.pkl"
    (folder / "MLmodel").write_text(yaml.safe_dump(spec))
