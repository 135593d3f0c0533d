"""pydantic v2 contracts of churn-stream. No I/O here."""

from schemas.events import (
    EVENT_TYPES,
    AccountClosed,
    AccountEvent,
    AutopayChanged,
    Payment,
    PlanChanged,
    Signup,
    SupportCall,
    Usage,
    dump_event,
    parse_event,
    parse_event_obj,
)
from schemas.features import (
    CATEGORICAL_FEATURES,
    FEATURE_NAMES,
    FEATURE_SET_VERSION,
    NUMERIC_FEATURES,
    FeatureVector,
)
from schemas.outputs import ChurnLabel, ChurnScore, DriftAlert, ModelEvent, risk_band

__all__ = [
    "EVENT_TYPES",
    "AccountClosed",
    "AccountEvent",
    "AutopayChanged",
    "Payment",
    "PlanChanged",
    "Signup",
    "SupportCall",
    "Usage",
    "dump_event",
    "parse_event",
    "parse_event_obj",
    "CATEGORICAL_FEATURES",
    "FEATURE_NAMES",
    "FEATURE_SET_VERSION",
    "NUMERIC_FEATURES",
    "FeatureVector",
    "ChurnLabel",
    "ChurnScore",
    "DriftAlert",
    "ModelEvent",
    "risk_band",
]
