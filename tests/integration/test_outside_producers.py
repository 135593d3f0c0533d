"""Producers configured their own way: any compression codec, librdkafka's default partitioner, no key.

Each test feeds a real worker with a plain ``confluent_kafka.Producer`` set up as another
team would set theirs up, and checks the outputs against a recomputation from the input.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import orjson
import pytest
from aiokafka.record.memory_records import MemoryRecords
from confluent_kafka import Producer
from support import (
    TopicReader,
    WorkerProcess,
    free_port,
    lookup,
    metric_sum,
    provision,
    simulated,
    start_worker,
    wait_caught_up,
    wait_for,
    with_faults,
)

from schemas.events import dump_event
from stream.pipeline.features import CustomerState, apply, feature_values

pytestmark = pytest.mark.integration

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def plain_producer(bootstrap: str, **config: object) -> Producer:
    """A confluent-kafka producer with librdkafka's defaults (partitioner consistent_random) and ``config``."""
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, **config})


def send(producer: Producer, topic: str, messages) -> None:
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0, "messages not delivered"


def event_ids(records) -> Counter:
    return Counter(orjson.loads(r.value)["event_id"] for r in records)


def expected_vectors(events) -> dict[str, dict]:
    """The feature values of each event, folding each customer's events in the order they were sent."""
    states: dict[str, CustomerState] = defaultdict(CustomerState)
    out = {}
    for e in events:
        state = states[e.customer_id]
        apply(state, e)
        out[e.event_id] = feature_values(state, state.last_ts)
    return out


def test_every_codec_and_keyless_events_from_a_plain_client_are_scored(stream_env, tmp_path, broker_kind):
    settings = provision(stream_env)
    bootstrap, topic = settings.resolved_bootstrap(), settings.topic("account-events")
    batches = {codec: simulated(1_500, 60, seed=40 + i, prefix=f"z{codec}") for i, codec in enumerate(CODECS)}
    # Without a key, librdkafka picks a partition per message: a customer's events reach its home
    # partition in any order. A few per customer keep them within the 16 a state re-orders.
    keyless = simulated(400, 80, seed=49, prefix="nokey")
    worker = start_worker(stream_env, tmp_path)
    try:
        for codec, events in batches.items():
            send(
                plain_producer(bootstrap, **{"compression.type": codec}),
                topic,
                [(e.customer_id.encode(), dump_event(e)) for e in events],
            )
        send(plain_producer(bootstrap, **{"compression.type": "lz4"}), topic, [(None, dump_event(e)) for e in keyless])
        keyed = [e for events in batches.values() for e in events]
        scores = TopicReader(bootstrap, settings.topic("churn-scores"))
        scores.read_until(
            lambda r: set(event_ids(r)) >= {e.event_id for e in keyed + keyless},
            180,
            "a score for every event of every codec, and every keyless one",
        )
        # Keyed events keep their order per customer: each vector equals a recomputation in that order.
        features = TopicReader(bootstrap, settings.topic("churn-features"))
        features.read_until(lambda r: set(event_ids(r)) >= {e.event_id for e in keyed}, 60, "every vector")
        expected = expected_vectors(keyed)
        for record in features.records:
            vector = orjson.loads(record.value)
            if vector["event_id"] in expected:
                assert {k: vector[k] for k in expected[vector["event_id"]]} == expected[vector["event_id"]]
        # Keyless customers end in the state their events make in any order.
        wait_caught_up(bootstrap, stream_env["CHURN_APP_ID"], topic)
        for customer, want in final_features(keyless).items():
            got = lookup(worker.web_port, customer)["features"]
            assert {k: got[k] for k in want} == want, customer
        assert worker.proc.poll() is None
        samples = worker.metrics()
        assert metric_sum(samples, "churn_undecodable_batches_total") == 0
        assert metric_sum(samples, "churn_events_skipped_total") == 0
        assert metric_sum(samples, "churn_events_rerouted_total") > 0  # consistent_random sent most keys elsewhere
        # The embedded broker's workarounds run on it alone; on Kafka the worker keeps Faust's own behaviour.
        quirks = {"kafka": "none", "embedded": "tansu"}.get(broker_kind)
        if quirks is not None:
            assert samples.get(f'churn_worker_info{{broker_quirks="{quirks}"}}') == 1.0, quirks
            log = worker.log_path.read_text(errors="replace")
            assert ("working around its end offsets" in log) == (quirks == "tansu")
    finally:
        worker.stop()


def final_features(events) -> dict[str, dict]:
    """Each customer's features after all of its events."""
    states: dict[str, CustomerState] = defaultdict(CustomerState)
    for e in events:
        apply(states[e.customer_id], e)
    return {c: feature_values(s, s.last_ts) for c, s in states.items()}


def test_an_undecodable_batch_is_dead_lettered_whole_and_the_stream_goes_on(stream_env, tmp_path):
    """The worker lacks lz4 (a fault): lz4 batches go to the DLQ as they were fetched, gzip ones are scored."""
    settings = provision(stream_env)
    bootstrap, topic = settings.resolved_bootstrap(), settings.topic("account-events")
    env = with_faults(stream_env, FAULT_NO_CODECS="lz4")
    lz4_events = simulated(800, 40, seed=51, prefix="lz")
    gzip_events = simulated(1_600, 80, seed=52, prefix="gz")
    worker = start_worker(env, tmp_path)
    try:
        assert "fault injected: no lz4 codec" in worker.log_path.read_text(errors="replace")
        murmur2 = {"partitioner": "murmur2_random"}
        send(
            plain_producer(bootstrap, **murmur2, **{"compression.type": "lz4"}),
            topic,
            [(e.customer_id.encode(), dump_event(e)) for e in lz4_events],
        )
        send(
            plain_producer(bootstrap, **murmur2, **{"compression.type": "gzip"}),
            topic,
            [(e.customer_id.encode(), dump_event(e)) for e in gzip_events],
        )
        scores = TopicReader(bootstrap, settings.topic("churn-scores"))
        scores.read_until(
            lambda r: set(event_ids(r)) >= {e.event_id for e in gzip_events},
            120,
            "every gzip event scored after the lz4 batches",
        )
        assert worker.proc.poll() is None, "the worker stopped"
        assert not set(event_ids(scores.records)) & {e.event_id for e in lz4_events}

        # Nothing is lost: the DLQ holds each lz4 batch's bytes, which decode to exactly the lz4 events.
        dlq = TopicReader(bootstrap, settings.topic("account-events-dlq"))

        def recovered(records) -> list[bytes]:
            values = []
            for r in records:
                if r.headers.get("stage") == b"fetch":
                    values += [rec.value for rec in MemoryRecords(r.value).next_batch()]
            return values

        dlq.read_until(lambda r: len(recovered(r)) >= len(lz4_events), 60, "every lz4 batch in the DLQ")
        assert Counter(recovered(dlq.records)) == Counter(dump_event(e) for e in lz4_events)
        ranges = 0
        for r in dlq.records:
            assert r.headers["error.class"] == b"UnsupportedCodecError"
            assert r.headers["source.topic"] == topic.encode() and r.headers["payload"] == b"record-batch"
            first, last = int(r.headers["source.offset"]), int(r.headers["source.offset.last"])
            assert last - first + 1 == len(list(MemoryRecords(r.value).next_batch()))
            ranges += last - first + 1
        samples = worker.metrics()
        assert metric_sum(samples, "churn_undecodable_offsets_total") == ranges == len(lz4_events)
        assert metric_sum(samples, "churn_undecodable_batches_total") == len(dlq.records)

        # Restarted, the worker does not meet those batches again: its committed offsets are past them.
        wait_caught_up(bootstrap, stream_env["CHURN_APP_ID"], topic)
        worker.stop()
        worker = start_worker(env, tmp_path, name="restarted")
        more = simulated(400, 20, seed=53, prefix="gz2")
        send(
            plain_producer(bootstrap, **murmur2, **{"compression.type": "gzip"}),
            topic,
            [(e.customer_id.encode(), dump_event(e)) for e in more],
        )
        scores.read_until(lambda r: set(event_ids(r)) >= {e.event_id for e in more}, 120, "scoring after restart")
        assert metric_sum(worker.metrics(), "churn_undecodable_batches_total") == 0
    finally:
        worker.stop()


def test_two_workers_fed_by_librdkafkas_default_partitioner_keep_every_customers_state(stream_env, tmp_path):
    """consistent_random (CRC32) puts most customers away from their murmur2 home; a worker joins, one leaves."""
    settings = provision(stream_env)
    bootstrap, topic = settings.resolved_bootstrap(), settings.topic("account-events")
    partitions = settings.topic_partitions
    events = simulated(9_000, 300, seed=61, prefix="crc")
    phases = events[:3000], events[3000:6000], events[6000:]
    producer = plain_producer(bootstrap)  # librdkafka's defaults: partitioner consistent_random
    scores = TopicReader(bootstrap, settings.topic("churn-scores"))
    features = TopicReader(bootstrap, settings.topic("churn-features"))

    def all_scored(batch):
        ids = {e.event_id for e in batch}
        scores.read_until(lambda r: set(event_ids(r)) >= ids, 180, f"{len(ids)} events scored")

    a = start_worker(stream_env, tmp_path, name="a")
    b = None
    try:
        send(producer, topic, [(e.customer_id.encode(), dump_event(e)) for e in phases[0]])
        all_scored(phases[0])
        b = WorkerProcess(dict(stream_env, CHURN_WEB_PORT=str(free_port())), tmp_path / "b.log").start()
        b.wait_serving()
        wait_for(
            lambda: all(w.metrics().get("churn_assigned_partitions", 0) > 0 for w in (a, b)),
            60,
            0.5,
            "both workers own partitions",
        )
        send(producer, topic, [(e.customer_id.encode(), dump_event(e)) for e in phases[1]])
        all_scored(phases[1])
        a.stop()
        wait_for(
            lambda: b.metrics().get("churn_assigned_partitions", 0) == partitions,
            60,
            0.5,
            "the remaining worker owns every partition",
        )
        send(producer, topic, [(e.customer_id.encode(), dump_event(e)) for e in phases[2]])
        all_scored(phases[2])

        ids = {e.event_id for e in events}
        features.read_until(lambda r: set(event_ids(r)) >= ids, 60, "a vector for every event")
        # Every vector equals a recomputation from the input: no customer's state was lost or split.
        expected = expected_vectors(events)
        wrong = set()
        for record in features.records:
            vector = orjson.loads(record.value)
            if {k: vector[k] for k in expected[vector["event_id"]]} != expected[vector["event_id"]]:
                wrong.add(vector["customer_id"])
        assert not wrong, f"{len(wrong)} of 300 customers' features differ from a recomputation"
        # And the table the remaining worker serves holds each customer's whole history.
        wait_caught_up(bootstrap, stream_env["CHURN_APP_ID"], topic)
        for customer, want in final_features(events).items():
            got = lookup(b.web_port, customer)["features"]
            assert {k: got[k] for k in want} == want, customer
        rerouted = metric_sum(b.metrics(), "churn_events_rerouted_total")
        assert rerouted > 0
        print(
            f"rerouted by worker b: {rerouted:.0f}; duplicate scores: "
            f"{sum(n - 1 for n in event_ids(scores.records).values())}"
        )
    finally:
        a.stop()
        if b is not None:
            b.stop()
