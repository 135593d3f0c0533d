"""A real worker never loads a tampered artifact or one without a checksum: at start, on a model event, on the alias poll.

The session's registry holds, under a model name of this test alone, version 1 (valid), version 2
(registered with its checksum, then replaced in the artifact store by another model pickled with an
object that creates a marker file when unpickled) and version 3 (no checksum). The worker starts
while ``@production`` names version 2: it serves nothing, keeps running and says why; then it serves
version 1, and refuses version 2 promoted by a ``model-events`` record and version 3 found by the
alias poll. The marker never appears. The loader's whole matrix (challenger, batch, the retraining
job) is ``tests/stream/serving/test_artifact_verification.py``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from support import provision, wait_for
from support.models import fitted, register, tamper

from schemas.outputs import ModelEvent
from stream.local.processes import WorkerProcess
from stream.settings import Settings
from training import registry
from training.model_events import publish

pytestmark = [pytest.mark.integration, pytest.mark.tiers("embedded")]


def test_a_worker_never_loads_a_tampered_or_unrecorded_artifact(stream_env, registry_dir, tmp_path):
    name = f"churn-tamper-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=registry_dir, model_name=name)
    marker = tmp_path / "unpickled"
    good = register(settings, fitted(seed=1))
    tampered = register(settings, fitted(seed=2))
    tamper(settings, tampered, marker)
    untagged = register(settings, fitted(seed=3), checksum=False)
    client = registry.connect(settings)
    client.set_registered_model_alias(name, "production", tampered)

    env = {
        **stream_env,
        "CHURN_MODEL_NAME": name,
        "CHURN_MODEL_POLL_S": "1",
        "CHURN_REGISTRY_RETRY_S": "0.5",
    }
    worker_settings = provision(env)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:

        def refused(reason: str) -> float:
            return worker.metrics().get(f'churn_model_load_failures_total{{reason="{reason}"}}', 0.0)

        def still_serving(version: float) -> bool:
            worker.check_alive()
            return worker.metrics().get("churn_model_version", 0.0) == version

        # At start, @production on the tampered version: refused at every attempt, nothing served, no crash.
        wait_for(lambda: worker.check_alive() or refused("checksum_mismatch") >= 2, 90, 0.5, "the refusals at start")
        assert still_serving(0.0) and worker.metrics().get("churn_ready") == 0.0
        assert f"refused model version {tampered} (checksum_mismatch)" in worker.log_tail(100)
        assert "still serving nothing" in worker.log_tail(100)

        client.set_registered_model_alias(name, "production", good)
        wait_for(lambda: still_serving(float(good)), 60, 0.5, "the valid version served")

        # A model event promoting the tampered version, with the checksum the registry records for it.
        before = refused("checksum_mismatch")
        tag = client.get_model_version(name, tampered).tags[registry.CHECKSUM_TAG]
        publish(
            worker_settings,
            ModelEvent(
                event_id=uuid.uuid4().hex,
                model_name=name,
                version=tampered,
                action="promoted",
                previous_version=good,
                checksum=tag,
                ts=datetime.now(UTC),
            ),
        )
        wait_for(lambda: refused("checksum_mismatch") > before, 60, 0.5, "the event's refusal")
        assert still_serving(float(good))

        # The alias poll finding @production on a version without a checksum.
        client.set_registered_model_alias(name, "production", untagged)
        wait_for(lambda: refused("checksum_missing") >= 1, 60, 0.5, "the poll's refusal")
        assert still_serving(float(good))
        log = worker.log_tail(400)
        assert f"refused model version {untagged} (checksum_missing)" in log
        assert f"still serving {good}" in log and "Traceback" not in log
        assert not marker.exists()
    finally:
        worker.stop()
