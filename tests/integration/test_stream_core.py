"""The streaming core on a real broker, with real worker processes and a real registry."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter, defaultdict

import orjson
import pandas as pd
import pytest
from support import (
    TopicReader,
    lookup,
    metric_sum,
    produce,
    provision,
    simulated,
    start_worker,
    wait_caught_up,
    wait_for,
)

from producers.faults import inject
from schemas.events import dump_event
from schemas.outputs import ChurnScore
from stream.pipeline.features import CustomerState, apply, feature_values

pytestmark = pytest.mark.integration


def scores_by_event(records) -> Counter:
    return Counter(orjson.loads(r.value)["event_id"] for r in records)


def test_every_valid_event_scored_once_and_bad_ones_dead_lettered(stream_env, tmp_path):
    settings = provision(stream_env)
    names = settings.topic
    events = simulated(20_000, 400, seed=21, prefix="a")
    messages = [(e.customer_id.encode(), dump_event(e)) for e in events]
    messages, n_bad = inject(messages, 0.01, seed=5)
    assert n_bad == 200
    worker = start_worker(stream_env, tmp_path)
    try:
        produce(settings.resolved_bootstrap(), names("account-events"), messages)
        scores = TopicReader(settings.resolved_bootstrap(), names("churn-scores"))
        scores.read_until(lambda r: len(r) >= len(events), 180, "a score for every valid event")
        features = TopicReader(settings.resolved_bootstrap(), names("churn-features"))
        features.read_until(lambda r: len(r) >= len(events), 30, "a feature vector for every valid event")
        dlq = TopicReader(settings.resolved_bootstrap(), names("account-events-dlq"))
        dlq.read_until(lambda r: len(r) >= n_bad, 30, "every bad message in the DLQ")
        scores.poll(1.0), features.poll(0.5), dlq.poll(0.5)

        valid_ids = [e.event_id for e in events]
        assert scores_by_event(scores.records) == Counter(valid_ids)
        assert scores_by_event(features.records) == Counter(valid_ids)
        assert len(scores.records) + len(dlq.records) == len(messages)

        # Exactly the bad messages are dead-lettered, each with where it came from and why.
        bad_payloads = Counter(v for _, v in messages if not v.startswith(b'{"event_id"'))
        assert Counter(r.value for r in dlq.records) == bad_payloads
        for record in dlq.records:
            assert record.headers["source.topic"] == names("account-events").encode()
            assert int(record.headers["source.offset"]) >= 0
            assert int(record.headers["source.partition"]) == record.partition
            assert record.headers["stage"] == b"featurize"
            assert record.headers["error.class"] in (b"ValidationError", b"PayloadRejected")
            assert record.headers["error.message"]

        # Per customer, scores come out in the order the events went in.
        order_in = defaultdict(list)
        for e in events:
            order_in[e.customer_id].append(e.event_id)
        order_out = defaultdict(list)
        for r in sorted(scores.records, key=lambda r: (r.partition, r.offset)):
            s = orjson.loads(r.value)
            order_out[s["customer_id"]].append(s["event_id"])
        assert order_out == order_in

        # Every score meets the public contract.
        for r in scores.records[:500]:
            ChurnScore.model_validate_json(r.value)

        samples = worker.metrics()
        assert metric_sum(samples, "churn_events_in_total") == len(events)
        assert metric_sum(samples, "churn_dlq_writes_total") == n_bad
        assert metric_sum(samples, "churn_scores_out_total") == len(events)
        assert samples["churn_score_batch_size_count"] >= 1
        assert samples["churn_event_to_score_latency_ms_count"] == len(events)
        assert samples["churn_model_registered_timestamp_seconds"] > 1.6e9  # the served version's registration

        # The worker's own lag: a series per account-events partition it owns (all of them), every one
        # back to 0 once the backlog is consumed and committed (about every second).
        events_topic = f'topic="{names("account-events")}"'

        def lag_caught_up() -> bool:
            lag = {k: v for k, v in worker.metrics().items() if k.startswith("churn_consumer_lag{")}
            own = [k for k in lag if events_topic in k]
            return len(own) == settings.topic_partitions and metric_sum(lag, "churn_consumer_lag") == 0

        wait_for(lag_caught_up, 30, 0.5, "churn_consumer_lag at 0 on every account-events partition")
    finally:
        worker.stop()


def test_republishing_the_same_events_changes_nothing(stream_env, tmp_path):
    settings = provision(stream_env)
    names = settings.topic
    events = simulated(3_000, 80, seed=22, prefix="b")
    messages = [(e.customer_id.encode(), dump_event(e)) for e in events]
    worker = start_worker(stream_env, tmp_path)
    try:
        bootstrap = settings.resolved_bootstrap()
        produce(bootstrap, names("account-events"), messages)
        features = TopicReader(bootstrap, names("churn-features"))
        features.read_until(lambda r: len(r) >= len(events), 120, "features for the first publication")
        # A batch's state reaches the table after its outputs are acknowledged, and its events are
        # committed after that: once all are committed, lookups show every event.
        wait_caught_up(bootstrap, settings.app_id, names("account-events"), timeout=60)
        customers = sorted({e.customer_id for e in events})
        before = {c: lookup(worker.web_port, c)["features"] for c in customers}

        produce(bootstrap, names("account-events"), messages)

        def replay_consumed():
            return metric_sum(worker.metrics(), "churn_events_skipped_total") >= len(events)

        from support import wait_for

        wait_for(replay_consumed, 120, 0.5, "the second publication consumed")
        features.poll(2.0)
        assert len(features.records) == len(events)
        assert {c: lookup(worker.web_port, c)["features"] for c in customers} == before
    finally:
        worker.stop()


def test_lookups_and_online_scoring(stream_env, tmp_path):
    settings = provision(stream_env)
    events = simulated(500, 30, seed=23, prefix="c")
    worker = start_worker(stream_env, tmp_path)
    try:
        bootstrap = settings.resolved_bootstrap()
        produce(bootstrap, settings.topic("account-events"), [(e.customer_id.encode(), dump_event(e)) for e in events])
        scores = TopicReader(bootstrap, settings.topic("churn-scores"))
        scores.read_until(lambda r: len(r) >= len(events), 120, "scores")
        customer = events[-1].customer_id
        body = lookup(worker.web_port, customer)
        state = CustomerState()
        for e in events:
            if e.customer_id == customer:
                apply(state, e)
        expected = feature_values(state, state.last_ts)
        assert {k: body["features"][k] for k in expected} == expected
        assert body["score"]["customer_id"] == customer

        with pytest.raises(urllib.error.HTTPError) as missing:
            lookup(worker.web_port, "nobody-here")
        assert missing.value.code == 404

        vector = body["features"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{worker.web_port}/score", data=json.dumps([vector, vector]).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            scored = json.loads(resp.read())
        assert len(scored) == 2 and 0 <= scored[0]["probability"] <= 1
        assert scored[0]["model_version"] == "1"

        bad = dict(vector, tenure_months=-1, unexpected=3)
        request = urllib.request.Request(
            f"http://127.0.0.1:{worker.web_port}/score", data=json.dumps(bad).encode(), method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as invalid:
            urllib.request.urlopen(request, timeout=10)
        assert invalid.value.code == 422
        detail = json.loads(invalid.value.read())["detail"]
        assert {d["field"] for d in detail} == {"tenure_months", "unexpected"}
    finally:
        worker.stop()


def test_silent_customers_are_rescored(stream_env, tmp_path):
    env = dict(stream_env, CHURN_SILENCE_DAYS="7", CHURN_SILENCE_CHECK_S="1")
    settings = provision(env)
    events = simulated(3_000, 60, seed=24, prefix="q")
    worker = start_worker(env, tmp_path)
    try:
        bootstrap = settings.resolved_bootstrap()
        produce(bootstrap, settings.topic("account-events"), [(e.customer_id.encode(), dump_event(e)) for e in events])
        clock = max(e.ts.timestamp() for e in events)
        last_seen = {}
        for e in events:
            last_seen[e.customer_id] = max(last_seen.get(e.customer_id, 0.0), e.ts.timestamp())
        closed_at = {e.customer_id: e.ts.timestamp() for e in events if e.event_type == "account_closed"}
        quiet = {c for c, ts in last_seen.items() if clock - ts >= 7 * 86_400 and c not in closed_at}
        assert quiet, "the sample has no silent customer; nothing to test"
        times: dict[str, list[float]] = {}
        for e in events:
            times.setdefault(e.customer_id, []).append(e.ts.timestamp())
        scores = TopicReader(bootstrap, settings.topic("churn-scores"))

        def silence_scores(records):
            return [s for s in (orjson.loads(r.value) for r in records) if "@" in s["event_id"]]

        scores.read_until(
            lambda r: {s["customer_id"] for s in silence_scores(r)} >= quiet,
            120,
            "a silence re-score for every quiet customer",
        )
        # A customer may also be re-scored while quiet mid-stream, if the backlog takes more than one
        # silence scan to work through; every re-score must fall after 7 days without an event.
        for s in silence_scores(scores.records):
            at = pd.Timestamp(s["event_ts"]).timestamp()
            before = [t for t in times[s["customer_id"]] if t <= at]
            assert before, f"{s['customer_id']} re-scored at {s['event_ts']}, before its first event"
            assert at - max(before) >= 7 * 86_400 - 1, f"{s['customer_id']} re-scored {s['event_ts']} after an event"
            assert s["customer_id"] not in closed_at or at < closed_at[s["customer_id"]], "re-scored after closing"
    finally:
        worker.stop()
