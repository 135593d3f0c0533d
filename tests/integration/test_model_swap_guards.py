"""A worker never swaps in a model whose signature or checksum is wrong, and keeps scoring.

Its own registry: version 1 (served), version 2 (a pipeline logged with another input
signature), version 3 (a valid model). The alias poll is off, so only ``model-events``
drive swaps: a promotion of version 2, then one of version 3 announcing a checksum
that is not the registry's, are refused; the same promotion of version 3 with its
recorded checksum is taken. (Tampered artifacts and versions without a checksum:
``test_artifact_refusal`` and ``tests/stream/serving/test_artifact_verification.py``.)
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pandas as pd
import pytest
from integration.conftest import SMALL_MODEL
from sklearn.linear_model import LogisticRegression
from support import TopicReader, produce, provision, simulated, start_worker, wait_for

from schemas.events import dump_event
from schemas.outputs import ModelEvent
from stream.settings import Settings
from training import registry
from training.job import run_training
from training.model_events import publish

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def guarded_registry(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("guarded-registry")
    settings = Settings(data_dir=data_dir)
    assert run_training(SMALL_MODEL, settings).version == "1"

    import mlflow
    from mlflow.models import infer_signature

    client = registry.connect(settings)
    x = pd.DataFrame({"calls": [0.0, 1.0, 2.0, 3.0], "spend": [10.0, 20.0, 5.0, 1.0]})
    wrong = LogisticRegression().fit(x, [0, 1, 0, 1])
    with mlflow.start_run(experiment_id=registry.ensure_experiment(client, settings)):
        mlflow.sklearn.log_model(
            wrong,
            name="model",
            signature=infer_signature(x, wrong.predict_proba(x)[:, 1]),
            registered_model_name=settings.model_name,
        )
    third = run_training(SMALL_MODEL.model_copy(update={"seed": 12}), settings)
    assert third.version == "3"
    # Whatever the gate decided, version 1 is what the worker is to serve.
    client.set_registered_model_alias(settings.model_name, "production", "1")
    return data_dir, third.checksum


def event(settings: Settings, version: str, checksum: str) -> ModelEvent:
    return ModelEvent(
        event_id=uuid.uuid4().hex,
        model_name=settings.model_name,
        version=version,
        action="promoted",
        previous_version="1",
        checksum=checksum,
        ts=datetime.now(UTC),
    )


def test_mismatched_signature_or_checksum_is_never_swapped_in(stream_env, guarded_registry, tmp_path):
    data_dir, checksum = guarded_registry
    env = {**stream_env, "CHURN_DATA_DIR": str(data_dir), "CHURN_MODEL_POLL_S": "3600"}
    settings = provision(env)
    worker = start_worker(env, tmp_path)
    scores = TopicReader(settings.resolved_bootstrap(), settings.topic("churn-scores"))
    try:

        def failures() -> float:
            metrics = worker.metrics()
            return sum(
                metrics.get(f'churn_model_load_failures_total{{reason="{reason}"}}', 0.0)
                for reason in ("incompatible", "event_checksum_mismatch")
            )

        def score_versions(events) -> set[str]:
            ids = {e.event_id for e in events}
            produce(
                settings.resolved_bootstrap(),
                settings.topic("account-events"),
                [(e.customer_id.encode(), dump_event(e)) for e in events],
            )
            scores.read_until(lambda rs: ids <= {orjson.loads(r.value)["event_id"] for r in rs}, 60, "scores")
            return {
                orjson.loads(r.value)["model_version"]
                for r in scores.records
                if orjson.loads(r.value)["event_id"] in ids
            }

        batches = iter([simulated(300, 30, seed=s, prefix=f"g{s}-") for s in range(3)])

        publish(settings, event(settings, "2", ""))  # the wrong signature
        wait_for(lambda: failures() >= 1, 60, 0.5, "the signature refusal")
        publish(settings, event(settings, "3", "0" * 64))  # a valid model, but not the recorded checksum
        wait_for(lambda: failures() >= 2, 60, 0.5, "the checksum refusal")
        assert worker.metrics()['churn_model_load_failures_total{reason="event_checksum_mismatch"}'] == 1.0
        assert worker.metrics()["churn_model_version"] == 1.0
        assert score_versions(next(batches)) == {"1"}
        assert "does not match FeatureVector" in worker.log_tail(200)
        assert "refused model version 3 (event_checksum_mismatch)" in worker.log_tail(200)

        publish(settings, event(settings, "3", checksum))  # the same model with its recorded checksum
        wait_for(lambda: worker.metrics().get("churn_model_version") == 3.0, 60, 0.5, "the swap to version 3")
        assert failures() == 2
        assert score_versions(next(batches)) == {"3"}
    finally:
        scores.close()
        worker.stop()
