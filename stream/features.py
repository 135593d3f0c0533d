"""Per-customer feature logic, shared by the stream and by training. No Faust here.

One definition of every feature: the featurize agent and the training dataset
both call :func:`apply` and :func:`features`, so training-serving skew cannot
creep in.

Rules
-----
* **Duplicates.** An event whose ``event_id`` the state has already applied is a
  duplicate and changes nothing. The state remembers the ``DEDUP_RING`` most
  recent events by ``(ts, event_id)``.
* **Out-of-order events.** Every aggregate is order-independent: counts over a
  window and per-day usage buckets are sums; the "latest value" fields (plan,
  charges, autopay) follow the event with the greatest ``(ts, event_id)``, not
  the last one to arrive; signup time is the earliest signup seen. Applying the
  same set of events in any order gives the same state, with one deterministic
  exception: once the ring is full, an event older than every remembered event
  is **too late** and is dropped (it could be a duplicate the ring has
  forgotten). :func:`admit` says which case an event is.
* **Time.** ``features(state, at)`` is evaluated at an event time ``at``. The
  featurize agent evaluates at the customer's own clock (the latest event time
  seen), the silence timer and training snapshots at any later time.
  ``days_since_last_event`` is the time from ``at`` back to the latest activity
  *before* ``at``: at an event it is the silence that preceded the event, later
  it is the silence so far.
* **Bounded.** Windows are pruned relative to the latest event time: support
  calls to 30 days, failed payments to 90 days, usage to 60 daily buckets.
"""

from __future__ import annotations

import enum
import math
from bisect import insort
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson

from schemas.events import AccountEvent
from schemas.features import FeatureVector

DAY = 86_400.0
MONTH_DAYS = 30.4375
DEDUP_RING = 16
SUPPORT_WINDOW_DAYS = 30
FAILED_PAYMENT_WINDOW_DAYS = 90
USAGE_WINDOW_DAYS = 30
UNKNOWN_PLAN = "unknown"

_NEG_INF = float("-inf")


class Admission(enum.Enum):
    """What :func:`apply` will do with an event."""

    NEW = "new"
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"


@dataclass(slots=True)
class CustomerState:
    """Everything the features of one customer depend on; small and bounded."""

    customer_id: str = ""
    signup_ts: float | None = None
    first_ts: float | None = None
    last_ts: float | None = None
    prev_ts: float | None = None
    plan: str = UNKNOWN_PLAN
    monthly_charges: float = 0.0
    plan_key: tuple[float, str] = (_NEG_INF, "")
    has_autopay: bool = False
    autopay_key: tuple[float, str] = (_NEG_INF, "")
    support_calls: list[float] = field(default_factory=list)
    failed_payments: list[float] = field(default_factory=list)
    usage: dict[int, float] = field(default_factory=dict)
    closed_ts: float | None = None
    recent: list[tuple[float, str]] = field(default_factory=list)
    n_events: int = 0

    def to_bytes(self) -> bytes:
        """Compact JSON encoding for the state table."""
        return orjson.dumps(
            {
                "c": self.customer_id,
                "s": self.signup_ts,
                "f": self.first_ts,
                "l": self.last_ts,
                "p": self.prev_ts,
                "pl": self.plan,
                "m": self.monthly_charges,
                "pk": _key_out(self.plan_key),
                "a": self.has_autopay,
                "ak": _key_out(self.autopay_key),
                "sc": self.support_calls,
                "fp": self.failed_payments,
                "u": [[d, v] for d, v in self.usage.items()],
                "x": self.closed_ts,
                "r": self.recent,
                "n": self.n_events,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> CustomerState:
        d = orjson.loads(raw)
        return cls(
            customer_id=d["c"],
            signup_ts=d["s"],
            first_ts=d["f"],
            last_ts=d["l"],
            prev_ts=d["p"],
            plan=d["pl"],
            monthly_charges=d["m"],
            plan_key=_key_in(d["pk"]),
            has_autopay=d["a"],
            autopay_key=_key_in(d["ak"]),
            support_calls=d["sc"],
            failed_payments=d["fp"],
            usage={int(day): v for day, v in d["u"]},
            closed_ts=d["x"],
            recent=[(ts, eid) for ts, eid in d["r"]],
            n_events=d["n"],
        )


def _key_out(key: tuple[float, str]) -> list | None:
    return None if key[0] == _NEG_INF else [key[0], key[1]]


def _key_in(raw: list | None) -> tuple[float, str]:
    return (_NEG_INF, "") if raw is None else (raw[0], raw[1])


def admit(state: CustomerState, event_id: str, ts: float) -> Admission:
    """Classify an event against the state's de-duplication ring."""
    key = (ts, event_id)
    recent = state.recent
    if any(eid == event_id for _, eid in recent):
        return Admission.DUPLICATE
    if len(recent) >= DEDUP_RING and key < recent[0]:
        return Admission.TOO_LATE
    return Admission.NEW


def apply(state: CustomerState, event: AccountEvent) -> CustomerState:
    """Fold one event into the state (in place) and return the state.

    Duplicates and too-late events leave the state unchanged (see module rules).
    """
    ts = event.ts.timestamp()
    eid = event.event_id
    if admit(state, eid, ts) is not Admission.NEW:
        return state
    key = (ts, eid)
    insort(state.recent, key)
    if len(state.recent) > DEDUP_RING:
        del state.recent[0]
    if not state.customer_id:
        state.customer_id = event.customer_id
    state.n_events += 1
    _advance_clock(state, ts)

    kind = event.event_type
    if kind == "usage":
        day = int(ts // DAY)
        state.usage[day] = state.usage.get(day, 0.0) + event.amount
    elif kind == "payment":
        if event.status == "failed":
            state.failed_payments.append(ts)
    elif kind == "support_call":
        state.support_calls.append(ts)
    elif kind in ("signup", "plan_changed"):
        if kind == "signup":
            state.signup_ts = ts if state.signup_ts is None else min(state.signup_ts, ts)
            if key > state.autopay_key:
                state.has_autopay = event.has_autopay
                state.autopay_key = key
        if key > state.plan_key:
            state.plan = event.plan
            state.monthly_charges = event.monthly_charges
            state.plan_key = key
    elif kind == "autopay_changed":
        if key > state.autopay_key:
            state.has_autopay = event.enabled
            state.autopay_key = key
    elif kind == "account_closed":
        state.closed_ts = ts if state.closed_ts is None else min(state.closed_ts, ts)
    _prune(state)
    return state


def _advance_clock(state: CustomerState, ts: float) -> None:
    if state.first_ts is None or ts < state.first_ts:
        state.first_ts = ts
    last = state.last_ts
    if last is None:
        state.last_ts = ts
    elif ts > last:
        state.prev_ts = last
        state.last_ts = ts
    elif ts < last and (state.prev_ts is None or ts > state.prev_ts):
        state.prev_ts = ts


def _prune(state: CustomerState) -> None:
    now = state.last_ts
    assert now is not None
    cut = now - SUPPORT_WINDOW_DAYS * DAY
    if state.support_calls and min(state.support_calls) <= cut:
        state.support_calls = sorted(t for t in state.support_calls if t > cut)
    cut = now - FAILED_PAYMENT_WINDOW_DAYS * DAY
    if state.failed_payments and min(state.failed_payments) <= cut:
        state.failed_payments = sorted(t for t in state.failed_payments if t > cut)
    oldest_day = int(now // DAY) - 2 * USAGE_WINDOW_DAYS
    if state.usage and min(state.usage) <= oldest_day:
        state.usage = {d: v for d, v in state.usage.items() if d > oldest_day}


def feature_values(state: CustomerState, at: float) -> dict[str, float | int | str]:
    """The model inputs of ``state`` at event time ``at`` (epoch seconds)."""
    last = state.last_ts if state.last_ts is not None else at
    if at > last:
        since = at - last
    elif state.prev_ts is not None:
        since = at - state.prev_ts
    else:
        since = 0.0
    start = state.signup_ts if state.signup_ts is not None else state.first_ts
    tenure = max(0.0, at - start) / (MONTH_DAYS * DAY) if start is not None else 0.0
    today = int(at // DAY)
    recent_usage = 0.0
    previous_usage = 0.0
    for day, amount in state.usage.items():
        age = today - day
        if 0 <= age < USAGE_WINDOW_DAYS:
            recent_usage += amount
        elif USAGE_WINDOW_DAYS <= age < 2 * USAGE_WINDOW_DAYS:
            previous_usage += amount
    trend = math.log((recent_usage + 1.0) / (previous_usage + 1.0))
    support_cut = at - SUPPORT_WINDOW_DAYS * DAY
    failed_cut = at - FAILED_PAYMENT_WINDOW_DAYS * DAY
    return {
        "tenure_months": round(tenure, 4),
        "monthly_charges": state.monthly_charges,
        "has_autopay": int(state.has_autopay),
        "support_calls_30d": sum(1 for t in state.support_calls if support_cut < t <= at),
        "failed_payments_90d": sum(1 for t in state.failed_payments if failed_cut < t <= at),
        "days_since_last_event": round(max(0.0, since) / DAY, 4),
        "usage_30d": round(recent_usage, 4),
        "usage_trend": round(max(-10.0, min(10.0, trend)), 4),
        "plan": state.plan,
    }


def features(state: CustomerState, at: datetime | float, event_id: str = "") -> FeatureVector:
    """The :class:`FeatureVector` of ``state`` at event time ``at``."""
    at_s = at.timestamp() if isinstance(at, datetime) else float(at)
    return FeatureVector(
        customer_id=state.customer_id,
        event_id=event_id or f"{state.customer_id}@{int(at_s)}",
        event_ts=datetime.fromtimestamp(at_s, tz=timezone.utc),
        **feature_values(state, at_s),
    )
