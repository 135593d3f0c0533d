"""``ModelEvent``\\ s on ``model-events``: what a retraining run tells every scoring worker.

A promotion carries the new version, the one it replaced, the artifact checksum the
workers verify before swapping and the run id; a rejection carries the gate's
reasons. Events are keyed by model name, and their id is ``<name>:<version>:<action>``,
so a repeated publication of the same decision is recognisable.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Literal

from confluent_kafka import KafkaException, Producer

from schemas.outputs import ModelEvent
from stream.errors import BrokerError
from stream.kafka.config import confluent_config
from stream.kafka.topics import MODEL_EVENTS, ensure_topics, topic_specs
from stream.settings import Settings

log = logging.getLogger(__name__)


def model_event(name: str, outcome, note: str = "", now: datetime | None = None) -> ModelEvent:
    """The event of a ``TrainOutcome``: promoted, or shadowed when it went to the challenger alias (with
    checksum), or rejected (with the gate's reasons)."""
    promoted = outcome.decision.promote
    action: Literal["promoted", "rejected", "shadowed"] = "promoted" if promoted else "rejected"
    if promoted and getattr(outcome, "stage", "production") == "shadow":
        action = "shadowed"
    reason = note if promoted else "; ".join(outcome.decision.reasons)
    if not promoted and note:
        reason = f"{reason} ({note})"
    return ModelEvent(
        event_id=f"{name}:{outcome.version}:{action}",
        model_name=name,
        version=outcome.version,
        action=action,
        previous_version=(outcome.champion_version or "") if promoted else "",
        reason=reason[:4000],
        checksum=outcome.checksum if promoted else "",
        run_id=outcome.run_id,
        ts=now or datetime.now(UTC),
        evidence={
            k: (v if isinstance(v, str) else float(v))
            for k, v in outcome.decision.evidence.items()
            if isinstance(v, str) or math.isfinite(v)
        },
    )


def publish(settings: Settings, event: ModelEvent, timeout_s: float = 30.0) -> None:
    """Send ``event`` to ``model-events`` keyed by model name; raise ``BrokerError`` unless delivered."""
    config = confluent_config(settings, settings.resolved_bootstrap())
    topic = settings.topic(MODEL_EVENTS)
    ensure_topics(config, [s for s in topic_specs(settings) if s.name == topic], timeout=timeout_s)
    errors: list[str] = []
    delivered: list[bool] = []

    def on_delivery(err, msg) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append(True)

    producer = Producer({**config, "enable.idempotence": True, "acks": "all", "linger.ms": 0})
    try:
        producer.produce(
            topic, key=event.model_name.encode(), value=event.model_dump_json().encode(), on_delivery=on_delivery
        )
    except (KafkaException, BufferError) as exc:
        raise BrokerError(f"cannot send the model event to {topic}: {exc}") from exc
    remaining = producer.flush(timeout_s)
    if errors or remaining or not delivered:
        why = "; ".join(errors) or f"not acknowledged within {timeout_s:.0f}s"
        raise BrokerError(
            f"the {event.action} event of {event.model_name} version {event.version} "
            f"was not delivered to {topic}: {why}"
        )
    log.info("published model event %s to %s", event.event_id, topic)
