"""A retrained candidate in shadow: scored beside production, judged on the same matured labels, then
promoted (or dropped) on that evidence, and never a shadow score on churn-scores.

Its own registry: version 1 at @production, version 2 trained again and registered by
``run_training(stage="shadow")`` as @challenger. A worker scores a simulated stream with both;
``training.shadow.judge`` reads its /metrics and decides by the rule with the labels the worker
reports as the minimum, no margin and a passed deadline: the challenger is promoted when it beats
production on those labels, dropped otherwise; the test checks that the decision is the one the
rule gives on the evidence, and that the worker follows it.
"""

from __future__ import annotations

import orjson
import pytest
from integration.conftest import SMALL_MODEL
from support import TopicReader, produce, provision, simulated, start_worker, wait_for

from schemas.events import dump_event
from schemas.outputs import ModelEvent
from stream.settings import Settings
from training import registry
from training.config import SimulationConfig
from training.job import run_training
from training.shadow import ShadowRule, decide, evidence_from_metrics, judge, scrape

pytestmark = [pytest.mark.integration, pytest.mark.tiers("embedded")]


@pytest.fixture(scope="module")
def shadow_registry(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("shadow-registry")
    settings = Settings(data_dir=data_dir)
    assert run_training(SMALL_MODEL, settings).version == "1"
    bigger = SMALL_MODEL.model_copy(
        update={
            "seed": 12,
            "simulation": SimulationConfig(n_customers=1500, days=150),
            "gate": SMALL_MODEL.gate.model_copy(update={"max_auc_regression": 1.0}),
        }
    )
    candidate = run_training(bigger, settings, stage="shadow")
    assert candidate.shadowed, candidate.decision.reasons
    client = registry.connect(settings)
    assert registry.version_for_alias(client, settings.model_name, "production") == "1"
    assert registry.version_for_alias(client, settings.model_name, "challenger") == "2"
    return data_dir


def test_a_challenger_in_shadow_is_judged_on_the_same_labels_and_never_reaches_churn_scores(
    stream_env, shadow_registry, tmp_path
):
    env = {**stream_env, "CHURN_DATA_DIR": str(shadow_registry), "CHURN_HORIZON_DAYS": "10"}
    settings = provision(env)
    worker = start_worker(env, tmp_path)
    bootstrap = settings.resolved_bootstrap()
    scores = TopicReader(bootstrap, settings.topic("churn-scores"))
    shadow = TopicReader(bootstrap, settings.topic("churn-scores-shadow"))
    events_reader = TopicReader(bootstrap, settings.topic("model-events"))
    try:
        wait_for(lambda: worker.metrics().get("churn_shadow_model_version") == 2.0, 60, 0.5, "the challenger load")
        events = simulated(8000, 300, seed=5, prefix="sh-")
        ids = {e.event_id for e in events}
        produce(bootstrap, settings.topic("account-events"), [(e.customer_id.encode(), dump_event(e)) for e in events])

        def seen(records) -> set[str]:
            return {orjson.loads(r.value)["event_id"] for r in records} & ids

        scores.read_until(lambda rs: seen(rs) == ids, 120, "every production score")
        shadow.read_until(lambda rs: seen(rs) == ids, 120, "every shadow score")
        for record in scores.records:
            headers = dict(record.headers or [])
            assert "score.shadow" not in headers and "model.alias" not in headers
            assert orjson.loads(record.value)["model_version"] == "1"
        for record in shadow.records:
            headers = dict(record.headers or [])
            assert headers["score.shadow"] == b"true" and headers["model.alias"] == b"challenger"
            assert orjson.loads(record.value)["model_version"] == "2"

        def labels(alias: str, version: str) -> float:
            return worker.metrics().get(f'churn_shadow_labels{{alias="{alias}",model_version="{version}"}}', 0.0)

        wait_for(lambda: labels("production", "1") >= 500, 60, 0.5, "500 matured labels in the comparison")
        scraped = worker.metrics()
        assert labels("production", "1") == labels("challenger", "2")  # the same matured events
        for name in ("roc_auc", "log_loss", "brier"):
            for alias, version in (("production", "1"), ("challenger", "2")):
                assert f'churn_shadow_{name}{{alias="{alias}",model_version="{version}"}}' in scraped

        url = f"http://127.0.0.1:{settings.web_port}/metrics"
        texts = scrape([url])
        evidence = evidence_from_metrics(texts, "1", "2", "challenger")
        rule_settings = Settings(
            **{k.removeprefix("CHURN_").lower(): v for k, v in env.items() if k.startswith("CHURN_")},
            shadow_min_labels=evidence.labels,
            shadow_margin=0.0,
            shadow_deadline_s=1.0,
            shadow_metrics_urls=url,
        )
        expected = decide(evidence, 10.0, ShadowRule.from_settings(rule_settings))
        assert expected.action in ("promote", "drop")
        decision = judge(rule_settings, texts=texts)
        assert decision is not None and decision.action == expected.action, (decision, expected)

        def announced(records) -> list[ModelEvent]:
            return [ModelEvent.model_validate_json(r.value) for r in records]

        events_reader.read_until(
            lambda rs: any(e.action in ("promoted", "dropped") for e in announced(rs)), 30, "the shadow decision"
        )
        event = [e for e in announced(events_reader.records) if e.action in ("promoted", "dropped")][-1]
        assert event.version == "2" and event.evidence["shadow_labels"] == evidence.labels
        assert event.evidence["challenger_roc_auc"] == pytest.approx(evidence.challenger["roc_auc"])
        client = registry.connect(rule_settings)
        assert registry.version_for_alias(client, settings.model_name, "challenger") is None
        served = "2" if decision.action == "promote" else "1"
        assert event.action == ("promoted" if served == "2" else "dropped")
        assert registry.version_for_alias(client, settings.model_name, "production") == served
        wait_for(lambda: worker.metrics().get("churn_shadow_model_version") == 0.0, 60, 0.5, "shadow scoring to stop")
        wait_for(lambda: worker.metrics().get("churn_model_version") == float(served), 60, 0.5, "the served version")
    finally:
        for reader in (scores, shadow, events_reader):
            reader.close()
        worker.stop()
