"""Retraining from the feature log and the retrain launcher, on a real broker and a real registry.

One module-scoped world: a sqlite MLflow registry in a temporary folder with a
bootstrap model at @production (trained on simulated histories of the normal world),
and the prefixed ``churn-features``/``churn-labels`` topics filled with the feature log
of a stream whose world changed (``new_plan`` from day 30: an unseen plan with its own
churn effect), built with the same feature functions the featurize agent uses, with
some records delivered twice.
The tests run in file order: (a) promotes version 2, (b) is rejected against it.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from support import CHURN, TopicReader, consumer_lag, free_port, produce

from producers.simulator import SimConfig, Simulator
from schemas.outputs import DriftAlert, ModelEvent
from stream.kafka.config import confluent_config
from stream.kafka.topics import ensure_topics, topic_specs
from stream.pipeline.features import Admission, CustomerState, admit, apply, event_time, feature_values
from stream.settings import Settings
from training import registry
from training.config import DatasetConfig, GateConfig, ModelConfig, SimulationConfig, TrainConfig
from training.dataset import fingerprint
from training.job import run_training
from training.launcher import (
    JobEnd,
    LaunchPolicy,
    LaunchRequest,
    RetrainLauncher,
    RunningJob,
    load_state,
    settings_env,
    state_dir,
)
from training.retrain import DataWindow, data_window, parse_feature_log, retrain, snapshot_frame

pytestmark = pytest.mark.integration

PRODUCTION = TrainConfig(
    seed=11,
    simulation=SimulationConfig(n_customers=300, days=100),
    dataset=DatasetConfig(horizon_days=30, warmup_days=30, snapshot_rate=0.3, holdout_fraction=0.3),
    gate=GateConfig(min_roc_auc=0.5, min_pr_auc=0.0, max_brier=0.5),
)
RETRAIN = TrainConfig(
    seed=3,
    dataset=DatasetConfig(horizon_days=30, window_days=60, holdout_fraction=0.3),
    gate=GateConfig(min_roc_auc=0.6, min_pr_auc=0.05, max_brier=0.25, max_auc_regression=0.01),
)
WORLD = SimConfig(n_customers=600, days=120, seed=21, scenario="new_plan", onset_day=30, id_prefix="rt")
DUPLICATE_EVERY = 25  # every 25th feature record is delivered twice


@dataclass
class World:
    settings: Settings
    vectors: list[bytes]
    labels: list[bytes]
    sent_features: int


def feature_log(config: SimConfig) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """What the featurize agent writes for ``config``'s events: (key, value) features and labels."""
    states: dict[str, CustomerState] = {}
    features, labels = [], []
    for event in Simulator(config).events():
        state = states.setdefault(event.customer_id, CustomerState(customer_id=event.customer_id))
        if admit(state, event.event_id, event_time(event.ts)) is not Admission.NEW:
            continue
        apply(state, event)
        values = feature_values(state, state.last_ts)
        values.update(customer_id=event.customer_id, event_id=event.event_id, event_ts=event.ts, feature_set_version=1)
        key = event.customer_id.encode()
        features.append((key, orjson.dumps(values)))
        if event.event_type == "account_closed":
            labels.append(
                (
                    key,
                    orjson.dumps(
                        {
                            "customer_id": event.customer_id,
                            "event_id": event.event_id,
                            "closed_at": event.ts,
                            "churned": True,
                            "reason": event.reason,
                        }
                    ),
                )
            )
    return features, labels


@pytest.fixture(scope="module")
def world(kafka_bootstrap, tmp_path_factory) -> World:
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"rt{run}-",
        app_id=f"churn-rt-{run}",
        data_dir=tmp_path_factory.mktemp("retrain-registry"),
    )
    ensure_topics(confluent_config(settings, kafka_bootstrap), topic_specs(settings))
    bootstrap = run_training(PRODUCTION, settings)
    assert bootstrap.decision.promote and bootstrap.version == "1"

    features, labels = feature_log(WORLD)
    redelivered = features[::DUPLICATE_EVERY]
    sent = produce(kafka_bootstrap, settings.topic("churn-features"), features + redelivered)
    produce(kafka_bootstrap, settings.topic("churn-labels"), labels)
    return World(settings, [v for _, v in features], [v for _, v in labels], sent)


def model_events(settings: Settings, until) -> list[ModelEvent]:
    reader = TopicReader(settings.resolved_bootstrap(), settings.topic("model-events"))
    try:
        records = reader.read_until(
            lambda rs: until([ModelEvent.model_validate_json(r.value) for r in rs]), 30, "the model event"
        )
        assert all(r.key == settings.model_name.encode() for r in records)
        return [ModelEvent.model_validate_json(r.value) for r in records]
    finally:
        reader.close()


def expected_frame(world: World):
    """The snapshot frame of the records we sent, without Kafka (and without the duplicates)."""
    log = parse_feature_log(world.vectors, world.labels)
    return snapshot_frame(log, data_window(log, RETRAIN.dataset), RETRAIN.dataset)


def test_a_retrain_promotes_a_candidate_that_learned_the_new_world(world):
    settings = world.settings
    outcome = retrain(settings, RETRAIN, "drift", alert_id="alert-a")

    tags = outcome.tags
    rows = int(tags["rows.train"]) + int(tags["rows.holdout"])
    assert int(tags["data.records"]) == world.sent_features
    assert int(tags["data.duplicates"]) == world.sent_features - len(world.vectors)
    assert rows == outcome.metrics["train_rows"] + outcome.metrics["holdout_rows"]
    # What came back from Kafka is exactly what was sent: same snapshots, same order, same fingerprint.
    expected = expected_frame(world)
    assert rows == len(expected) and tags["dataset.fingerprint"] == fingerprint(expected)
    window = DataWindow(
        *(datetime.fromisoformat(tags[k]).timestamp() for k in ("data.window_start", "data.window_end", "data.clock"))
    )
    assert window.end_ts - window.start_ts == pytest.approx(60 * 86_400)
    assert window.clock_ts - window.end_ts == pytest.approx(30 * 86_400)

    # Both models scored on the same fresh holdout: the one that learned the new plan wins.
    candidate, production = outcome.metrics["roc_auc"], outcome.champion_metrics["roc_auc"]
    print(
        f"\n(a) rows {rows} ({tags['rows.train']} train, {tags['rows.holdout']} holdout); "
        f"roc_auc candidate {candidate:.4f} vs production {production:.4f} on the same holdout"
    )
    assert outcome.decision.promote, outcome.decision.reasons
    assert candidate > production + 0.03
    assert outcome.champion_version == "1" and outcome.version == "2"

    client = registry.connect(settings)
    assert registry.version_for_alias(client, settings.model_name, "production") == "2"
    version = client.get_model_version(settings.model_name, "2")
    for key, value in {
        "trigger": "drift",
        "alert_id": "alert-a",
        "source": "feature-log",
        "rows.train": tags["rows.train"],
        "rows.holdout": tags["rows.holdout"],
        "data.window_start": tags["data.window_start"],
    }.items():
        assert version.tags[key] == value
        assert client.get_run(outcome.run_id).data.tags[key] == value

    # The drift report: production's reference against the window, per feature.
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id, "drift")}
    assert {"drift/psi.json", "drift/support_calls_30d.png", "drift/plan.png"} <= artifacts
    psi = client.get_run(outcome.run_id).data.metrics
    print({k: round(v, 4) for k, v in psi.items() if k.startswith("drift_psi.")})
    assert psi["drift_psi.plan"] > 0.25 > psi["drift_psi.tenure_months"]

    # The model event matches the registry.
    (event,) = [e for e in model_events(settings, lambda es: any(e.version == "2" for e in es)) if e.version == "2"]
    assert event.action == "promoted" and event.previous_version == "1"
    assert event.checksum == version.tags[registry.CHECKSUM_TAG] == outcome.checksum
    assert event.run_id == outcome.run_id == version.run_id
    assert "alert=alert-a" in event.reason


def test_b_a_bad_candidate_is_rejected_and_production_stays(world):
    settings = world.settings
    client = registry.connect(settings)
    before = registry.version_for_alias(client, settings.model_name, "production")
    bad = RETRAIN.model_copy(update={"model": ModelConfig(shuffle_labels=True)})
    outcome = retrain(settings, bad, "manual")

    print(
        f"\n(b) shuffled labels: roc_auc candidate {outcome.metrics['roc_auc']:.4f} vs production "
        f"{outcome.champion_metrics['roc_auc']:.4f}; {outcome.decision.summary}"
    )
    assert not outcome.decision.promote
    assert any("below floor" in r for r in outcome.decision.reasons)
    assert any(r.startswith("regression") for r in outcome.decision.reasons)
    assert registry.version_for_alias(client, settings.model_name, "production") == before
    assert client.get_model_version(settings.model_name, outcome.version).tags["gate.decision"] == "rejected"

    events = model_events(settings, lambda es: any(e.version == outcome.version for e in es))
    (event,) = [e for e in events if e.version == outcome.version]
    assert event.action == "rejected" and event.checksum == "" and event.run_id == outcome.run_id
    for reason in outcome.decision.reasons:
        assert reason in event.reason


# --- the launcher -------------------------------------------------------------------------


class RecordingLauncher:
    """Records launches; each job runs until it has been polled ``polls`` times."""

    def __init__(self, polls: int = 3) -> None:
        self.calls: list[LaunchRequest] = []
        self.polls = polls
        self._seen: Counter = Counter()

    def launch(self, request: LaunchRequest) -> RunningJob:
        self.calls.append(request)
        return RunningJob(f"fake-{request.run}", request.run, request.trigger, request.alert_id, request.now)

    def poll(self, job: RunningJob) -> JobEnd | None:
        self._seen[job.handle] += 1
        return JobEnd(0, "promoted") if self._seen[job.handle] >= self.polls else None


def publish_alerts(settings: Settings, n: int, tag: str) -> list[str]:
    now = datetime.now(UTC)
    alerts = [
        DriftAlert(
            alert_id=f"{tag}-{i}",
            detector="psi",
            kind="data",
            features={"support_calls_30d": 0.4},
            window_start=now - timedelta(hours=1),
            window_end=now,
            severity="high",
            created_at=now,
        )
        for i in range(n)
    ]
    produce(
        settings.resolved_bootstrap(),
        settings.topic("drift-alerts"),
        [(b"psi", a.model_dump_json().encode()) for a in alerts],
    )
    return [a.alert_id for a in alerts]


def test_c_a_storm_of_alerts_launches_one_job_and_a_restart_none(world, tmp_path):
    settings = world.settings.model_copy(update={"app_id": f"{world.settings.app_id}-storm"})
    ids = publish_alerts(settings, 20, "storm")
    state_path = tmp_path / "state.json"

    fake = RecordingLauncher()
    service = RetrainLauncher(settings, fake, LaunchPolicy(cooldown_s=300), state_path=state_path)
    state = service.run(once=True, poll_s=0.2)
    assert [(c.trigger, c.alert_id) for c in fake.calls] == [("drift", ids[0])]
    assert state.running is None and state.last_outcome == "promoted" and state.last_exit_code == 0
    assert state.last_alert_id == ids[-1] and state.handled[-20:] == ids
    decisions = {
        s.labels["decision"]: s.value
        for m in service.metrics.alerts.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }
    # The job ran while the first alerts came in, and ended in the middle of the storm.
    assert decisions["launched"] == 1 and decisions["running"] >= 1 and decisions["cooldown"] >= 1
    assert sum(decisions.values()) == 20
    assert (
        consumer_lag(settings.resolved_bootstrap(), f"{settings.app_id}-launcher", settings.topic("drift-alerts")) == 0
    )

    # A restart with the saved state launches nothing, even when the alerts come again
    # (here: a new consumer group that reads them all from the beginning).
    again = RecordingLauncher()
    regrouped = settings.model_copy(update={"app_id": f"{settings.app_id}-again"})
    state = RetrainLauncher(regrouped, again, LaunchPolicy(cooldown_s=0), state_path=state_path).run(
        once=True, poll_s=0.2
    )
    assert again.calls == [] and state.launches == 1


def test_d_launcher_once_runs_a_real_retraining_job(world, tmp_path):
    settings = world.settings.model_copy(update={"app_id": f"{world.settings.app_id}-real"})
    ids = publish_alerts(settings, 5, "real")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")}
    env.update(settings_env(settings), CHURN_WEB_PORT=str(free_port()))
    proc = subprocess.run(
        [CHURN, "launcher", "--once", "--cooldown", "60"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    state = load_state(state_dir(settings) / "state.json")
    log_text = (state_dir(settings) / "retrain-1.log").read_text()
    assert state.launches == 1 and state.running is None, log_text[-3000:]
    assert state.last_exit_code == 0 and state.last_outcome in ("promoted", "rejected"), log_text[-3000:]
    # The topic also holds test (c)'s storm: the job was launched for the first alert there.
    job = state.last_job
    assert job is not None and job.trigger == "drift" and job.alert_id in (ids[0], "storm-0")
    client = registry.connect(settings)
    newest = registry.list_versions(client, settings.model_name)[0]
    assert newest.tags["alert_id"] == job.alert_id and newest.tags["trigger"] == "drift"
    assert newest.tags["gate.decision"] == state.last_outcome
    print(f"\n(d) launcher --once: one job, version {newest.version} {state.last_outcome}")
