"""The training job: train, log to MLflow, register, gate, promote or reject.

``run_training`` is what ``churn train`` (and, later, the retraining launcher) calls. With
``stage="shadow"`` a candidate that passes the gate is not promoted: it goes under the
challenger alias (``CHURN_SHADOW_ALIAS``), where workers score it in shadow until
:mod:`training.shadow` promotes or drops it on matured labels.

The production model the gate compares with is verified against its recorded checksum before it
is unpickled; when it is refused (no checksum, other bytes) the job stops with that one-line
error (``ArtifactRefused``, a non-zero exit) before registering anything: a possibly tampered
production model needs a person, not an automatic replacement.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from stream.errors import ArtifactRefused, RegistryError
from stream.settings import Settings
from training import registry
from training.config import TrainConfig
from training.dataset import ORACLE, SNAPSHOT, label_array, model_inputs
from training.gate import GateDecision, decide
from training.importance import global_importance, importance_table
from training.metrics import heuristic_score
from training.model_card import model_card
from training.plots import calibration_figure, close, importance_figure, roc_figure
from training.reference import reference_distributions
from training.registry import IMPORTANCE_ARTIFACT
from training.train import Progress, TrainResult, evaluate, train

log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    version: str
    run_id: str
    decision: GateDecision
    metrics: dict[str, float]
    champion_version: str | None = None
    champion_metrics: dict[str, float] | None = None
    checksum: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    # "production": a candidate that passes the gate is promoted; "shadow": it becomes the challenger.
    stage: str = "production"

    @property
    def shadowed(self) -> bool:
        """Whether the candidate passed the gate and went into shadow rather than to production."""
        return self.decision.promote and self.stage == "shadow"


def _flatten(prefix: str, value: object, out: dict[str, object]) -> dict[str, object]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
    return out


def _pip_requirements() -> list[str]:
    import sklearn

    return [f"scikit-learn=={sklearn.__version__}", "pandas", "numpy"]


def run_training(
    config: TrainConfig,
    settings: Settings,
    progress: Progress | None = None,
    tags: Mapping[str, str] | None = None,
    result: TrainResult | None = None,
    stage: Literal["production", "shadow"] = "production",
) -> TrainOutcome:
    """Train (unless ``result`` is given), log, register and pass the candidate through the gate; one that
    passes is promoted, or with ``stage="shadow"`` registered as the challenger."""
    report = progress or (lambda stage, done: None)
    result = result or train(config, report)
    client = registry.connect(settings)
    experiment_id = registry.ensure_experiment(client, settings)
    name = settings.model_name

    report("champion", 0.0)
    champion_version = registry.version_for_alias(client, name, registry.PRODUCTION)
    champion_metrics = None
    if champion_version is not None:
        try:
            champion = registry.load_version(client, name, champion_version)
        except ArtifactRefused as exc:
            # A production artifact that fails its checksum is a possible tampering, not a weak
            # champion: stop before registering anything rather than let a candidate replace it unseen.
            raise ArtifactRefused(
                exc.reason, f"refused to compare with production: {exc}; no candidate registered"
            ) from exc
        champion_metrics = evaluate(champion, result.split.holdout, result.metrics["threshold"], config.precision_at_k)
    inputs = list(model_inputs(result.split.holdout.head(1)).columns)
    decision = decide(result.metrics, champion_metrics, inputs, config.gate)

    report("log", 0.0)
    outcome = _log_and_register(client, experiment_id, name, config, result, decision, champion_metrics, tags)
    outcome.champion_version = champion_version
    outcome.champion_metrics = champion_metrics
    outcome.stage = stage

    if decision.promote and stage == "shadow":
        if not settings.shadow_alias:
            raise RegistryError("--stage shadow needs a challenger alias: CHURN_SHADOW_ALIAS is empty")
        registry.register_shadow(client, name, outcome.version, settings.shadow_alias, time.time())
    elif decision.promote:
        registry.promote(client, name, outcome.version)
    else:
        registry.reject(client, name, outcome.version, decision.reasons)
    report("done", 0.0)
    return outcome


def _log_and_register(client, experiment_id, name, config, result, decision, champion_metrics, tags):
    import mlflow
    from mlflow.models import infer_signature

    holdout = result.split.holdout
    x_holdout = model_inputs(holdout)
    p = result.pipeline.predict_proba(x_holdout)[:, 1]
    y = label_array(holdout)
    run_tags = {
        "trigger": "manual",
        "dataset.fingerprint": result.fingerprint,
        "gate.decision": "promoted" if decision.promote else "rejected",
        **{f"gate.{k}": (v if isinstance(v, str) else f"{v:.6g}") for k, v in decision.evidence.items()},
        **dict(tags or {}),
    }
    try:
        with mlflow.start_run(experiment_id=experiment_id, tags=run_tags) as run:
            params = _flatten("", config.model_dump(mode="json"), {})
            mlflow.log_params({k: str(v) for k, v in params.items()})
            mlflow.log_param("dataset.fingerprint", result.fingerprint)
            mlflow.log_metrics({k: v for k, v in result.metrics.items() if np.isfinite(v)})
            if champion_metrics:
                mlflow.log_metrics({f"production_{k}": v for k, v in champion_metrics.items() if np.isfinite(v)})
            mlflow.log_dict(config.model_dump(mode="json"), "config.json")
            # The drift baseline is what the stream emits at events (silence re-scores aside).
            train = result.split.train
            if SNAPSHOT in train:
                train = train[train[SNAPSHOT] == "event"]
            train_inputs = model_inputs(train)
            train_scores = result.pipeline.predict_proba(train_inputs)[:, 1]
            mlflow.log_dict(reference_distributions(train_inputs, train_scores), "reference/reference.json")
            importance = global_importance(result.pipeline, x_holdout, y)
            mlflow.log_dict(importance, IMPORTANCE_ARTIFACT)
            mlflow.log_text(importance_table(importance), "importance/importance.md")
            curves = {"model": p, "heuristic": heuristic_score(holdout)}
            if ORACLE in holdout:
                curves["oracle"] = holdout[ORACLE].to_numpy(float)
            for fig, path in (
                (roc_figure(y, curves), "plots/roc.png"),
                (calibration_figure(y, p), "plots/calibration.png"),
                (importance_figure(importance), "plots/importance.png"),
            ):
                mlflow.log_figure(fig, path)
                close(fig)
            mlflow.log_text(
                model_card(name, config, result.metrics, result.fingerprint, champion_metrics, decision.summary),
                "model_card.md",
            )
            example = x_holdout.head(5)
            signature = infer_signature(example, result.pipeline.predict_proba(example))
            info = mlflow.sklearn.log_model(
                result.pipeline,
                name="model",
                signature=signature,
                input_example=example,
                registered_model_name=name,
                pip_requirements=_pip_requirements(),
            )
            version = str(info.registered_model_version)
            run_id = run.info.run_id
    except RegistryError:
        raise
    except Exception as exc:
        refused = registry.refusal(exc, getattr(client, "settings", None), "log and register a model")
        raise refused or RegistryError(f"logging to MLflow failed: {exc}") from exc
    with registry.downloaded_model(client, name, version) as model_dir:
        checksum = registry.artifact_checksum(model_dir)
    client.set_model_version_tag(name, version, registry.CHECKSUM_TAG, checksum)
    client.set_model_version_tag(name, version, "dataset.fingerprint", result.fingerprint)
    for key, value in run_tags.items():
        if key != "gate.decision":
            client.set_model_version_tag(name, version, key, str(value))
    return TrainOutcome(
        version=version,
        run_id=run_id,
        decision=decision,
        metrics=dict(result.metrics),
        checksum=checksum,
        tags=run_tags,
    )
