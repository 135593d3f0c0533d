"""Publish account events to Kafka: validated, keyed by customer, counted.

:class:`Publisher` wraps a confluent-kafka ``Producer`` configured for the topic
contract of ``account-events``: idempotent, ``acks=all``, and the Java-compatible
``murmur2_random`` partitioner so a customer's events land on the partition that the
Faust tables expect. Every delivery report is counted; :meth:`Publisher.flush`
returns a :class:`PublishSummary`. Dicts that fail validation are counted as invalid
and never sent, so nothing is dropped silently.

Typical use::

    with Publisher.from_settings(settings, bootstrap=broker.bootstrap, rate=500) as pub:
        for event in events:
            pub.publish(event)
    summary = pub.summary()
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self, get_args

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from pydantic import ValidationError

from producers.ratelimit import TokenBucket
from schemas.events import AccountEvent, dump_event, parse_event_obj
from stream.errors import BrokerError
from stream.kafka.config import confluent_config
from stream.kafka.topics import ACCOUNT_EVENTS
from stream.settings import Settings

log = logging.getLogger(__name__)

MAX_KEPT_ERRORS = 5
_EVENT_CLASSES: tuple[type, ...] = get_args(get_args(AccountEvent)[0])

Headers = Sequence[tuple[str, bytes | str]] | Mapping[str, bytes | str]

PRODUCER_DEFAULTS: dict[str, object] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
    "linger.ms": 5,
    # The workers decode every codec; batches of a few events gain little from compressing.
    "compression.type": "none",
}


@dataclass(frozen=True)
class PublishSummary:
    """What a publisher did: sent, delivered, failed (delivery errors), invalid (never sent)."""

    sent: int
    delivered: int
    failed: int
    invalid: int
    errors: tuple[str, ...]

    @property
    def pending(self) -> int:
        """Messages sent whose delivery report has not arrived yet."""
        return self.sent - self.delivered - self.failed

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.invalid == 0 and self.pending == 0


def validation_reason(exc: ValidationError) -> str:
    """A one-line reason naming each offending field."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "event"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


class Publisher:
    """An idempotent, rate-limited, counting producer of account events."""

    def __init__(
        self,
        client_config: Mapping[str, object],
        topic: str,
        *,
        rate: float = 0.0,
        producer_overrides: Mapping[str, object] | None = None,
    ) -> None:
        """``client_config`` comes from :func:`stream.kafka_config.confluent_config`;
        ``rate`` caps events per second (0 = unlimited); ``producer_overrides`` replaces
        any of :data:`PRODUCER_DEFAULTS` or adds librdkafka properties."""
        self.topic = topic
        config = {**PRODUCER_DEFAULTS, **client_config, **(producer_overrides or {})}
        try:
            self._producer = Producer(config)
        except KafkaException as exc:
            raise BrokerError(f"cannot create a Kafka producer: {exc}") from exc
        self._bucket = TokenBucket(rate)
        self._sent = 0
        self._delivered = 0
        self._failed = 0
        self._invalid = 0
        self._errors: list[str] = []

    @classmethod
    def from_settings(
        cls, settings: Settings, bootstrap: str | None = None, *, rate: float = 0.0, **kwargs: object
    ) -> Publisher:
        """A publisher to the prefixed ``account-events`` topic of ``settings``."""
        config = confluent_config(settings, bootstrap)
        return cls(config, settings.topic(ACCOUNT_EVENTS), rate=rate, **kwargs)  # type: ignore[arg-type]

    # --- sending ---------------------------------------------------------------
    def publish(self, event: AccountEvent) -> None:
        """Send a validated event, keyed by ``customer_id``."""
        if not isinstance(event, _EVENT_CLASSES):
            raise TypeError(f"publish() takes an AccountEvent model, got {type(event).__name__}; use publish_obj()")
        self._send(event.customer_id.encode(), dump_event(event), None)

    def publish_obj(self, obj: Mapping[str, object]) -> bool:
        """Validate a mapping as an ``AccountEvent`` and send it; False (counted, not sent) if invalid."""
        try:
            event = parse_event_obj(dict(obj))
        except ValidationError as exc:
            self._invalid += 1
            reason = validation_reason(exc)
            self._keep_error(f"invalid event {obj.get('event_id', '?')!r}: {reason}")
            log.warning("not publishing invalid event %r: %s", obj.get("event_id", "?"), reason)
            return False
        self.publish(event)
        return True

    def publish_raw(self, key: bytes | str | None, value: bytes | None, headers: Headers | None = None) -> None:
        """Send arbitrary bytes, unvalidated (tests use it to inject bad input)."""
        self._send(key.encode() if isinstance(key, str) else key, value, headers)

    def _send(self, key: bytes | None, value: bytes | None, headers: Headers | None) -> None:
        self._bucket.acquire()
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, headers=headers, on_delivery=self._on_delivery)
                break
            except BufferError:
                # Local queue full: serve delivery reports until there is room.
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise BrokerError(f"cannot produce to {self.topic}: {exc}") from exc
        self._sent += 1
        self._producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self._delivered += 1
            return
        self._failed += 1
        self._keep_error(f"delivery to {msg.topic()} failed: {err.str()}")
        if self._failed <= MAX_KEPT_ERRORS:
            log.warning("delivery to %s failed: %s", msg.topic(), err.str())

    def _keep_error(self, message: str) -> None:
        if len(self._errors) < MAX_KEPT_ERRORS:
            self._errors.append(message)

    # --- completion ------------------------------------------------------------
    def poll(self, timeout: float = 0.0) -> int:
        """Serve pending delivery reports; the number served."""
        return self._producer.poll(timeout)

    def flush(self, timeout: float = 30.0) -> PublishSummary:
        """Wait up to ``timeout`` seconds for every delivery report; the summary so far."""
        deadline = time.monotonic() + timeout
        remaining = self._producer.flush(timeout)
        if remaining:
            log.warning("%d messages still undelivered after %.1fs", remaining, timeout)
        # flush() can return before the last callbacks ran; serve them within the deadline.
        while self.summary().pending and time.monotonic() < deadline:
            self._producer.poll(0.05)
        return self.summary()

    def summary(self) -> PublishSummary:
        return PublishSummary(
            sent=self._sent,
            delivered=self._delivered,
            failed=self._failed,
            invalid=self._invalid,
            errors=tuple(self._errors),
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.flush()
