"""What the tests share: worker processes, producing and consuming, waiting (here), and

- :mod:`support.events`: deterministic account events built from the schema models;
- :mod:`support.tiers`: the broker tiers of a session, which ran on what and why not;
- :mod:`support.tools`: outside programs a test needs (promtool, prometheus), or why it cannot run;
- :mod:`support.private_names`: which private names of Faust, aiokafka, mode and river a file uses;
- :mod:`support.models`: small fitted pipelines built as training builds them;
- :mod:`support.demo`: ``churn demo`` run as the end-to-end tests run it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from producers.simulator import SimConfig, Simulator
from stream.kafka.config import confluent_config
from stream.kafka.topics import ensure_topics, topic_specs
from stream.local.broker import free_port  # noqa: F401 - re-exported for tests
from stream.local.processes import WorkerProcess, metric_sum, scrape  # noqa: F401 - re-exported for tests
from stream.runtime.end_offsets import exact_end_offsets
from stream.settings import Settings
from training.launcher import child_env

CHURN = str(Path(sys.executable).parent / "churn")
FAULTS = Path(__file__).resolve().parent.parent / "faults"


def wait_for(condition: Callable[[], object], timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``condition`` until it returns a truthy value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not met within {timeout:.0f}s")
        time.sleep(interval)


def with_faults(env: dict[str, str], **faults: str) -> dict[str, str]:
    """``env`` for a worker process that runs with ``faults`` (see ``tests/faults/sitecustomize.py``)."""
    path = os.pathsep.join(p for p in (str(FAULTS), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path, **faults}


def worker_env(base: dict[str, str], **over: str) -> dict[str, str]:
    """This environment without its ``CHURN_*`` variables, plus ``base`` and ``over``."""
    return child_env({**base, **over})


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]], flush_s: float = 60.0) -> int:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "enable.idempotence": True, "linger.ms": 5}
    )
    n = 0
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        n += 1
        if n % 5000 == 0:
            producer.poll(0)
    remaining = producer.flush(flush_s)
    assert remaining == 0, f"{remaining} messages not delivered within {flush_s:.0f}s"
    return n


@dataclass
class Record:
    key: bytes | None
    value: bytes
    partition: int
    offset: int
    headers: dict[str, bytes] = field(default_factory=dict)
    timestamp_ms: int = 0  # the record's timestamp (its producer's create time, or the broker's append time)


class TopicReader:
    """Reads a topic from the beginning, keeping everything it has seen."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.records: list[Record] = []
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"test-reader-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )
        metadata = self.consumer.list_topics(topic, timeout=10)
        partitions = metadata.topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, 0) for p in partitions])

    def poll(self, seconds: float = 0.5) -> int:
        got = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batch = self.consumer.consume(5000, 0.2)
            for m in batch:
                if m.error():
                    continue
                self.records.append(
                    Record(m.key(), m.value(), m.partition(), m.offset(), dict(m.headers() or []), m.timestamp()[1])
                )
                got += 1
            if not batch:
                break
        return got

    def read_until(self, predicate: Callable[[list[Record]], bool], timeout: float, what: str) -> list[Record]:
        def done():
            self.poll()
            return predicate(self.records)

        wait_for(done, timeout, 0.05, what)
        return self.records

    def close(self) -> None:
        self.consumer.close()


def simulated(n_events: int, customers: int, seed: int, prefix: str):
    sim = Simulator(SimConfig(n_customers=customers, days=120, seed=seed, id_prefix=prefix))
    events = []
    for ev in sim.events():
        events.append(ev)
        if len(events) >= n_events:
            break
    return events


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(**{k.removeprefix("CHURN_").lower(): v for k, v in env.items() if k.startswith("CHURN_")})


def provision(env: dict[str, str]) -> Settings:
    settings = settings_of(env)
    ensure_topics(confluent_config(settings, settings.resolved_bootstrap()), topic_specs(settings))
    return settings


def start_worker(env, tmp_path, name="worker") -> WorkerProcess:
    worker = WorkerProcess(env, tmp_path / f"{name}.log").start()
    worker.wait_serving()
    return worker


def lookup(port: int, customer_id: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/customers/{customer_id}", timeout=10) as resp:
        return json.loads(resp.read())


def consumer_lag(bootstrap: str, group: str, topic: str) -> int:
    """Messages of ``topic`` the consumer group has not committed yet."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        tps = [TopicPartition(topic, p) for p in partitions]
        committed = consumer.committed(tps, timeout=10)
        reported = {tp: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        ends = exact_end_offsets({"bootstrap.servers": bootstrap}, reported)
        return sum(ends[tp] - max(c.offset, 0) for tp, c in zip(tps, committed))
    finally:
        consumer.close()


def wait_caught_up(bootstrap: str, group: str, topic: str, timeout: float = 120.0) -> None:
    wait_for(lambda: consumer_lag(bootstrap, group, topic) == 0, timeout, 0.5, f"group {group} caught up on {topic}")


def read_all(bootstrap: str, topic: str, timeout: float = 120.0) -> list[Record]:
    """Every record of ``topic`` up to its exact end offsets now."""
    reader = TopicReader(bootstrap, topic)
    try:
        tps = [
            TopicPartition(topic, p) for p in reader.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ]
        reported = {tp: reader.consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        ends = {tp.partition: end for tp, end in exact_end_offsets({"bootstrap.servers": bootstrap}, reported).items()}

        def complete(records: list[Record]) -> bool:
            last: dict[int, int] = {}
            for r in records:
                last[r.partition] = max(last.get(r.partition, -1), r.offset)
            return all(end == 0 or last.get(p, -1) + 1 >= end for p, end in ends.items())

        return reader.read_until(complete, timeout, f"{topic} read to its end")
    finally:
        reader.close()


def isolated_env(bootstrap: str, data_dir, label: str, **over: str) -> dict[str, str]:
    """A worker environment isolated from other tests: own topics, group and port."""
    run = uuid.uuid4().hex[:8]
    return worker_env(
        {
            "CHURN_BOOTSTRAP_SERVERS": bootstrap,
            "CHURN_DATA_DIR": str(data_dir),
            "CHURN_TOPIC_PREFIX": f"t{run}-",
            "CHURN_APP_ID": f"churn-{label}-{run}",
            "CHURN_WEB_PORT": str(free_port()),
            "CHURN_LOG_LEVEL": "INFO",
        },
        **over,
    )


class TcpRelay:
    """A loopback TCP relay from ``port`` to ``target``: a server that appears (:meth:`start`) and
    vanishes (:meth:`close`, which also drops every open connection) on a fixed address."""

    def __init__(self, port: int, target: tuple[str, int]):
        self.port, self.target = port, target
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> TcpRelay:
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                return  # closed
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            self._listener.close()
            self._listener = None
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.close()
            self._open.clear()


async def wait_until(condition: Callable[[], object], timeout: float = 2.0) -> None:
    """Let the event loop run until ``condition()`` holds; fail after ``timeout`` seconds."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)
