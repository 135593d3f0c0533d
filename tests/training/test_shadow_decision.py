"""The shadow rule (promote, drop, wait), the evidence read from workers' /metrics, and the model events."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stream.metrics import StreamMetrics
from training.gate import GateDecision
from training.model_events import model_event
from training.shadow import ShadowDecision, ShadowEvidence, ShadowRule, decide, evidence_from_metrics, shadow_event

pytestmark = pytest.mark.unit

RULE = ShadowRule(min_labels=1000, margin=0.01, deadline_s=86_400.0)


def evidence(labels: int, production_auc: float, challenger_auc: float, production_loss=0.30, challenger_loss=0.29):
    return ShadowEvidence(
        "3",
        "4",
        labels,
        {"roc_auc": production_auc, "log_loss": production_loss, "brier": 0.08},
        {"roc_auc": challenger_auc, "log_loss": challenger_loss, "brier": 0.07},
    )


@pytest.mark.parametrize(
    ("case", "age_s", "action"),
    [
        (evidence(1000, 0.70, 0.71), 10.0, "promote"),  # exactly N labels, exactly the margin
        (evidence(999, 0.70, 0.80), 10.0, "wait"),  # one label short
        (evidence(999, 0.70, 0.80), 86_400.0, "drop"),  # ... at the deadline
        (evidence(5000, 0.70, 0.705), 10.0, "wait"),  # better, but not by the margin
        (evidence(5000, 0.70, 0.705), 90_000.0, "drop"),
        (evidence(5000, 0.70, 0.80, 0.30, 0.31), 10.0, "wait"),  # ranks better, probabilities worse
        (evidence(5000, 0.75, 0.70), 10.0, "wait"),  # worse: it may still win before the deadline
        (ShadowEvidence("3", "4"), 10.0, "wait"),  # no evidence yet
        (ShadowEvidence("3", "4"), float("inf"), "drop"),  # no evidence and no record of when it started
    ],
)
def test_the_rule(case, age_s, action):
    decision = decide(case, age_s, RULE)
    assert decision.action == action, decision.reason
    assert decision.evidence["shadow_labels"] == case.labels
    assert decision.evidence["shadow_min_labels"] == 1000 and decision.evidence["shadow_margin"] == 0.01


def test_evidence_is_the_label_weighted_mean_over_workers_of_the_current_versions_only():
    texts = []
    for labels, production, challenger in ((300, 0.60, 0.70), (100, 0.80, 0.90)):
        metrics = StreamMetrics.create(CollectorRegistry())
        for alias, version, auc in (("production", "3", production), ("challenger", "4", challenger)):
            for name, value in (("roc_auc", auc), ("log_loss", 0.3), ("brier", 0.1), ("labels", labels)):
                metrics.shadow.measures[name].labels(alias, version).set(value)
        metrics.shadow.measures["roc_auc"].labels("challenger", "2").set(0.99)  # an older challenger: ignored
        texts.append(generate_latest(metrics.registry).decode())
    texts.append(generate_latest(StreamMetrics.create(CollectorRegistry()).registry).decode())  # no shadow yet
    got = evidence_from_metrics(texts, "3", "4", "challenger")
    assert got.labels == 400
    assert got.production["roc_auc"] == pytest.approx(0.65)
    assert got.challenger["roc_auc"] == pytest.approx(0.75)
    assert got.challenger["log_loss"] == pytest.approx(0.3)
    assert evidence_from_metrics(texts, "3", "5", "challenger").labels == 0  # another challenger: no evidence


def test_promotion_and_drop_events_carry_the_evidence():
    e = evidence(2000, 0.70, 0.75)
    promoted = shadow_event("churn-model", decide(e, 10.0, RULE), e, checksum="ab" * 32, run_id="r1")
    assert (promoted.action, promoted.version, promoted.previous_version) == ("promoted", "4", "3")
    assert promoted.checksum == "ab" * 32 and promoted.event_id == "churn-model:4:promoted"
    assert promoted.evidence["challenger_roc_auc"] == 0.75 and promoted.evidence["shadow_labels"] == 2000
    dropped = shadow_event("churn-model", ShadowDecision("drop", "late", {"shadow_labels": 5.0}), e, checksum="x")
    assert (dropped.action, dropped.checksum, dropped.previous_version) == ("dropped", "", "")


def test_a_candidate_registered_in_shadow_is_announced_as_shadowed():
    outcome = SimpleNamespace(
        decision=GateDecision(True, [], {}),
        version="4",
        champion_version="3",
        checksum="cd" * 32,
        run_id="r2",
        stage="shadow",
    )
    event = model_event("churn-model", outcome)
    assert (event.action, event.checksum, event.previous_version) == ("shadowed", "cd" * 32, "3")
    outcome.stage = "production"
    assert model_event("churn-model", outcome).action == "promoted"
