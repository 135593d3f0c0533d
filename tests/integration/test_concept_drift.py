"""Concept drift caught live: a worker joins its scores with the churn labels it derives and alerts."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer
from support import TopicReader, WorkerProcess, metric_sum, provision, wait_for

from producers.simulator import SimConfig, Simulator
from schemas.events import dump_event
from schemas.outputs import DriftAlert
from stream.local.processes import labelled

pytestmark = pytest.mark.integration

DAY = 86_400.0
CUSTOMERS = 500
ONSET_DAY = 80
DAYS = 140
WINDOW_PAIRS = 2000


def test_a_worker_raises_a_concept_alert_after_the_concept_flips(stream_env, tmp_path):
    """The concept flips while the inputs look the same: only matured labels can tell. The alert
    comes within the label horizon plus two windows of the onset, none before it, and it carries
    the live performance against what the model's scores promise."""
    sim = Simulator(
        SimConfig(
            n_customers=CUSTOMERS, days=DAYS, seed=23, scenario="concept_flip", onset_day=ONSET_DAY, id_prefix="cf"
        )
    )
    events = list(sim.events())
    per_day = len(events) / DAYS
    env = dict(
        stream_env,
        CHURN_DRIFT_WARMUP_EVENTS=str(int(per_day * 40)),  # histories fill first, as in the demo
        CHURN_DRIFT_CONCEPT_WINDOW=str(WINDOW_PAIRS),
        CHURN_DRIFT_CONCEPT_CHECK_PAIRS="500",
    )
    settings = provision(env)
    bootstrap = settings.resolved_bootstrap()
    alerts = TopicReader(bootstrap, settings.topic("drift-alerts"))
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_serving()
        # Published day by day, as a live stream arrives: the worker's partitions advance together,
        # and the alert's event time says when it was raised (a backlog drained partition by
        # partition has no such time).
        by_day: dict[int, list] = {}
        for e in events:
            by_day.setdefault(int((e.ts - sim.config.start).total_seconds() // DAY), []).append(e)
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "partitioner": "murmur2_random",
                "enable.idempotence": True,
                "linger.ms": 5,
            }
        )
        for day in sorted(by_day):
            for e in by_day[day]:
                producer.produce(settings.topic("account-events"), key=e.customer_id.encode(), value=dump_event(e))
            assert producer.flush(60) == 0, f"day {day} not delivered"
            time.sleep(0.02)
        wait_for(
            lambda: metric_sum(worker.metrics(), "churn_events_in_total") >= len(events),
            240,
            0.5,
            "every event consumed",
        )

        def concept(records) -> list[DriftAlert]:
            parsed = [DriftAlert.model_validate_json(r.value) for r in records]
            return [a for a in parsed if a.kind == "concept"]

        try:
            found = concept(alerts.read_until(lambda r: bool(concept(r)), 60, "a concept alert"))
        except TimeoutError:
            scraped = worker.metrics()
            seen = [
                (a.detector, a.kind, round((a.window_end.timestamp() - sim.config.start.timestamp()) / DAY))
                for a in (DriftAlert.model_validate_json(r.value) for r in alerts.records)
            ]
            pytest.fail(
                f"no concept alert; alerts {seen}; matured pairs "
                f"{metric_sum(scraped, 'churn_matured_pairs_total'):.0f}; live performance "
                f"{labelled(scraped, 'churn_live_performance', 'metric')}"
            )
        first = min(found, key=lambda a: a.window_end)
        onset = sim.onset_ts
        window_days = WINDOW_PAIRS / per_day
        latest = onset + (settings.horizon_days + 2 * window_days) * DAY
        day = (first.window_end.timestamp() - sim.config.start.timestamp()) / DAY
        assert onset <= first.window_end.timestamp() <= latest, (
            f"concept alert at stream day {day:.0f}; onset day {ONSET_DAY}, "
            f"latest {ONSET_DAY + settings.horizon_days + 2 * window_days:.0f}"
        )
        assert first.harm and first.severity in ("medium", "high")
        evidence = first.features
        assert evidence["log_loss_ratio"] >= 1 + settings.drift_concept_loss_rise
        assert evidence["log_loss"] > evidence["log_loss_expected"]
        assert evidence["pairs"] >= WINDOW_PAIRS // 2
        # The live performance is on /metrics for the serving version.
        scraped = worker.metrics()
        assert metric_sum(scraped, "churn_matured_pairs_total") >= WINDOW_PAIRS
        assert labelled(scraped, "churn_live_performance", "metric")["log_loss_ratio"] > 1.0
        print(
            f"concept alert {first.detector} ({first.severity}) at stream day {day:.0f}, onset {ONSET_DAY}: "
            f"log loss {evidence['log_loss']:.3f} vs expected {evidence['log_loss_expected']:.3f}, "
            f"AUC {evidence.get('roc_auc', float('nan')):.3f} vs expected {evidence.get('roc_auc_expected', 0):.3f}"
        )
    finally:
        worker.stop()
        alerts.close()
