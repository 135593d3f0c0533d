"""Plain message records passed between the Faust shell and the pure processors."""

from __future__ import annotations

from dataclasses import dataclass, field

Headers = list[tuple[str, bytes]]


@dataclass(slots=True)
class Inbound:
    """One consumed Kafka message, as the processors see it."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    headers: Headers = field(default_factory=list)


@dataclass(slots=True)
class Outbound:
    """One message to publish: ``topic`` is the logical name (``features``, ``dlq``, ...)."""

    topic: str
    key: bytes
    value: bytes
    headers: Headers | None = None


@dataclass(slots=True)
class Scorable:
    """One feature vector ready to score: ``row`` holds the ``FeatureVector`` fields."""

    key: bytes
    row: dict
    start_ms: int  # where event-to-score latency starts: the source message's append time
    event_s: float  # the vector's event time in epoch seconds (what the drift windows order by)
