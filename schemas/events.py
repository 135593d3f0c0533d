"""Input contract: the account events producers publish to ``account-events``.

``AccountEvent`` is a union discriminated on ``event_type``. Every event carries
``event_id`` (unique per event, the de-duplication key), ``customer_id`` (the
message key), a timezone-aware event time ``ts`` and ``schema_version``.

Validation is strict at the boundary: unknown fields, naive timestamps, negative
amounts, empty ids and non-finite numbers are rejected, and pydantic's error
names the offending field. A plan name never seen before is valid input.

>>> ev = parse_event(b'{"event_type": "usage", "event_id": "e1", "customer_id": "c1",'
...                  b' "ts": "2026-01-01T00:00:00Z", "amount": 3.5}')
>>> ev.event_type, ev.amount
('usage', 3.5)
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

SCHEMA_VERSION = 1

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
PlanName = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Money = Annotated[float, Field(ge=0, le=1_000_000)]


class _Event(BaseModel):
    """Fields every account event carries."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    event_id: Id
    customer_id: Id
    ts: AwareDatetime
    schema_version: Literal[1] = SCHEMA_VERSION


class Signup(_Event):
    event_type: Literal["signup"] = "signup"
    plan: PlanName
    monthly_charges: Money
    has_autopay: bool = False


class PlanChanged(_Event):
    event_type: Literal["plan_changed"] = "plan_changed"
    plan: PlanName
    monthly_charges: Money


class Payment(_Event):
    event_type: Literal["payment"] = "payment"
    amount: Money
    status: Literal["ok", "failed"] = "ok"


class SupportCall(_Event):
    event_type: Literal["support_call"] = "support_call"
    reason: Annotated[str, StringConstraints(max_length=256)] = ""


class Usage(_Event):
    event_type: Literal["usage"] = "usage"
    amount: Annotated[float, Field(ge=0, le=1_000_000)]


class AutopayChanged(_Event):
    event_type: Literal["autopay_changed"] = "autopay_changed"
    enabled: bool


class AccountClosed(_Event):
    event_type: Literal["account_closed"] = "account_closed"
    reason: Annotated[str, StringConstraints(max_length=256)] = ""


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
