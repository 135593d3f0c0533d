"""The model input contract: ``FeatureVector``, one per applied event.

``FEATURE_NAMES`` is the ordered list of model inputs; ``NUMERIC_FEATURES`` and
``CATEGORICAL_FEATURES`` split it the way the sklearn pipeline does. The vector
also carries the source ``event_id``, the event time and the feature-set version,
so the ``churn-features`` topic is a replayable feature log.

Its fields follow the rules of :mod:`schemas.fields`, so the exported JSON Schema
accepts exactly what :class:`FeatureVector` does: ids and plan without whitespace
at either end, ``event_ts`` in RFC 3339 with seconds and offset, numbers that are
JSON numbers (the counts and ``has_autopay`` integers, ``1.0`` included), no
unknown field.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

from schemas.fields import Count, Id, PlanName, Timestamp, integer, version

FEATURE_SET_VERSION: Final = 1

NUMERIC_FEATURES: tuple[str, ...] = (
    "tenure_months",
    "monthly_charges",
    "has_autopay",
    "support_calls_30d",
    "failed_payments_90d",
    "days_since_last_event",
    "usage_30d",
    "usage_trend",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("plan",)
FEATURE_NAMES: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES

NonNeg = Annotated[float, Strict(), Field(ge=0)]


def _with_examples(schema: dict[str, Any], cls: type[FeatureVector]) -> None:
    schema["examples"] = [dict(example) for example in cls.EXAMPLES]


class FeatureVector(BaseModel):
    """The exact model input for one customer at one event time."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, json_schema_extra=_with_examples)
    EXAMPLES: ClassVar[tuple[dict[str, object], ...]] = (
        {
            "customer_id": "cust-00042",
            "event_id": "evt-0007",
            "event_ts": "2026-03-07T09:15:00+00:00",
            "feature_set_version": 1,
            "tenure_months": 14.2351,
            "monthly_charges": 59.9,
            "has_autopay": 1,
            "support_calls_30d": 2,
            "failed_payments_90d": 0,
            "days_since_last_event": 1.0417,
            "usage_30d": 38.25,
            "usage_trend": -0.1823,
            "plan": "standard",
        },
    )

    customer_id: Id = Field(description="The customer; also the message key.")
    event_id: Id = Field(description="Id of the account event after which the features were computed.")
    event_ts: Timestamp = Field(description="Event time of that account event (RFC 3339 with offset).")
    feature_set_version: Annotated[Literal[1], version(FEATURE_SET_VERSION)] = Field(
        FEATURE_SET_VERSION, description="Version of the feature definitions; bumped when a feature changes meaning."
    )

    tenure_months: NonNeg = Field(description="Months (of 30.4375 days) from signup to event_ts.")
    monthly_charges: NonNeg = Field(description="Current recurring charge, in the account's currency per month.")
    has_autopay: Annotated[int, integer(ge=0, le=1)] = Field(description="1 if automatic payment is on, else 0.")
    support_calls_30d: Count = Field(description="Support calls in the 30 days up to event_ts.")
    failed_payments_90d: Count = Field(description="Failed payments in the 90 days up to event_ts.")
    days_since_last_event: NonNeg = Field(
        description="Days of silence before this event: from the previous activity to event_ts."
    )
    usage_30d: NonNeg = Field(description="Usage units in the six most recent 5-day buckets (about 30 days).")
    usage_trend: Annotated[float, Strict(), Field(ge=-10, le=10)] = Field(
        description="ln((usage_30d + 1) / (usage of the 30 days before + 1)), clipped to [-10, 10];"
        " below 0 is falling usage."
    )
    plan: PlanName = Field(
        description="Current plan name. Any name is valid; the model's one-hot encoding ignores names it was not"
        " trained on."
    )

    def model_input(self) -> dict[str, float | int | str]:
        """The named model inputs, in ``FEATURE_NAMES`` order."""
        return {name: getattr(self, name) for name in FEATURE_NAMES}
