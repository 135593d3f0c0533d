"""Contracts: strict at the boundary, errors that name the field, exported schemas current."""

import json
import math

import pytest
from pydantic import ValidationError

from schemas import FEATURE_NAMES, FeatureVector, parse_event, parse_event_obj
from schemas.export import COMMITTED_DIR, json_schemas, render

pytestmark = pytest.mark.unit

BASE = {"event_id": "e1", "customer_id": "c1", "ts": "2026-01-01T00:00:00Z"}


def usage(**over):
    return {**BASE, "event_type": "usage", "amount": 2.0, **over}


def error_fields(exc: ValidationError) -> set[str]:
    return {str(err["loc"][-1]) for err in exc.errors()}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (usage(extra_field=1), "extra_field"),
        (usage(ts="2026-01-01T00:00:00"), "ts"),
        (usage(amount=-1.0), "amount"),
        (usage(event_id=""), "event_id"),
        (usage(customer_id="   "), "customer_id"),
        (usage(customer_id=" c1"), "customer_id"),
        (usage(event_id="e1\n"), "event_id"),
        (usage(amount="3.5"), "amount"),
        (usage(ts="2026-01-01T00:00Z"), "ts"),
        (usage(ts=1767225600), "ts"),
        ({**BASE, "event_type": "autopay_changed", "enabled": "yes"}, "enabled"),
        (usage(schema_version=True), "schema_version"),
        ({**BASE, "event_type": "payment", "amount": -5.0}, "amount"),
        ({**BASE, "event_type": "payment", "amount": 5.0, "status": "maybe"}, "status"),
        ({**BASE, "event_type": "signup", "plan": "", "monthly_charges": 10.0}, "plan"),
        (usage(amount="lots"), "amount"),
        (usage(schema_version=2), "schema_version"),
    ],
)
def test_bad_events_are_rejected_naming_the_field(payload, field):
    with pytest.raises(ValidationError) as info:
        parse_event(json.dumps(payload))
    assert field in error_fields(info.value)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_rejected(literal):
    raw = json.dumps(usage()).replace('"amount": 2.0', f'"amount": {literal}')
    with pytest.raises(ValidationError) as info:
        parse_event(raw)
    assert "amount" in error_fields(info.value)


def test_python_nan_is_rejected_too():
    with pytest.raises(ValidationError):
        parse_event_obj(usage(amount=math.nan))


def test_unknown_event_type_is_rejected():
    with pytest.raises(ValidationError) as info:
        parse_event(json.dumps({**BASE, "event_type": "teleport"}))
    assert "teleport" in str(info.value)


def test_broken_json_is_rejected():
    with pytest.raises(ValidationError):
        parse_event(b'{"event_type": "usage", ')


def test_unseen_plan_is_valid():
    ev = parse_event(json.dumps({**BASE, "event_type": "plan_changed", "plan": "flex-2027", "monthly_charges": 42}))
    assert ev.plan == "flex-2027"


def test_timezone_offsets_are_kept_aware():
    ev = parse_event(json.dumps(usage(ts="2026-01-01T02:00:00+02:00")))
    assert ev.ts.utcoffset() is not None
    assert ev.ts.timestamp() == parse_event(json.dumps(usage())).ts.timestamp()


def test_feature_vector_model_input_is_in_contract_order():
    fv = FeatureVector(
        customer_id="c",
        event_id="e",
        event_ts="2026-01-01T00:00:00Z",
        tenure_months=1,
        monthly_charges=2,
        has_autopay=1,
        support_calls_30d=0,
        failed_payments_90d=0,
        days_since_last_event=0,
        usage_30d=0,
        usage_trend=0,
        plan="basic",
    )
    assert tuple(fv.model_input()) == FEATURE_NAMES


def test_committed_json_schemas_match_the_models():
    """Regenerate with `churn schemas export schemas/json` when a contract changes."""
    current = json_schemas()
    committed = {p.name.removesuffix(".schema.json"): p.read_text() for p in COMMITTED_DIR.glob("*.schema.json")}
    assert set(committed) == set(current)
    for name, schema in current.items():
        assert committed[name] == render(schema), f"{name}.schema.json is stale"
