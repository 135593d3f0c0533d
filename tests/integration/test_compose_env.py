"""The compose profile's settings, run here: two workers and the producer as docker-compose.yaml configures them.

Without Docker the containers cannot run, but their processes can. The ``CHURN_*``
environment of the ``worker`` and ``producer`` services is read from
``docker-compose.yaml`` (``${VAR:-default}`` resolved the way compose resolves it with
none of the knobs set) and only what must differ on this machine is replaced:

- ``CHURN_BOOTSTRAP_SERVERS`` (``kafka:9092``) -> the test broker;
- ``CHURN_MLFLOW_TRACKING_URI`` (``http://mlflow:5000``) -> the test registry;
- ``CHURN_WEB_HOST`` (``0.0.0.0``) -> ``127.0.0.1`` and ``CHURN_WEB_PORT`` -> a free
  port per worker (replicas share no network namespace here);
- ``CHURN_DATA_DIR`` (the image's ``/var/lib/churn``) -> a folder per worker, as each
  container has its own;
- ``CHURN_TOPIC_PREFIX`` and ``CHURN_APP_ID`` -> unique values, to isolate the run.

Everything else (partitions, replication, log level, silence re-scores, the
producer's rate, scenario, customers and days) is the compose file's, and so is the
broker: these tests run on the Apache Kafka tier only (the compose file's version).
The producer runs ``churn produce`` with the service's own arguments plus
``--max-events``. The test checks that every produced event is scored exactly once,
that both workers own partitions and process events, and that a customer lookup asked
of either worker answers with the owner's state (Faust forwards it to the advertised
host of the owner).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from support import (
    CHURN,
    TopicReader,
    WorkerProcess,
    free_port,
    lookup,
    metric_sum,
    produce,
    provision,
    simulated,
    wait_caught_up,
    wait_for,
    worker_env,
)

from schemas.events import dump_event
from stream.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.tiers("kafka")]  # compose runs Apache Kafka

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yaml"
MAX_EVENTS = 3000
LOOKUPS = 12

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+other}, ${VAR+other}, $VAR, $$
_INTERPOLATION = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?[-?+])([^}]*))?\}|(\w+))")


def interpolate(value: object, environ: dict[str, str]) -> str:
    """``value`` with compose's variable interpolation applied, variables taken from ``environ``."""

    def substitute(match: re.Match[str]) -> str:
        escaped, name, op, arg, bare = match.groups()
        if escaped:
            return "$"
        if bare:
            return environ.get(bare, "")
        current = environ.get(name)
        empty = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":-", "-"):
            return arg if empty else current
        if op in (":?", "?"):
            if empty:
                raise KeyError(f"compose needs {name}: {arg}")
            return current
        if op in (":+", "+"):
            return "" if empty else arg
        return current or ""

    return _INTERPOLATION.sub(substitute, str(value))


def service_env(compose: dict[str, Any], name: str, environ: dict[str, str]) -> dict[str, str]:
    """The ``CHURN_*`` environment a compose service sets, interpolated."""
    env = compose["services"][name].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: interpolate("" if v is None else v, environ) for k, v in env.items() if k.startswith("CHURN_")}


def service_command(compose: dict[str, Any], name: str, environ: dict[str, str]) -> list[str]:
    command = compose["services"][name]["command"]
    assert isinstance(command, list), f"{name}: use the list form of command"
    return [interpolate(arg, environ) for arg in command]


def process_env(churn: dict[str, str], **over: str) -> dict[str, str]:
    """This machine's environment without any CHURN_* of its own, plus the service's settings and overrides."""
    return worker_env(churn, **over)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def isolated(kafka_bootstrap: str, registry_dir: Path) -> dict[str, str]:
    """What must differ from the compose file on this machine, shared by every process of one run."""
    run = os.urandom(4).hex()
    return {
        "CHURN_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CHURN_MLFLOW_TRACKING_URI": Settings(data_dir=registry_dir).resolved_tracking_uri(),
        "CHURN_TOPIC_PREFIX": f"c{run}-",
        "CHURN_APP_ID": f"churn-compose-{run}",
    }


def compose_worker_env(worker_churn: dict[str, str], isolation: dict[str, str], data_dir: Path) -> dict[str, str]:
    return process_env(
        worker_churn,
        **isolation,
        CHURN_WEB_HOST="127.0.0.1",
        CHURN_WEB_PORT=str(free_port()),
        CHURN_DATA_DIR=str(data_dir),
    )


def test_compose_worker_and_producer_settings_score_every_event_once(compose, kafka_bootstrap, registry_dir, tmp_path):
    started = time.monotonic()
    knobs: dict[str, str] = {}  # none of TOPIC_PARTITIONS, PRODUCER_RATE, ... set: the file's defaults
    worker_churn = service_env(compose, "worker", knobs)
    producer_churn = service_env(compose, "producer", knobs)
    assert service_command(compose, "worker", knobs) == ["worker"], "WorkerProcess runs `churn worker`"
    produce_args = service_command(compose, "producer", knobs)
    assert produce_args[0] == "produce"
    assert worker_churn["CHURN_BOOTSTRAP_SERVERS"] == producer_churn["CHURN_BOOTSTRAP_SERVERS"]
    assert worker_churn["CHURN_TOPIC_PARTITIONS"] == producer_churn["CHURN_TOPIC_PARTITIONS"]

    isolation = isolated(kafka_bootstrap, registry_dir)
    envs = [compose_worker_env(worker_churn, isolation, tmp_path / f"worker-{i}") for i in (1, 2)]
    producer_env = process_env(producer_churn, **isolation, CHURN_DATA_DIR=str(tmp_path / "producer"))
    settings = provision(envs[0])  # the compose `topics` job
    partitions = settings.topic_partitions
    bootstrap = settings.resolved_bootstrap()
    assert partitions >= 2

    workers = [WorkerProcess(env, tmp_path / f"worker-{i}.log").start() for i, env in enumerate(envs, 1)]
    scores = TopicReader(bootstrap, settings.topic("churn-scores"))
    try:
        for worker in workers:
            worker.wait_serving(timeout=90)

        def owned() -> list[float]:
            return [w.metrics().get("churn_assigned_partitions", 0) for w in workers]

        wait_for(lambda: all(owned()) and sum(owned()) == partitions, 60, 0.5, "both workers own partitions")

        producer_log = tmp_path / "producer.log"
        with producer_log.open("wb") as out:
            done = subprocess.run(
                [CHURN, *produce_args, f"--max-events={MAX_EVENTS}"],
                env=producer_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=90,
            )
        assert done.returncode == 0, producer_log.read_text(errors="replace")[-3000:]

        events = TopicReader(bootstrap, settings.topic("account-events"))
        events.read_until(lambda r: len(r) >= MAX_EVENTS, 30, "the produced events on account-events")
        events.poll(0.5)
        events.close()
        produced = Counter(orjson.loads(r.value)["event_id"] for r in events.records)
        assert len(events.records) == MAX_EVENTS and len(produced) == MAX_EVENTS, "the producer sent duplicates"

        scores.read_until(
            lambda r: {orjson.loads(x.value)["event_id"] for x in r} >= set(produced), 90, "every produced event scored"
        )
        wait_caught_up(bootstrap, settings.app_id, settings.topic("account-events"), timeout=60)
        scores.poll(1.0)
        counts = Counter(orjson.loads(r.value)["event_id"] for r in scores.records)
        per_event = Counter(counts[event_id] for event_id in produced)
        assert per_event == {1: len(produced)}, f"scores per produced event: {dict(per_event)}"
        silence = {e for e in counts if e not in produced}
        assert all("@" in e for e in silence), f"scores of events nobody produced: {sorted(silence)[:5]}"

        final = owned()
        assert all(final) and sum(final) == partitions, f"partitions per worker after the run: {final}"
        processed = [metric_sum(w.metrics(), "churn_events_in_total") for w in workers]
        assert all(n > 0 for n in processed) and sum(processed) == MAX_EVENTS, processed

        # A lookup asked of either worker answers with the owner's state: the worker that does
        # not own the key forwards the request to the owner's advertised host.
        wait_caught_up(bootstrap, settings.app_id, settings.topic("account-events"), timeout=60)
        customers = sorted({r.key.decode() for r in events.records if r.key})[:LOOKUPS]
        for customer in customers:
            first, second = (lookup(w.web_port, customer) for w in workers)
            assert first["features"] and first["features"] == second["features"], customer
        print(
            f"compose settings: {MAX_EVENTS} events, {len(silence)} silence re-scores, processed {processed}, "
            f"partitions {final}, {time.monotonic() - started:.0f}s"
        )
    finally:
        scores.close()
        for worker in workers:
            worker.stop()


def test_compose_rocksdb_store_keeps_state_across_a_restart(compose, kafka_bootstrap, registry_dir, tmp_path):
    """The compose store (RocksDB): every event scored, and a restarted worker serves the same state
    from its local store and carries on without reprocessing."""
    worker_churn = service_env(compose, "worker", {})
    assert worker_churn["CHURN_STORE"].startswith("rocksdb://")
    env = compose_worker_env(worker_churn, isolated(kafka_bootstrap, registry_dir), tmp_path / "worker")
    settings = provision(env)
    bootstrap = settings.resolved_bootstrap()
    events = simulated(400, 40, seed=41, prefix="rdb")
    first, second = events[:200], events[200:]
    customers = sorted({e.customer_id for e in first})[:LOOKUPS]
    scores = TopicReader(bootstrap, settings.topic("churn-scores"))

    def run(batch, log_name: str) -> WorkerProcess:
        worker = WorkerProcess(env, tmp_path / log_name).start()
        worker.wait_serving(timeout=90)
        produce(bootstrap, settings.topic("account-events"), [(e.customer_id.encode(), dump_event(e)) for e in batch])
        wanted = {e.event_id for e in batch}

        def scored() -> bool:
            crash = re.search(r"Crashed reason=(\w+)", worker.log_path.read_text(errors="replace"))
            assert crash is None, f"an agent crashed on the {worker_churn['CHURN_STORE']} store: {crash.group(1)}"
            scores.poll()
            return {orjson.loads(r.value)["event_id"] for r in scores.records} >= wanted

        wait_for(scored, 60, 0.2, "every event scored on the RocksDB store")
        wait_caught_up(bootstrap, settings.app_id, settings.topic("account-events"), timeout=60)
        return worker

    try:
        worker = run(first, "first.log")
        before = {c: lookup(worker.web_port, c) for c in customers}
        assert worker.stop() == 0
        assert list((tmp_path / "worker").rglob("*.sst")) or list((tmp_path / "worker").rglob("CURRENT")), (
            "no RocksDB files under the worker's data dir"
        )

        worker = run([], "second.log")
        assert {c: lookup(worker.web_port, c) for c in customers} == before
        worker.stop()
        worker = run(second, "third.log")
        assert metric_sum(worker.metrics(), "churn_events_in_total") == len(second)  # nothing reprocessed
        counts = Counter(orjson.loads(r.value)["event_id"] for r in scores.records)
        assert all(counts[e.event_id] == 1 for e in events)
        worker.stop()

        # Another app (its own topics and app id) on the same data dir starts from its own empty
        # tables; sharing the first app's RocksDB files made its recovery refuse to start.
        other = compose_worker_env(worker_churn, isolated(kafka_bootstrap, registry_dir), tmp_path / "worker")
        other_settings = provision(other)
        other_scores = TopicReader(bootstrap, other_settings.topic("churn-scores"))
        worker = WorkerProcess(other, tmp_path / "other-app.log").start()
        worker.wait_serving(timeout=90)
        produce(
            bootstrap, other_settings.topic("account-events"), [(e.customer_id.encode(), dump_event(e)) for e in first]
        )
        other_scores.read_until(
            lambda r: {orjson.loads(x.value)["event_id"] for x in r} >= {e.event_id for e in first},
            60,
            "every event of the other app scored",
        )
        # Its state is built from its own events only: the first app's store also holds the second batch.
        assert {c: lookup(worker.web_port, c)["features"] for c in customers} == {
            c: state["features"] for c, state in before.items()
        }
        assert worker.stop() == 0
        other_scores.close()
    finally:
        scores.close()
