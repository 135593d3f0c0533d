"""Input contract: the account events producers publish to ``account-events``.

``AccountEvent`` is a union discriminated on ``event_type``. Every event carries
``event_id`` (unique per event, the de-duplication key), ``customer_id`` (the
message key), a timezone-aware event time ``ts`` and ``schema_version``.

Validation is strict at the boundary, and the JSON Schema exported from these
models (``schemas/json/account_event.schema.json``) accepts exactly what
:func:`parse_event` accepts, so a producer in another language that validates
against it never sends an event the worker rejects. Field by field (the types
are in :mod:`schemas.fields`, which says why each rule is what it is):

* ``event_type`` is required in JSON (the discriminator; the schema of every
  event type lists it in ``required``), while the Python default lets code
  write ``Signup(...)`` without it.
* ``event_id``, ``customer_id``, ``plan``: 1 to 128 (plan: 64) characters with no
  whitespace at either end; nothing is stripped, so ``" c1"`` is rejected, not
  read as ``"c1"``. A plan name never seen before is valid input.
* ``ts``: an RFC 3339 date-time string with seconds and an offset or ``Z`` (no
  epoch numbers, no naive or minute-only times, no impossible dates); a
  timezone-aware ``datetime`` from Python code.
* Amounts and charges: JSON numbers from 0 to 1,000,000, never strings, never
  ``NaN`` or infinite. ``has_autopay`` and ``enabled``: ``true`` or ``false``.
* ``schema_version``: optional, and if present the integer 1.
* ``status``, ``reason``: as declared; an unknown field is an error
  (``extra="forbid"``, ``additionalProperties: false``).

pydantic's error names the offending field. :func:`parse_event_obj` applies the
same rules to Python mappings, so CSV rows must carry numbers and booleans, not
text: :mod:`producers.replay` converts cells before validation.

>>> ev = parse_event(b'{"event_type": "usage", "event_id": "e1", "customer_id": "c1",'
...                  b' "ts": "2026-01-01T00:00:00Z", "amount": 3.5}')
>>> ev.event_type, ev.amount
('usage', 3.5)
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Final, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, Strict, TypeAdapter

from schemas.fields import Id, PlanName, Timestamp, version

SCHEMA_VERSION: Final = 1

Money = Annotated[float, Strict(), Field(ge=0, le=1_000_000)]
Reason = Annotated[str, Field(max_length=256)]
Flag = Annotated[bool, Strict()]

ACCOUNT_EVENT_DESCRIPTION = (
    "One thing that happened to a customer's account, published to the account-events topic keyed by"
    " customer_id. event_type selects the kind of event and its fields; every event carries event_id"
    " (the de-duplication key), customer_id (equal to the message key) and the event time ts."
)


def _event_json_schema(schema: dict[str, Any], cls: type[_Event]) -> None:
    """``event_type`` is required in JSON (it has a default only for Python code); add the examples."""
    schema["required"] = ["event_type", *(name for name in schema.get("required", []) if name != "event_type")]
    schema["properties"]["event_type"].pop("default", None)
    schema["examples"] = [dict(example) for example in cls.EXAMPLES]


def _example(event_type: str, n: int, **fields: object) -> dict[str, object]:
    return {
        "event_type": event_type,
        "event_id": f"evt-000{n}",
        "customer_id": "cust-00042",
        "ts": f"2026-03-0{n}T09:15:00Z",
        **fields,
    }


class _Event(BaseModel):
    """Fields every account event carries."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, json_schema_extra=_event_json_schema)
    EXAMPLES: ClassVar[tuple[dict[str, object], ...]] = ()

    event_id: Id = Field(
        description="Unique id of this event and its de-duplication key: an event whose id the customer's"
        " recent events already include is applied once. 1-128 characters, no whitespace at either end."
    )
    customer_id: Id = Field(
        description="The customer the event is about. Must equal the Kafka message key (its UTF-8 text);"
        " an event whose key differs goes to the dead-letter topic. 1-128 characters, no whitespace at"
        " either end."
    )
    ts: Timestamp = Field(
        description="Event time: when it happened at the source, not when it was sent. RFC 3339 date-time"
        " with seconds and an offset or Z, e.g. 2026-01-01T00:00:00Z; fractional seconds are kept to the"
        " microsecond. Features and windows are computed in event time."
    )
    schema_version: Annotated[Literal[1], version(SCHEMA_VERSION)] = Field(
        SCHEMA_VERSION,
        description="Version of the event contract; 1, the only one so far. Bumped on an incompatible change.",
    )


class Signup(_Event):
    """A new customer subscribed to a plan."""

    EXAMPLES = (
        _example("signup", 1, plan="standard", monthly_charges=59.9, has_autopay=True),
        _example("signup", 2, plan="flex-2027", monthly_charges=45, schema_version=1),
    )

    event_type: Literal["signup"] = Field("signup", description="Always signup.")
    plan: PlanName = Field(
        description="Plan subscribed to. Any name is valid, including one never seen before; 1-64 characters,"
        " no whitespace at either end."
    )
    monthly_charges: Money = Field(description="Recurring charge of the plan, in the account's currency per month.")
    has_autopay: Flag = Field(False, description="Whether automatic payment is on from the start.")


class PlanChanged(_Event):
    """The customer moved to another plan, or the price of their plan changed."""

    EXAMPLES = (_example("plan_changed", 3, plan="premium", monthly_charges=94.5),)

    event_type: Literal["plan_changed"] = Field("plan_changed", description="Always plan_changed.")
    plan: PlanName = Field(
        description="Plan after the change (possibly the same one at a new price). Any name is valid;"
        " 1-64 characters, no whitespace at either end."
    )
    monthly_charges: Money = Field(
        description="Recurring charge after the change, in the account's currency per month."
    )


class Payment(_Event):
    """A bill was charged: paid, or the payment failed."""

    EXAMPLES = (
        _example("payment", 4, amount=59.9),
        _example("payment", 5, amount=59.9, status="failed"),
    )

    event_type: Literal["payment"] = Field("payment", description="Always payment.")
    amount: Money = Field(description="Amount charged, in the account's currency.")
    status: Literal["ok", "failed"] = Field(
        "ok", description="ok: paid. failed: the payment did not go through (counts in failed_payments_90d)."
    )


class SupportCall(_Event):
    """The customer contacted support."""

    EXAMPLES = (_example("support_call", 6, reason="billing"),)

    event_type: Literal["support_call"] = Field("support_call", description="Always support_call.")
    reason: Reason = Field("", description="Why the customer called: free text, at most 256 characters, may be empty.")


class Usage(_Event):
    """The customer used the service."""

    EXAMPLES = (_example("usage", 7, amount=3.5),)

    event_type: Literal["usage"] = Field("usage", description="Always usage.")
    amount: Money = Field(
        description="Amount used on this occasion, in the product's usage units (summed into usage_30d)."
    )


class AutopayChanged(_Event):
    """The customer turned automatic payment on or off."""

    EXAMPLES = (_example("autopay_changed", 8, enabled=False),)

    event_type: Literal["autopay_changed"] = Field("autopay_changed", description="Always autopay_changed.")
    enabled: Flag = Field(description="Whether automatic payment is on after the change.")


class AccountClosed(_Event):
    """The customer closed the account: the churn the model predicts (published as a ChurnLabel)."""

    EXAMPLES = (_example("account_closed", 9, reason="price"),)

    event_type: Literal["account_closed"] = Field("account_closed", description="Always account_closed.")
    reason: Reason = Field(
        "", description="Why the account was closed: free text, at most 256 characters, may be empty."
    )


AccountEvent = Annotated[
    Union[Signup, PlanChanged, Payment, SupportCall, Usage, AutopayChanged, AccountClosed],
    Field(discriminator="event_type"),
]
EVENT_TYPES: tuple[str, ...] = (
    "signup",
    "plan_changed",
    "payment",
    "support_call",
    "usage",
    "autopay_changed",
    "account_closed",
)

account_event_adapter: TypeAdapter[AccountEvent] = TypeAdapter(AccountEvent)


def parse_event(raw: bytes | str) -> AccountEvent:
    """Validate one JSON-encoded event; raises ``pydantic.ValidationError``."""
    return account_event_adapter.validate_json(raw)


def parse_event_obj(obj: dict) -> AccountEvent:
    """Validate one event given as a mapping (CSV/Parquet rows, simulator output)."""
    return account_event_adapter.validate_python(obj)


def dump_event(event: AccountEvent) -> bytes:
    """Serialize an event to compact JSON bytes (the wire format)."""
    return event.__pydantic_serializer__.to_json(event)
