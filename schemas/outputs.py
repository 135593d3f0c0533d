"""Output contracts: scores, labels, drift alerts and model lifecycle events.

The worker and the retraining job write these; consumers in any language may
validate them against the exported JSON Schemas, which accept exactly what the
models accept (the rules are in :mod:`schemas.fields`): ids without whitespace at
either end, times as RFC 3339 strings with seconds and an offset, numbers as
JSON numbers (never strings, never ``NaN``), booleans as ``true``/``false``, no
unknown field.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

from schemas.fields import Id, Timestamp, version

RiskBand = Literal["low", "medium", "high"]
Number = Annotated[float, Strict()]


def _with_examples(schema: dict[str, Any], cls: type[_Contract]) -> None:
    schema["examples"] = [dict(example) for example in cls.EXAMPLES]


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, json_schema_extra=_with_examples)
    EXAMPLES: ClassVar[tuple[dict[str, object], ...]] = ()


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


class ScoreReason(_Contract):
    """One model input's part in a score: its value and its signed term of the log-odds."""

    feature: Id = Field(description="The model input (a FeatureVector field).")
    value: Annotated[float, Strict()] | Annotated[str, Strict()] = Field(
        description="The input's value in the scored feature vector: a number, or a category."
    )
    contribution: Number = Field(
        description="Its term of the score's log-odds, rounded to 6 decimals: positive raises the churn"
        " probability, negative lowers it. All inputs' terms and the model's intercept add up to the"
        " log-odds log(p / (1 - p))."
    )


class ChurnScore(_Contract):
    """Public output on ``churn-scores``: one per scored feature vector, keyed by customer_id."""

    EXAMPLES = (
        {
            "customer_id": "cust-00042",
            "event_id": "evt-0007",
            "event_ts": "2026-03-07T09:15:00+00:00",
            "probability": 0.4721,
            "risk_band": "medium",
            "model_name": "churn-model",
            "model_version": "3",
            "scored_at": "2026-03-07T09:15:00.184Z",
            "latency_ms": 12.408,
            "schema_version": 1,
            "reasons": [
                {"feature": "support_calls_30d", "value": 4, "contribution": 0.812344},
                {"feature": "plan", "value": "basic", "contribution": 0.50213},
                {"feature": "tenure_months", "value": 14.2351, "contribution": -0.301977},
            ],
        },
    )

    customer_id: Id = Field(description="The customer scored; also the message key.")
    event_id: Id = Field(description="Id of the account event whose feature vector was scored.")
    event_ts: Timestamp = Field(description="Event time of that account event.")
    probability: Annotated[float, Strict(), Field(ge=0, le=1)] = Field(
        description="Probability, from 0 to 1, that the customer closes the account within the model's horizon"
        " (30 days by default) after event_ts."
    )
    risk_band: RiskBand = Field(
        description="probability banded by the worker's thresholds CHURN_RISK_MEDIUM and CHURN_RISK_HIGH"
        " (by default low < 0.3 <= medium < 0.6 <= high)."
    )
    model_name: Id = Field(description="Registered name of the model that scored.")
    model_version: Id = Field(description="Registry version of that model.")
    scored_at: Timestamp = Field(description="Wall-clock time the batch was scored (UTC, millisecond precision).")
    latency_ms: Annotated[float, Strict(), Field(ge=0)] = Field(
        description="Milliseconds from the input message's Kafka timestamp to scoring, at least 0."
    )
    schema_version: Annotated[Literal[1], version(1)] = Field(
        1, description="Version of the score contract; 1 so far. Bumped on an incompatible change."
    )
    reasons: list[ScoreReason] | None = Field(
        None,
        description="Why: the inputs with the largest terms of the log-odds, largest first (CHURN_SCORE_REASONS"
        " of them, 3 by default). Exact for the linear pipeline training builds; absent for a model of any"
        " other shape, and when CHURN_SCORE_REASONS is 0.",
    )


class ChurnLabel(_Contract):
    """Ground truth on ``churn-labels``, derived from ``account_closed``."""

    EXAMPLES = (
        {
            "customer_id": "cust-00042",
            "event_id": "evt-0009",
            "closed_at": "2026-03-09T09:15:00+00:00",
            "churned": True,
            "reason": "price",
        },
    )

    customer_id: Id = Field(description="The customer who closed the account; also the message key.")
    event_id: Id = Field(description="Id of the account_closed event.")
    closed_at: Timestamp = Field(description="Event time of the account_closed event.")
    churned: Annotated[bool, Strict()] = Field(True, description="Whether the customer churned; always true today.")
    reason: str = Field("", description="The reason given in the account_closed event; may be empty.")


class DriftAlert(_Contract):
    """A drift detector fired; published on ``drift-alerts`` keyed by detector."""

    EXAMPLES = (
        {
            "alert_id": "3f2b9c0e8d7a4f6b9e1c2d3a4b5c6d7e",
            "detector": "feature_psi",
            "kind": "data",
            "features": {"support_calls_30d": 0.3127, "usage_30d": 0.2214},
            "window_start": "2026-03-01T00:00:00+00:00",
            "window_end": "2026-03-08T00:00:00+00:00",
            "model_version": "3",
            "severity": "high",
            "created_at": "2026-03-08T00:00:02.512+00:00",
            "harm": True,
            "evidence": {
                "importance.support_calls_30d": 0.41,
                "importance.usage_30d": 0.02,
                "shift_weighted": 0.133,
                "score_psi": 0.27,
            },
        },
    )

    alert_id: Id = Field(description="Unique id of this alert.")
    detector: Id = Field(description="Name of the detector that fired; also the message key.")
    kind: Literal["data", "prediction", "concept"] = Field(
        description="data: input features shifted. prediction: the score distribution shifted."
        " concept: the relation between features and churn changed (ranking quality fell)."
    )
    features: dict[str, Number] = Field(
        default_factory=dict,
        description="The statistics behind the decision, by name (for data drift: feature name to its PSI)."
        " Finite numbers only.",
    )
    window_start: Timestamp = Field(description="Event time at which the window the detector judged starts.")
    window_end: Timestamp = Field(description="Event time at which that window ends.")
    model_version: str = Field("", description="Version of the model serving when the alert fired; empty if none.")
    severity: Literal["low", "medium", "high"] = Field(
        description="How much the alert matters to the serving model: high when it is measurably hurt or"
        " features it relies on moved its scores far; low when the moved features barely count or matured labels"
        " show the model holds. See docs/operations.md."
    )
    created_at: Timestamp = Field(description="Wall-clock time the alert was raised.")
    harm: bool = Field(
        True,
        description="Whether the serving model is judged hurt (the launcher retrains on harm by default):"
        " performance measured on matured labels fell, or high-importance features shifted the scores. An alert"
        " without the field is taken as harm.",
    )
    evidence: dict[str, Number] = Field(
        default_factory=dict,
        description="Why the severity: importance.<feature> (the feature's share of the model's ranking),"
        " shift_weighted (importance-weighted PSI), score_psi, and from matured labels log_loss_ratio,"
        " log_loss, log_loss_expected, roc_auc, roc_auc_expected, brier, base_rate, pairs. Finite numbers only.",
    )


class ModelEvent(_Contract):
    """A model lifecycle event on ``model-events`` (compacted, keyed by model name)."""

    EXAMPLES = (
        {
            "event_id": "churn-model:4:promoted",
            "model_name": "churn-model",
            "version": "4",
            "action": "promoted",
            "previous_version": "3",
            "reason": "",
            "checksum": "9b1f0c4e" * 8,
            "run_id": "a1b2c3d4e5f6",
            "ts": "2026-03-08T00:10:41.250+00:00",
            "evidence": {
                "candidate_roc_auc": 0.6954,
                "production_roc_auc": 0.6454,
                "gain_over_production": 0.05,
                "roc_auc_floor": 0.7,
                "floors_waived": "roc_auc",
            },
        },
    )

    event_id: Id = Field(description="<model name>:<version>:<action>, so a repeated publication is recognisable.")
    model_name: Id = Field(description="Registered model name; also the message key.")
    version: Id = Field(description="Registry version the decision is about.")
    action: Literal["promoted", "rejected", "rolled_back", "shadowed", "dropped"] = Field(
        description="promoted: workers switch to this version. rejected: the gate refused it (see reason)."
        " rolled_back: this earlier version serves again; workers switch to it."
        " shadowed: the version passed the gate and is the challenger (alias `challenger`): workers score it"
        " beside production and write its scores to churn-scores-shadow only."
        " dropped: the challenger lost (or ran out of time) and is no longer scored in shadow."
        " A challenger that wins is promoted, with the shadow evidence."
    )
    previous_version: str = Field("", description="The version this one replaces, for a promotion; may be empty.")
    reason: str = Field("", description="The gate's reasons for a rejection, or a note; may be empty.")
    checksum: str = Field(
        "",
        description="SHA-256 (hex) of the model artifact as the registry records it (tag checksum); a worker refuses"
        " a version whose event carries another, and checks the artifact against the registry's tag before"
        " loading it. Empty unless promoted or shadowed.",
    )
    run_id: str = Field("", description="Id of the training run that produced the version.")
    ts: Timestamp = Field(description="Wall-clock time of the decision.")
    evidence: dict[str, Number | str] = Field(
        default_factory=dict,
        description="The numbers the gate judged, by name: candidate_roc_auc, production_roc_auc (same holdout),"
        " gain_over_production, oracle_roc_auc where measured, roc_auc_floor, floors_waived (comma-separated)."
        " For a promotion or drop out of shadow, the live comparison on the same matured labels:"
        " shadow_labels, challenger_roc_auc, production_roc_auc, challenger_log_loss, production_log_loss,"
        " challenger_brier, production_brier, shadow_margin, shadow_min_labels, shadow_age_s, shadow_deadline_s."
        " Empty for events made by neither.",
    )
