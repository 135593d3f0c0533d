"""The exported JSON Schemas and the pydantic models give the same verdict on every document.

Each case is a JSON document with the verdict it should get. It is judged three ways:
by ``jsonschema`` (draft 2020-12, formats asserted) against the committed file in
``schemas/json/``, by pydantic on the JSON bytes (the worker's ``validate_json``), and
by pydantic in Python mode on the parsed document (``parse_event_obj``, the HTTP score
endpoint). The schema side parses with orjson, a strict RFC 8259 parser like the JSON
libraries of other languages: ``NaN``, ``Infinity``, numbers that overflow a double
and lone surrogates are not JSON, so such a document is invalid before any schema.
"""

from __future__ import annotations

import calendar
import json
import math
import re
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from pydantic import TypeAdapter, ValidationError

from schemas.events import EVENT_TYPES, account_event_adapter
from schemas.export import COMMITTED_DIR, CONTRACTS
from schemas.features import FeatureVector
from schemas.fields import TIMESTAMP_PATTERN, WHITESPACE
from schemas.outputs import ChurnLabel, ChurnScore, DriftAlert, ModelEvent

pytestmark = pytest.mark.unit

ADAPTERS: dict[str, TypeAdapter] = {contract.name: contract.adapter for contract in CONTRACTS}


@cache
def validator(contract: str) -> Draft202012Validator:
    schema = json.loads((COMMITTED_DIR / f"{contract}.schema.json").read_text())
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    valid: bool
    contract: str = "account_event"


def doc(name: str, valid: bool, document: Any, contract: str = "account_event") -> Case:
    """A case from a Python value, dumped as Python's json module would (``NaN`` included)."""
    return Case(name, json.dumps(document, ensure_ascii=False).encode(), valid, contract)


def text(name: str, valid: bool, raw: str, contract: str = "account_event") -> Case:
    """A case from literal JSON text."""
    return Case(name, raw.encode(), valid, contract)


BASE = {"event_id": "evt-1", "customer_id": "cust-1", "ts": "2026-01-01T00:00:00Z"}


def ev(kind: str, /, **fields: Any) -> dict[str, Any]:
    """A valid event of type ``kind`` with ``fields`` changed; a field set to ``...`` is removed."""
    defaults: dict[str, dict[str, Any]] = {
        "signup": {"plan": "basic", "monthly_charges": 29.5},
        "plan_changed": {"plan": "premium", "monthly_charges": 95.0},
        "payment": {"amount": 29.5},
        "support_call": {},
        "usage": {"amount": 3.5},
        "autopay_changed": {"enabled": True},
        "account_closed": {},
    }
    out = {"event_type": kind, **BASE, **defaults.get(kind, {}), **fields}
    return {k: v for k, v in out.items() if v is not ...}


def usage(**fields: Any) -> dict[str, Any]:
    return ev("usage", **fields)


def ts(value: Any) -> dict[str, Any]:
    return usage(ts=value)


GOOD = [
    doc("signup, minimal", True, ev("signup")),
    doc("signup, every field", True, ev("signup", has_autopay=True, schema_version=1)),
    doc("plan_changed", True, ev("plan_changed")),
    doc("payment, default status", True, ev("payment")),
    doc("payment failed", True, ev("payment", status="failed")),
    doc("support_call without reason", True, ev("support_call")),
    doc("support_call with reason", True, ev("support_call", reason="billing")),
    doc("usage", True, usage()),
    doc("autopay_changed off", True, ev("autopay_changed", enabled=False)),
    doc("account_closed", True, ev("account_closed", reason="price")),
    doc("unseen plan name", True, ev("plan_changed", plan="flex-2027")),
    doc("integer amount", True, usage(amount=42)),
    doc("exponent amount", True, usage(amount=1e2)),
    doc("amount 0", True, usage(amount=0)),
    doc("amount -0.0", True, usage(amount=-0.0)),
    doc("amount at the maximum", True, usage(amount=1_000_000)),
    doc("schema_version 1.0 (JSON Schema's integer)", True, usage(schema_version=1.0)),
    doc("ts with offset and millis", True, ts("2026-01-01T02:00:00.250+02:00")),
    doc("ts with nanoseconds (Go, Java)", True, ts("2026-01-01T00:00:00.123456789Z")),
    doc("ts with offset -00:00", True, ts("2026-01-01T00:00:00-00:00")),
    doc("ts with offset +23:59", True, ts("2026-01-01T00:00:00+23:59")),
    doc("ts on a leap day", True, ts("2028-02-29T12:00:00Z")),
    doc("ts on a century leap day", True, ts("2000-02-29T12:00:00Z")),
    doc("ts in year 1", True, ts("0001-01-01T00:00:00Z")),
    doc("ts in year 9999", True, ts("9999-12-31T23:59:59Z")),
    doc("unicode ids", True, usage(event_id="évt-ü-1", customer_id="客户-42")),
    doc("astral ids", True, usage(customer_id="\U0001f642\U0001f642")),
    doc("one-character id", True, usage(customer_id="x")),
    doc("inner blanks in an id", True, usage(customer_id="cust 42\tb")),
    doc("zero-width space is not whitespace", True, usage(customer_id="\u200bc1\ufeff")),
    doc("id of 128 characters", True, usage(event_id="e" * 128)),
    doc("id of 128 astral characters", True, usage(customer_id="\U0001f642" * 128)),
    doc("plan of 64 characters", True, ev("signup", plan="p" * 64)),
    doc("reason of 256 characters", True, ev("account_closed", reason="r" * 256)),
    doc("blank reason", True, ev("support_call", reason="   ")),
]

BAD = [
    doc("missing event_type", False, usage(event_type=...)),
    doc("missing event_type, only one shape fits", False, ev("autopay_changed", event_type=...)),
    doc("unknown event_type", False, ev("teleport")),
    doc("event_type in another case", False, usage(event_type="Usage")),
    doc("event_type null", False, usage(event_type=None)),
    doc("event_type a number", False, usage(event_type=3)),
    doc("blank event_id", False, usage(event_id="")),
    doc("customer_id of blanks", False, usage(customer_id="   ")),
    doc("leading space in customer_id", False, usage(customer_id=" cust-1")),
    doc("trailing space in event_id", False, usage(event_id="evt-1 ")),
    doc("trailing newline in customer_id", False, usage(customer_id="cust-1\n")),
    doc("trailing CRLF in customer_id", False, usage(customer_id="cust-1\r\n")),
    doc("leading tab in event_id", False, usage(event_id="\tevt-1")),
    doc("trailing no-break space", False, usage(customer_id="cust-1\u00a0")),
    doc("trailing ideographic space", False, usage(customer_id="cust-1\u3000")),
    doc("leading line separator", False, usage(customer_id="\u2028cust-1")),
    doc("trailing information separator", False, usage(customer_id="cust-1\x1f")),
    doc("id of 129 characters", False, usage(event_id="e" * 129)),
    doc("id of 129 astral characters", False, usage(customer_id="\U0001f642" * 129)),
    doc("plan of 65 characters", False, ev("signup", plan="p" * 65)),
    doc("blank plan", False, ev("signup", plan=" ")),
    doc("reason of 257 characters", False, ev("account_closed", reason="r" * 257)),
    doc("negative amount", False, usage(amount=-1.0)),
    doc("amount over the maximum", False, usage(amount=1_000_000.01)),
    doc("numeric string amount", False, usage(amount="3.5")),
    doc("integer string amount", False, usage(amount="3")),
    doc("boolean amount", False, usage(amount=True)),
    doc('"yes" boolean', False, ev("autopay_changed", enabled="yes")),
    doc('"true" boolean', False, ev("autopay_changed", enabled="true")),
    doc("1 as boolean", False, ev("signup", has_autopay=1)),
    doc("naive ts", False, ts("2026-01-01T00:00:00")),
    doc("ts without seconds", False, ts("2026-01-01T00:00Z")),
    doc("epoch-number ts", False, ts(1767225600)),
    doc("epoch-string ts", False, ts("1767225600")),
    doc("date-only ts", False, ts("2026-01-01")),
    doc("month 13", False, ts("2026-13-01T00:00:00Z")),
    doc("day 0", False, ts("2026-01-00T00:00:00Z")),
    doc("30 February", False, ts("2028-02-30T00:00:00Z")),
    doc("29 February of a common year", False, ts("2026-02-29T00:00:00Z")),
    doc("29 February 1900", False, ts("1900-02-29T00:00:00Z")),
    doc("31 April", False, ts("2026-04-31T00:00:00Z")),
    doc("year 0", False, ts("0000-01-01T00:00:00Z")),
    doc("hour 24", False, ts("2026-01-01T24:00:00Z")),
    doc("leap second", False, ts("2026-12-31T23:59:60Z")),
    doc("lower-case t and z", False, ts("2026-01-01t00:00:00z")),
    doc("space instead of T", False, ts("2026-01-01 00:00:00Z")),
    doc("offset without colon", False, ts("2026-01-01T00:00:00+0200")),
    doc("offset hours only", False, ts("2026-01-01T00:00:00+02")),
    doc("offset +24:00", False, ts("2026-01-01T00:00:00+24:00")),
    doc("comma fraction", False, ts("2026-01-01T00:00:00,5Z")),
    doc("empty fraction", False, ts("2026-01-01T00:00:00.Z")),
    doc("trailing newline in ts", False, ts("2026-01-01T00:00:00Z\n")),
    doc("leading space in ts", False, ts(" 2026-01-01T00:00:00Z")),
    doc("empty ts", False, ts("")),
    doc("extra field", False, usage(extra_field=1)),
    doc("schema_version 2", False, usage(schema_version=2)),
    doc('schema_version "1"', False, usage(schema_version="1")),
    doc("schema_version true", False, usage(schema_version=True)),
    doc("schema_version 1.5", False, usage(schema_version=1.5)),
    doc("null customer_id", False, usage(customer_id=None)),
    doc("null amount", False, usage(amount=None)),
    doc("null ts", False, ts(None)),
    doc("null reason", False, ev("support_call", reason=None)),
    doc("null has_autopay", False, ev("signup", has_autopay=None)),
    doc("null schema_version", False, usage(schema_version=None)),
    doc("missing ts", False, usage(ts=...)),
    doc("missing amount", False, usage(amount=...)),
    doc("missing enabled", False, ev("autopay_changed", enabled=...)),
    doc("numeric event_id", False, usage(event_id=123)),
    doc("plan as a list", False, ev("signup", plan=["basic"])),
    doc("status maybe", False, ev("payment", status="maybe")),
    doc("NaN via Python", False, usage(amount=math.nan)),
    doc("Infinity via Python", False, usage(amount=math.inf)),
    text("amount 1e999", False, json.dumps(usage()).replace('"amount": 3.5', '"amount": 1e999')),
    text("lone surrogate in an id", False, json.dumps(usage(customer_id="c\ud800"))),
    doc("array, not object", False, [usage()]),
    doc("string, not object", False, "usage"),
    doc("null document", False, None),
    text("broken JSON", False, '{"event_type": "usage", '),
]


def example(contract: str, index: int = 0) -> dict[str, Any]:
    return dict(validator(contract).schema["examples"][index])


def changed(contract: str, **fields: Any) -> dict[str, Any]:
    out = {**example(contract), **fields}
    return {k: v for k, v in out.items() if v is not ...}


OUTPUTS = [
    doc("score", True, changed("churn_score"), "churn_score"),
    doc("score without schema_version", True, changed("churn_score", schema_version=...), "churn_score"),
    doc("score, integer probability", True, changed("churn_score", probability=1), "churn_score"),
    doc("score, probability 1.5", False, changed("churn_score", probability=1.5), "churn_score"),
    doc('score, probability "0.5"', False, changed("churn_score", probability="0.5"), "churn_score"),
    doc("score, band extreme", False, changed("churn_score", risk_band="extreme"), "churn_score"),
    doc("score, epoch scored_at", False, changed("churn_score", scored_at=1767225600.5), "churn_score"),
    doc("score, schema_version 2", False, changed("churn_score", schema_version=2), "churn_score"),
    doc("score, extra field", False, changed("churn_score", partition=3), "churn_score"),
    doc("score, blank model_version", False, changed("churn_score", model_version=" "), "churn_score"),
    doc("vector", True, changed("feature_vector"), "feature_vector"),
    doc("vector, counts as 2.0", True, changed("feature_vector", support_calls_30d=2.0), "feature_vector"),
    doc("vector, count 1.5", False, changed("feature_vector", support_calls_30d=1.5), "feature_vector"),
    doc("vector, has_autopay true", False, changed("feature_vector", has_autopay=True), "feature_vector"),
    doc("vector, has_autopay 2", False, changed("feature_vector", has_autopay=2), "feature_vector"),
    doc("vector, trend 11", False, changed("feature_vector", usage_trend=11), "feature_vector"),
    doc("vector, naive event_ts", False, changed("feature_vector", event_ts="2026-03-07T09:15:00"), "feature_vector"),
    doc("vector, feature_set_version 2", False, changed("feature_vector", feature_set_version=2), "feature_vector"),
    doc("label", True, changed("churn_label"), "churn_label"),
    doc("label, defaults", True, changed("churn_label", churned=..., reason=...), "churn_label"),
    doc('label, churned "yes"', False, changed("churn_label", churned="yes"), "churn_label"),
    doc("alert", True, changed("drift_alert"), "drift_alert"),
    doc("alert, no features", True, changed("drift_alert", features=...), "drift_alert"),
    doc('alert, feature "0.3"', False, changed("drift_alert", features={"psi": "0.3"}), "drift_alert"),
    doc("alert, NaN feature", False, changed("drift_alert", features={"psi": math.nan}), "drift_alert"),
    doc("alert, kind weather", False, changed("drift_alert", kind="weather"), "drift_alert"),
    doc("model event", True, changed("model_event"), "model_event"),
    doc("model event, action deleted", False, changed("model_event", action="deleted"), "model_event"),
    doc("model event, missing ts", False, changed("model_event", ts=...), "model_event"),
]

CORPUS = GOOD + BAD + OUTPUTS


def schema_verdict(case: Case) -> bool:
    try:
        document = orjson.loads(case.raw)
    except orjson.JSONDecodeError:
        return False
    return validator(case.contract).is_valid(document)


def pydantic_json_verdict(case: Case) -> bool:
    try:
        ADAPTERS[case.contract].validate_json(case.raw)
    except ValidationError:
        return False
    return True


def pydantic_python_verdict(case: Case) -> bool | None:
    """Python mode on the parsed document; None when the bytes are not JSON."""
    try:
        document = orjson.loads(case.raw)
    except orjson.JSONDecodeError:
        return None
    try:
        ADAPTERS[case.contract].validate_python(document)
    except ValidationError:
        return False
    return True


def verdicts() -> list[tuple[Case, bool, bool, bool | None]]:
    return [(c, schema_verdict(c), pydantic_json_verdict(c), pydantic_python_verdict(c)) for c in CORPUS]


def _table(rows: list[tuple[Case, bool, bool, bool | None]]) -> str:
    word = {True: "accept", False: "reject", None: "-"}
    return "\n".join(
        f"  {c.contract}: {c.name!r}: expected {word[c.valid]}, JSON Schema {word[s]}, pydantic {word[j]},"
        f" pydantic (Python mode) {word[p]}  {c.raw[:120]!r}"
        for c, s, j, p in rows
    )


def test_the_corpus_covers_every_event_type_good_and_bad():
    assert len({c.name for c in CORPUS}) == len(CORPUS), "case names must be unique"
    assert len(GOOD) + len(BAD) >= 40
    good_types = {orjson.loads(c.raw)["event_type"] for c in GOOD}
    assert good_types == set(EVENT_TYPES)
    assert all(c.valid for c in GOOD) and not any(c.valid for c in BAD)


def test_json_schema_and_pydantic_agree_on_every_document():
    disagree = [row for row in verdicts() if not (row[1] == row[2] and row[3] in (None, row[2]))]
    assert not disagree, f"{len(disagree)} of {len(CORPUS)} documents get different verdicts:\n{_table(disagree)}"


def test_every_document_gets_its_expected_verdict():
    wrong = [row for row in verdicts() if row[2] != row[0].valid or row[1] != row[0].valid]
    assert not wrong, f"{len(wrong)} of {len(CORPUS)} documents get the wrong verdict:\n{_table(wrong)}"


@pytest.mark.parametrize("contract", [c.name for c in CONTRACTS])
def test_every_example_validates_both_ways(contract):
    schema = validator(contract).schema
    examples = [e for d in [schema, *schema.get("$defs", {}).values()] for e in d.get("examples", [])]
    assert examples, f"{contract} has no examples"
    for document in examples:
        assert validator(contract).is_valid(document), document
        ADAPTERS[contract].validate_json(orjson.dumps(document))


def test_every_event_type_and_output_contract_has_an_example():
    defs = validator("account_event").schema["$defs"]
    assert {d["properties"]["event_type"]["const"] for d in defs.values() if d.get("examples")} == set(EVENT_TYPES)
    for model in (FeatureVector, ChurnScore, ChurnLabel, DriftAlert, ModelEvent):
        assert model.model_json_schema()["examples"], model.__name__


@pytest.mark.parametrize("contract", [c.name for c in CONTRACTS])
def test_exported_schemas_are_self_describing(contract):
    schema = validator(contract).schema
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert re.fullmatch(r"urn:churn-stream:schema:[a-z-]+:v[0-9]+", schema["$id"])
    assert schema["title"] and schema["description"]
    for name, definition in [(contract, schema), *schema.get("$defs", {}).items()]:
        assert definition.get("description"), name
        for field, spec in definition.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"


def test_event_type_is_required_by_the_union_and_every_event_type():
    schema = validator("account_event").schema
    assert schema["required"] == ["event_type"]
    for name, definition in schema["$defs"].items():
        assert "event_type" in definition["required"], name
        assert "default" not in definition["properties"]["event_type"], name


def test_whitespace_is_what_str_isspace_says():
    spaces = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())
    assert re.findall(f"[{WHITESPACE}]", "".join(map(chr, range(sys.maxunicode + 1)))) == list(spaces)


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def test_the_timestamp_pattern_knows_the_calendar():
    """Every day of a 400-year leap cycle, the calendar's edges, and every impossible day-of-month."""
    pattern = re.compile(TIMESTAMP_PATTERN)
    days = [
        *_days(date(1999, 12, 1), date(2400, 1, 31)),
        *_days(date(1, 1, 1), date(5, 3, 1)),
        *_days(date(9996, 2, 1), date(9999, 12, 31)),
    ]
    missing = [d for d in days if not pattern.search(f"{d.isoformat()}T00:00:00Z")]
    assert not missing, missing[:10]
    impossible = [
        f"{year:04d}-{month:02d}-{day:02d}"
        for year in (0, 1, 4, 100, 1900, 2000, 2024, 2026, 2100, 2400, 9999)
        for month in range(0, 14)
        for day in range(0, 33)
        if not (1 <= year and 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1])
    ]
    accepted = [d for d in impossible if pattern.search(f"{d}T00:00:00Z")]
    assert not accepted, accepted[:10]


@pytest.mark.parametrize("day", ["1600-02-29", "1700-02-29", "2000-02-29", "2100-02-29", "2024-02-29", "2023-02-29"])
def test_pydantic_and_the_pattern_agree_on_leap_days(day):
    try:
        date.fromisoformat(day)
        exists = True
    except ValueError:
        exists = False
    raw = json.dumps(ts(f"{day}T00:00:00Z"))
    assert pydantic_json_verdict(Case(day, raw.encode(), exists)) is exists
    assert schema_verdict(Case(day, raw.encode(), exists)) is exists


def test_python_code_may_still_pass_datetimes_and_omit_event_type():
    from schemas.events import Signup, parse_event_obj

    at = datetime(2026, 1, 1, tzinfo=UTC)
    signup = Signup(event_id="e1", customer_id="c1", ts=at, plan="basic", monthly_charges=10)
    assert signup.event_type == "signup" and signup.ts == at
    assert parse_event_obj({**ev("usage"), "ts": at}).ts == at
    with pytest.raises(ValidationError):
        parse_event_obj({**ev("usage"), "ts": datetime(2026, 1, 1)})
    assert account_event_adapter.validate_json(account_event_adapter.dump_json(signup)) == signup
