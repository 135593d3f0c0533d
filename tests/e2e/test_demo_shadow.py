"""``churn demo --shadow`` end to end: a retrained candidate goes to shadow, both aliases are measured on
the same matured labels in ``/metrics``, the launcher promotes or drops it on that evidence, and
``churn-scores`` never carries a shadow score.

The demo runs as a child process on the embedded broker (its topics under a prefix of our own)
with a registry folder that holds the bootstrap version. Its summary carries what it read from
the worker's ``/metrics``; the topics and the registry it left behind are checked from the
outside. A shorter ``--after-swap-events`` than the plain demo's keeps the run short.
"""

from __future__ import annotations

import orjson
import pytest
from support import read_all
from support.demo import run_demo

from schemas.outputs import ModelEvent
from training import registry

pytestmark = [pytest.mark.e2e, pytest.mark.tiers("embedded")]

AFTER_SWAP_EVENTS = 1000


@pytest.fixture(scope="module")
def shadow_demo(kafka_bootstrap, tmp_path_factory, bootstrap_result):
    home = tmp_path_factory.mktemp("shadow-demo")
    return run_demo(
        kafka_bootstrap, home, bootstrap_result, ["--shadow", "--after-swap-events", str(AFTER_SWAP_EVENTS)]
    )


@pytest.mark.timeout(780)
def test_a_candidate_in_shadow_is_promoted_or_dropped_on_evidence_and_never_reaches_churn_scores(
    shadow_demo, kafka_bootstrap
):
    summary, settings, stdout = shadow_demo
    shadow = summary["shadow"]
    bootstrap, challenger = summary["bootstrap_version"], shadow["challenger_version"]
    assert summary["problems"] == [] and "loop closed" in stdout
    assert challenger and challenger != bootstrap

    # Both aliases measured on the same matured labels, as the worker's /metrics showed them.
    measured = shadow["metrics_in_shadow"]
    assert measured["production"]["version"] == bootstrap and measured["challenger"]["version"] == challenger
    assert measured["production"]["labels"] == measured["challenger"]["labels"] > 0
    for alias in ("production", "challenger"):
        assert {"roc_auc", "log_loss", "brier"} <= set(measured[alias])

    # One job, which registered the challenger; then one decision, announced with its evidence.
    events = [
        ModelEvent.model_validate_json(r.value) for r in read_all(kafka_bootstrap, settings.topic("model-events"))
    ]
    action = shadow["decision"]["action"]
    verdict = "promoted" if action == "promote" else "dropped"
    assert [(e.action, e.version) for e in events] == [("shadowed", challenger), (verdict, challenger)]
    evidence = events[1].evidence
    rule = shadow["rule"]
    assert evidence["shadow_min_labels"] == rule["min_labels"] and evidence["shadow_margin"] == rule["margin"]
    if action == "promote":
        assert evidence["shadow_labels"] >= rule["min_labels"]
        assert evidence["challenger_roc_auc"] - evidence["production_roc_auc"] >= rule["margin"]
        assert evidence["challenger_log_loss"] <= evidence["production_log_loss"]
        assert events[1].previous_version == bootstrap
    else:
        assert evidence["shadow_age_s"] >= rule["deadline_s"]

    # The registry agrees: the challenger alias is gone, production is where the decision put it.
    client = registry.connect(settings)
    name = settings.model_name
    assert registry.version_for_alias(client, name, settings.shadow_alias) is None
    assert registry.version_for_alias(client, name, "production") == (challenger if action == "promote" else bootstrap)
    assert client.get_model_version(name, challenger).tags["shadow.outcome"] == (
        "promoted" if action == "promote" else "dropped"
    )

    # churn-scores-shadow holds the challenger's scores, with the shadow headers.
    shadow_records = read_all(kafka_bootstrap, settings.topic("churn-scores-shadow"))
    assert shadow_records, "no shadow score"
    for record in shadow_records:
        headers = dict(record.headers or [])
        assert headers["score.shadow"] == b"true" and headers["model.alias"] == b"challenger"
        assert orjson.loads(record.value)["model_version"] == challenger

    # churn-scores never: no shadow header, and the challenger's version only after its promotion.
    decided_ms = shadow["decision"]["at"] * 1000
    scores = read_all(kafka_bootstrap, settings.topic("churn-scores"))
    versions = set()
    for record in scores:
        headers = dict(record.headers or [])
        assert "score.shadow" not in headers and "model.alias" not in headers
        version = orjson.loads(record.value)["model_version"]
        versions.add(version)
        if version == challenger:
            assert action == "promote" and record.timestamp_ms >= decided_ms, "a challenger score before its promotion"
    if action == "promote":
        assert versions == {bootstrap, challenger}
        assert sum(orjson.loads(r.value)["model_version"] == challenger for r in scores) >= AFTER_SWAP_EVENTS
    else:
        assert versions == {bootstrap}
