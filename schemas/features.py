"""The model input contract: ``FeatureVector``, one per applied event.

``FEATURE_NAMES`` is the ordered list of model inputs; ``NUMERIC_FEATURES`` and
``CATEGORICAL_FEATURES`` split it the way the sklearn pipeline does. The vector
also carries the source ``event_id``, the event time and the feature-set version,
so the ``churn-features`` topic is a replayable feature log.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

FEATURE_SET_VERSION = 1

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

NonNeg = Annotated[float, Field(ge=0)]


class FeatureVector(BaseModel):
    """The exact model input for one customer at one event time."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    customer_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    event_ts: AwareDatetime
    feature_set_version: Literal[1] = FEATURE_SET_VERSION

    tenure_months: NonNeg
    monthly_charges: NonNeg
    has_autopay: Annotated[int, Field(ge=0, le=1)]
    support_calls_30d: Annotated[int, Field(ge=0)]
    failed_payments_90d: Annotated[int, Field(ge=0)]
    days_since_last_event: NonNeg
    usage_30d: NonNeg
    usage_trend: Annotated[float, Field(ge=-10, le=10)]
    plan: Annotated[str, StringConstraints(min_length=1, max_length=64)]

    def model_input(self) -> dict[str, float | int | str]:
        """The named model inputs, in ``FEATURE_NAMES`` order."""
        return {name: getattr(self, name) for name in FEATURE_NAMES}
