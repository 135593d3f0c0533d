"""Output contracts: scores, labels, drift alerts and model lifecycle events."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
RiskBand = Literal["low", "medium", "high"]


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def risk_band(probability: float, medium: float = 0.3, high: float = 0.6) -> RiskBand:
    """Map a churn probability to a band.

    >>> risk_band(0.1), risk_band(0.45), risk_band(0.9)
    ('low', 'medium', 'high')
    """
    if probability >= high:
        return "high"
    if probability >= medium:
        return "medium"
    return "low"


class ChurnScore(_Contract):
    """Public output on ``churn-scores``: one per scored feature vector."""

    customer_id: Id
    event_id: Id
    event_ts: AwareDatetime
    probability: Annotated[float, Field(ge=0, le=1)]
    risk_band: RiskBand
    model_name: Id
    model_version: Id
    scored_at: AwareDatetime
    latency_ms: Annotated[float, Field(ge=0)]


class ChurnLabel(_Contract):
    """Ground truth on ``churn-labels``, derived from ``account_closed``."""

    customer_id: Id
    event_id: Id
    closed_at: AwareDatetime
    churned: bool = True
    reason: str = ""


class DriftAlert(_Contract):
    """A drift detector fired; published on ``drift-alerts`` keyed by detector."""

    alert_id: Id
    detector: Id
    kind: Literal["data", "prediction", "concept"]
    features: dict[str, float] = Field(default_factory=dict)
    window_start: AwareDatetime
    window_end: AwareDatetime
    model_version: str = ""
    severity: Literal["low", "medium", "high"]
    created_at: AwareDatetime


class ModelEvent(_Contract):
    """A model lifecycle event on ``model-events`` (compacted, keyed by model name)."""

    event_id: Id
    model_name: Id
    version: Id
    action: Literal["promoted", "rejected", "rolled_back"]
    previous_version: str = ""
    reason: str = ""
    checksum: str = ""
    run_id: str = ""
    ts: AwareDatetime
