"""``churn score-batch --from-changelog`` against a real worker: each customer's batch score is the stream's latest."""

from __future__ import annotations

import subprocess
from datetime import datetime

import orjson
import pyarrow.parquet as pq
import pytest
from support import CHURN, TopicReader, produce, provision, read_all, simulated, start_worker, wait_caught_up

from schemas.events import dump_event
from stream.kafka.config import confluent_config
from stream.kafka.topics import TopicSpec, ensure_topics

pytestmark = pytest.mark.integration


def test_batch_scores_from_the_changelog_equal_the_streams_latest(stream_env, tmp_path):
    settings = provision(stream_env)
    bootstrap = settings.resolved_bootstrap()
    events = simulated(6_000, 150, seed=31, prefix="sb")
    batch_topic = settings.topic("churn-scores-batch")
    ensure_topics(confluent_config(settings, bootstrap), [TopicSpec(batch_topic, settings.topic_partitions)])
    worker = start_worker(stream_env, tmp_path)
    try:
        produce(bootstrap, settings.topic("account-events"), [(e.customer_id.encode(), dump_event(e)) for e in events])
        scores = TopicReader(bootstrap, settings.topic("churn-scores"))
        scores.read_until(lambda r: len(r) >= len(events), 180, "a score for every event")
        # A batch's states are in the changelog before its events are committed: once every event is
        # committed, the changelog holds every customer's latest state.
        wait_caught_up(bootstrap, settings.app_id, settings.topic("account-events"), timeout=60)
    finally:
        worker.stop()

    latest: dict[str, dict] = {}  # the stream's latest score per customer: the last in its partition
    for record in sorted(scores.records, key=lambda r: (r.partition, r.offset)):
        score = orjson.loads(record.value)
        latest[score["customer_id"]] = score
    closed = {e.customer_id for e in events if e.event_type == "account_closed"}
    assert len(latest) == len({e.customer_id for e in events}) and closed and len(closed) < len(latest)

    out = tmp_path / "base.parquet"
    proc = subprocess.run(
        [CHURN, "score-batch", "--from-changelog", "--out", str(out), "--topic", batch_topic, "--chunk-rows", "40"],
        env=stream_env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert f"closed {len(closed):,}" in proc.stdout

    rows = {row["customer_id"]: row for row in pq.read_table(out).to_pylist()}
    assert set(rows) == set(latest) - closed
    # A chunk is 40 customers of the changelog, scored or skipped: one row group each.
    assert pq.ParquetFile(out).metadata.num_row_groups == -(-len(latest) // 40) > 1
    for customer, row in rows.items():
        stream = latest[customer]
        assert row["probability"] == stream["probability"], customer
        assert row["risk_band"] == stream["risk_band"], customer
        assert (row["model_name"], row["model_version"]) == (stream["model_name"], stream["model_version"])
        assert row["as_of"].timestamp() == pytest.approx(
            datetime.fromisoformat(stream["event_ts"]).timestamp(), abs=1e-3
        )
        reasons = [
            (r["feature"], r["category"] if r["category"] is not None else r["value"], r["contribution"])
            for r in row["reasons"]
        ]
        assert reasons == [(r["feature"], r["value"], r["contribution"]) for r in stream["reasons"]], customer

    published = read_all(bootstrap, batch_topic, timeout=60)
    assert len(published) == len(rows)
    assert {r.headers["score.reason"] for r in published} == {b"batch"}
    by_customer = {r.key.decode(): orjson.loads(r.value) for r in published}
    assert {c: s["probability"] for c, s in by_customer.items()} == {c: r["probability"] for c, r in rows.items()}


def test_an_unknown_version_is_one_line(stream_env, tmp_path):
    out = tmp_path / "base.parquet"
    proc = subprocess.run(
        [CHURN, "score-batch", "--synthetic", "10", "--version", "99", "--out", str(out)],
        env=stream_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert (
        proc.stderr.strip().splitlines()[-1] == "error: --version 99: churn-model has no such version in the registry"
    )
    assert not out.exists()
