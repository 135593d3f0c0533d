"""The whole loop, end to end, as a user runs it: ``churn demo`` on a real broker and a real registry.

The demo runs as a child process against the test broker (its topics under a prefix
of our own) with a registry folder of its own that holds the bootstrap version.
Everything is then checked again from the outside: the topics the demo left behind
and the registry, not the demo's own summary alone. The new model's edge is measured
on post-drift data of an independent simulation, beside the bootstrap model and the
simulator's oracle.
"""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from sklearn.metrics import roc_auc_score
from support import read_all
from support.demo import run_demo

from schemas.outputs import DriftAlert, ModelEvent
from training import registry
from training.config import DatasetConfig, SimulationConfig, TrainConfig
from training.dataset import LABEL, ORACLE, model_inputs, simulated_snapshots

# On Apache Kafka, the broker users run: the embedded broker carries the shadow demo's end-to-end test
# (tests/e2e/test_demo_shadow.py) and every integration tier.
pytestmark = [pytest.mark.e2e, pytest.mark.tiers("kafka")]

SCENARIO, ONSET_DAY = "support_surge", 90


@pytest.fixture(scope="module")
def demo(kafka_bootstrap, tmp_path_factory, bootstrap_result):
    """Run ``churn demo`` to its end; its summary, settings and stdout."""
    home = tmp_path_factory.mktemp("demo")
    return run_demo(kafka_bootstrap, home, bootstrap_result, ["--scenario", SCENARIO, "--onset-day", str(ONSET_DAY)])


@pytest.mark.timeout(780)
def test_drift_alerts_launch_one_retraining_whose_promotion_every_later_score_carries(demo, kafka_bootstrap):
    summary, settings, stdout = demo
    bootstrap = summary["bootstrap_version"]

    # An alert storm after the onset, of the kind the scenario causes.
    alerts = [
        DriftAlert.model_validate_json(r.value) for r in read_all(kafka_bootstrap, settings.topic("drift-alerts"))
    ]
    assert len(alerts) >= 2, f"{len(alerts)} alerts"
    onset_ts = summary_onset_ts()
    assert all(a.window_end.timestamp() >= onset_ts for a in alerts), "an alert before the onset"
    assert any("support_calls_30d" in a.features for a in alerts if a.kind == "data")

    # Exactly one retraining job, promoted; the model event matches the registry.
    client = registry.connect(settings)
    runs = client.search_runs([registry.ensure_experiment(client, settings)], "tags.trigger = 'drift'")
    assert len(runs) == 1, [r.info.run_id for r in runs]
    events = [
        ModelEvent.model_validate_json(r.value) for r in read_all(kafka_bootstrap, settings.topic("model-events"))
    ]
    assert [(e.action, e.previous_version) for e in events] == [("promoted", bootstrap)]
    new = events[0].version
    assert summary["retraining"]["launches"] == 1 and summary["promoted_version"] == new
    assert registry.version_for_alias(client, settings.model_name, "production") == new
    assert events[0].checksum == client.get_model_version(settings.model_name, new).tags[registry.CHECKSUM_TAG]
    # The launcher retrains on harm: the job answers the first alert that judged the model hurt.
    assert runs[0].data.tags["alert_id"] == next(a for a in alerts if a.harm).alert_id
    assert events[0].evidence["candidate_roc_auc"] == pytest.approx(summary["retraining"]["roc_auc"])

    # Every published event scored exactly once; per partition the version changes once, for good.
    published = {orjson.loads(r.value)["event_id"] for r in read_all(kafka_bootstrap, settings.topic("account-events"))}
    scores = read_all(kafka_bootstrap, settings.topic("churn-scores"))
    event_scores = Counter(orjson.loads(r.value)["event_id"] for r in scores)
    event_scores = Counter({k: n for k, n in event_scores.items() if "@" not in k})  # silence re-scores aside
    assert set(event_scores) == published
    assert max(event_scores.values()) == 1, "an event scored twice"
    by_partition: dict[int, list[str]] = {}
    for r in sorted(scores, key=lambda r: (r.partition, r.offset)):
        by_partition.setdefault(r.partition, []).append(orjson.loads(r.value)["model_version"])
    for partition, versions in by_partition.items():
        assert set(versions) <= {bootstrap, new}
        assert new in versions, f"partition {partition} never scored with version {new}"
        first_new = versions.index(new)
        assert set(versions[first_new:]) == {new}, f"partition {partition} went back to an older version"
    assert sum(v == new for vs in by_partition.values() for v in vs) >= 5000
    assert "loop closed" in stdout


def summary_onset_ts() -> float:
    from producers.simulator import SimConfig

    return SimConfig().start.timestamp() + ONSET_DAY * 86_400


@pytest.mark.timeout(300)
def test_the_new_model_beats_the_old_one_on_post_drift_data(demo):
    """On an independent simulation of the drifted world, the promoted model ranks churners better."""
    summary, settings, _ = demo
    client = registry.connect(settings)
    models = {
        v: registry.load_version(client, settings.model_name, v)
        for v in (summary["bootstrap_version"], summary["promoted_version"])
    }
    world = TrainConfig(
        seed=101,
        simulation=SimulationConfig(n_customers=1500, days=190, scenario=SCENARIO, onset_day=ONSET_DAY),
        dataset=DatasetConfig(horizon_days=30, warmup_days=ONSET_DAY + 10, snapshot_rate=0.3),
    )
    frame, _ = simulated_snapshots(world)
    y = frame[LABEL].to_numpy()
    x = model_inputs(frame)
    auc = {v: roc_auc_score(y, m.predict_proba(x)[:, 1]) for v, m in models.items()}
    oracle = roc_auc_score(y, frame[ORACLE].to_numpy(float))
    old, new = auc[summary["bootstrap_version"]], auc[summary["promoted_version"]]
    print(
        f"\npost-drift AUC on {len(frame):,} snapshots ({int(y.sum())} churners): "
        f"old v{summary['bootstrap_version']} {old:.4f}, new v{summary['promoted_version']} {new:.4f}, "
        f"oracle {oracle:.4f}; in-job holdout: candidate {summary['retraining']['roc_auc']:.4f} vs production "
        f"{summary['retraining']['production_roc_auc']:.4f}"
    )
    assert new > old + 0.01
    assert new <= oracle + 0.02  # nothing beats the simulator's own probabilities by more than noise
