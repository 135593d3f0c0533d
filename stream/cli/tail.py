"""``churn tail``: follow the churn-scores topic in a live table or as JSON lines."""

from __future__ import annotations

import sys
import uuid
from collections import Counter, deque

import orjson
from confluent_kafka import Consumer, KafkaException
from rich.console import Console
from rich.live import Live
from rich.table import Table

from stream.errors import BrokerError
from stream.kafka.config import confluent_config
from stream.kafka.topics import CHURN_SCORES
from stream.settings import Settings

_BAND_STYLE = {"low": "green", "medium": "yellow", "high": "bold red"}


def _table(recent: deque, versions: Counter, seen: int) -> Table:
    t = Table(title=f"churn-scores: {seen:,} seen; by model version {dict(versions)}", title_justify="left")
    for column in ("customer", "event", "event time", "probability", "band", "model", "latency ms"):
        t.add_column(column)
    for s in reversed(recent):
        band = s["risk_band"]
        t.add_row(
            s["customer_id"],
            s["event_id"],
            str(s["event_ts"])[:19],
            f"{s['probability']:.3f}",
            f"[{_BAND_STYLE.get(band, '')}]{band}[/]",
            f"{s['model_name']} v{s['model_version']}",
            f"{s['latency_ms']:.1f}",
        )
    return t


def tail_scores(
    settings: Settings, console: Console, *, as_json: bool, from_beginning: bool, limit: int | None, rows: int
) -> int:
    """Consume scores until interrupted or ``limit`` is reached; returns how many were shown."""
    config = confluent_config(settings, settings.resolved_bootstrap())
    try:
        consumer = Consumer(
            {
                **config,
                "group.id": f"churn-tail-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
                "topic.metadata.refresh.interval.ms": 2000,
            }
        )
        consumer.subscribe([settings.topic(CHURN_SCORES)])
    except KafkaException as exc:
        raise BrokerError(f"cannot consume {settings.topic(CHURN_SCORES)}: {exc}") from exc
    recent: deque = deque(maxlen=rows)
    versions: Counter = Counter()
    seen = 0
    try:
        if as_json:
            while limit is None or seen < limit:
                for msg in consumer.consume(500, 0.5):
                    if msg.error():
                        continue
                    sys.stdout.write(msg.value().decode() + "\n")
                    seen += 1
                    if limit is not None and seen >= limit:
                        break
                sys.stdout.flush()
            return seen
        with Live(_table(recent, versions, seen), console=console, refresh_per_second=4) as live:
            while limit is None or seen < limit:
                batch = consumer.consume(500, 0.25)
                for msg in batch:
                    if msg.error():
                        continue
                    score = orjson.loads(msg.value())
                    recent.append(score)
                    versions[str(score["model_version"])] += 1
                    seen += 1
                if batch:
                    live.update(_table(recent, versions, seen))
        return seen
    except KeyboardInterrupt:
        return seen
    finally:
        consumer.close()
