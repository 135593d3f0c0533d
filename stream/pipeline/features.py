"""Per-customer feature logic, shared by the stream and by training. No Faust here.

One definition of every feature: the featurize agent and the training dataset
both call :func:`apply` and :func:`features`, so training-serving skew cannot
creep in.

Rules
-----
* **Duplicates.** An event whose ``event_id`` the state has already applied is a
  duplicate and changes nothing. The state remembers the ``DEDUP_RING`` most
  recent events by ``(ts in ms, id hash)``, where the id hash is 40 bits of BLAKE2b of
  the ``event_id`` (a false match needs a collision among one customer's 16 most
  recent events: about one in 7·10^10 events).
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
* **Usage** is summed in 5-day buckets; ``usage_30d`` is the sum of the 6 most
  recent buckets (the current one included) and ``usage_trend`` the log ratio of
  that sum to the 6 buckets before it.
* **Bounded.** Windows are pruned relative to the latest event time: support
  calls to 30 days, failed payments to 90 days, usage to 12 buckets. Event times
  are kept to the millisecond, and the state serializes to well under 1 KB.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import math
import sys
from array import array
from bisect import bisect_right, insort
from dataclasses import dataclass, field
from datetime import UTC, datetime
from math import floor
from typing import Any

import orjson

from schemas.events import AccountEvent
from schemas.features import FeatureVector
from stream.pipeline.json_bytes import json_bytes

DAY = 86_400.0
MONTH_DAYS = 30.4375
DEDUP_RING = 16
SUPPORT_WINDOW_DAYS = 30
FAILED_PAYMENT_WINDOW_DAYS = 90
USAGE_BUCKET_DAYS = 5
USAGE_WINDOW_BUCKETS = 6
UNKNOWN_PLAN = "unknown"

_NEG_INF = float("-inf")
_BUCKET_S = USAGE_BUCKET_DAYS * DAY
STATE_FORMAT = 3  # the first element of an encoded state (1 was an object, 2 wrote the ring as numbers)
_BIG_ENDIAN = sys.byteorder == "big"


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
    plan_key: tuple[float, int] = (_NEG_INF, 0)
    has_autopay: bool = False
    autopay_key: tuple[float, int] = (_NEG_INF, 0)
    support_calls: list[float] = field(default_factory=list)
    failed_payments: list[float] = field(default_factory=list)
    usage: dict[int, float] = field(default_factory=dict)
    closed_ts: float | None = None
    # The de-duplication ring: event times in ms and id hashes, sorted by (time, hash).
    # Arrays of machine integers: two contiguous blocks to read, where a list of
    # tuples was 48 objects scattered over the heap (encoding waited on memory).
    ring_ms: array = field(default_factory=lambda: array("q"))
    ring_ids: array = field(default_factory=lambda: array("q"))
    n_events: int = 0
    # The id hashes in the ring, for the duplicate check; derived, not stored.
    recent_ids: set[int] = field(default_factory=set, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.ring_ms, array):
            self.ring_ms = array("q", self.ring_ms)
        if not isinstance(self.ring_ids, array):
            self.ring_ids = array("q", self.ring_ids)
        self.recent_ids = set(self.ring_ids)

    @property
    def recent(self) -> list[tuple[int, int]]:
        """The ring as ``(event time in ms, id hash)`` pairs, oldest first."""
        return list(zip(self.ring_ms, self.ring_ids))

    def to_bytes(self) -> bytes:
        """Compact JSON for the state table: one array, led by :data:`STATE_FORMAT`.

        Every value is already JSON (times are epoch seconds rounded to the millisecond,
        whose shortest repr orjson writes back exactly), so the encoding is one C call
        and a copy to the document's size (:mod:`stream.pipeline.json_bytes`): it runs once per
        new event, on the worker's hot path. The de-duplication ring is one base64
        string of its 64-bit integers (times, then id hashes, little endian): writing
        its 32 large integers as decimals was two thirds of the encoding's time, and
        the string is shorter.
        """
        plan_key = None if self.plan_key[0] == _NEG_INF else self.plan_key
        autopay_key = None if self.autopay_key[0] == _NEG_INF else self.autopay_key
        return json_bytes(
            [
                STATE_FORMAT,
                self.customer_id,
                self.last_ts,
                self.signup_ts,
                self.first_ts,
                self.prev_ts,
                self.closed_ts,
                self.plan,
                self.monthly_charges,
                plan_key,
                self.has_autopay,
                autopay_key,
                self.support_calls,
                self.failed_payments,
                sorted(self.usage.items()),
                _ring_text(self.ring_ms, self.ring_ids),
                self.n_events,
            ]
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> CustomerState:
        d = orjson.loads(raw)
        if isinstance(d, dict):
            return cls._from_relative(d)
        # Formats 2 and 3 differ only in the ring, between the usage and the event count.
        if d[0] == STATE_FORMAT:
            ring_ms, ring_ids = _ring_arrays(d[15])
        elif d[0] == 2:
            ring_ms, ring_ids = array("q", d[15]), array("q", d[16])
        else:
            raise ValueError(f"unknown customer-state format {d[0]!r} (this version reads 1 to {STATE_FORMAT})")
        (
            _,
            customer_id,
            last,
            signup,
            first,
            prev,
            closed,
            plan,
            charges,
            plan_key,
            autopay,
            autopay_key,
            support,
            failed,
            usage,
        ) = d[:15]
        n = d[-1]
        return cls(
            customer_id=customer_id,
            last_ts=last,
            signup_ts=signup,
            first_ts=first,
            prev_ts=prev,
            closed_ts=closed,
            plan=plan,
            monthly_charges=charges,
            plan_key=(_NEG_INF, 0) if plan_key is None else tuple(plan_key),
            has_autopay=autopay,
            autopay_key=(_NEG_INF, 0) if autopay_key is None else tuple(autopay_key),
            support_calls=support,
            failed_payments=failed,
            usage=dict(usage),
            ring_ms=ring_ms,
            ring_ids=ring_ids,
            n_events=n,
        )

    @classmethod
    def _from_relative(cls, d: dict) -> CustomerState:
        """The first table format: an object, times as integer ms before ``last_ts`` (still read)."""
        last_ms = d["l"]
        u, r, pk, ak = d["u"], d["r"], d["pk"], d["ak"]

        def back(rel: int | None) -> float | None:
            return None if rel is None else (last_ms - rel) / 1000.0

        return cls(
            customer_id=d["c"],
            last_ts=last_ms / 1000.0 if d["n"] else None,
            signup_ts=back(d["s"]),
            first_ts=back(d["f"]),
            prev_ts=back(d["p"]),
            closed_ts=back(d["x"]),
            plan=d["pl"],
            monthly_charges=d["m"],
            plan_key=(_NEG_INF, 0) if pk is None else ((last_ms - pk[0]) / 1000.0, pk[1]),
            has_autopay=bool(d["a"]),
            autopay_key=(_NEG_INF, 0) if ak is None else ((last_ms - ak[0]) / 1000.0, ak[1]),
            support_calls=[(last_ms - t) / 1000.0 for t in d["sc"]],
            failed_payments=[(last_ms - t) / 1000.0 for t in d["fp"]],
            usage={u[i]: u[i + 1] for i in range(0, len(u), 2)},
            ring_ms=array("q", [last_ms - r[i] for i in range(0, len(r), 2)]),
            ring_ids=array("q", [r[i] for i in range(1, len(r), 2)]),
            n_events=d["n"],
        )


@dataclass(slots=True)
class StateView:
    """What :func:`feature_values` reads of a stored state, decoded without the rest.

    Scoring stored states (``churn score-batch``) needs the clock, the plan, the windows and the
    usage buckets, not the de-duplication ring or the order keys, whose decoding (base64, arrays,
    a set) is most of :meth:`CustomerState.from_bytes`' cost. Same values as the full decode.
    """

    customer_id: str
    last_ts: float | None
    signup_ts: float | None
    first_ts: float | None
    prev_ts: float | None
    closed_ts: float | None
    plan: str
    monthly_charges: float
    has_autopay: bool
    support_calls: list[float]
    failed_payments: list[float]
    usage: dict[int, float]

    @staticmethod
    def from_bytes(raw: bytes) -> StateView | CustomerState:
        """A view of ``customer-state`` table bytes (older formats: the full state)."""
        d = orjson.loads(raw)
        if not isinstance(d, list) or d[0] != STATE_FORMAT:
            return CustomerState.from_bytes(raw)
        _, customer_id, last, signup, first, prev, closed, plan, charges, _, autopay, _, support, failed, usage = d[:15]
        return StateView(
            customer_id, last, signup, first, prev, closed, plan, charges, autopay, support, failed, dict(usage)
        )


def _ring_text(ring_ms: array, ring_ids: array) -> str:
    """The ring as base64 of its times, then its id hashes, each a little-endian int64."""
    if _BIG_ENDIAN:
        ring_ms, ring_ids = array("q", ring_ms), array("q", ring_ids)
        ring_ms.byteswap()
        ring_ids.byteswap()
    return binascii.b2a_base64(ring_ms.tobytes() + ring_ids.tobytes(), newline=False).decode("ascii")


def _ring_arrays(text: str) -> tuple[array, array]:
    """:func:`_ring_text` read back."""
    raw = binascii.a2b_base64(text)
    if len(raw) % 16:
        raise ValueError(f"a customer-state ring of {len(raw)} bytes: not pairs of 64-bit integers")
    half = len(raw) // 2
    ring_ms, ring_ids = array("q"), array("q")
    ring_ms.frombytes(raw[:half])
    ring_ids.frombytes(raw[half:])
    if _BIG_ENDIAN:
        ring_ms.byteswap()
        ring_ids.byteswap()
    return ring_ms, ring_ids


def rounder(digits: int):
    """``round(x, digits)``, the same float for every ``x``, in half the time.

    ``round`` formats the float's exact decimal expansion and parses the rounded digits
    back (the features round five values per event). Here ``y = x * 10**digits`` is
    rounded to the nearest integer ``r`` and ``r / 10**digits`` returned: a correctly
    rounded division of two exact values, so the float nearest the decimal that ``round``
    picks whenever ``r`` is that decimal's digits. It is: rounding the exact product to
    the float ``y`` is monotonic and every half-integer below 2**52 is a float, so ``y``
    lies on the same side of a half as the exact product, or on the half itself. Halves
    (which ``round`` breaks to even on the exact value), results of zero (whose sign
    ``round`` keeps), huge and non-finite values go to ``round`` itself.
    """
    scale = 10.0**digits

    def rounded(x: float) -> float:
        y = x * scale
        if -1e15 < y < 1e15:
            r = floor(y)
            d = y - r
            if d > 0.5:
                r += 1
            elif d == 0.5:
                return round(x, digits)
            if r:
                return r / scale
        return round(x, digits)

    return rounded


_round3 = rounder(3)
_round4 = rounder(4)


def event_hash(event_id: str) -> int:
    """40-bit hash of an event id: what the de-duplication ring remembers."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=5).digest(), "big")


def event_time(ts: datetime) -> float:
    """Event time in epoch seconds, kept to the millisecond: ``round(ts.timestamp(), 3)``.

    When ``ts`` is a whole number of milliseconds (events with second or millisecond
    times, nearly all of them) ``ts.timestamp()`` is that already: it is the float
    nearest to an exact multiple of 1 ms (an integer division, correctly rounded), so
    rounding it to three decimals gives that same float back. Skipping ``round``, which
    works through the float's decimal digits, takes a good part off the cost; most of
    the rest is ``timestamp`` asking pydantic's ``TzInfo`` for its offset.

    >>> event_time(datetime(2024, 5, 1, 12, 0, 0, 123_456, tzinfo=UTC))
    1714564800.123
    """
    seconds = ts.timestamp()
    return round(seconds, 3) if ts.microsecond % 1000 else seconds


def admit(state: CustomerState, event_id: str, ts: float) -> Admission:
    """Classify an event (id, epoch-seconds time) against the de-duplication ring."""
    return _admit(state, event_hash(event_id), round(ts * 1000))


def _admit(state: CustomerState, h: int, ms: int) -> Admission:
    if h in state.recent_ids:
        return Admission.DUPLICATE
    ring_ms = state.ring_ms
    if len(ring_ms) >= DEDUP_RING and (ms, h) < (ring_ms[0], state.ring_ids[0]):
        return Admission.TOO_LATE
    return Admission.NEW


def apply(state: CustomerState, event: AccountEvent) -> CustomerState:
    """Fold one event into the state (in place) and return the state.

    Duplicates and too-late events leave the state unchanged (see module rules).
    """
    apply_checked(state, event)
    return state


def apply_checked(state: CustomerState, event: AccountEvent, ts: float | None = None) -> Admission:
    """:func:`admit` and :func:`apply` in one: fold the event in if it is new; say which case it was.

    ``ts`` is the event's :func:`event_time`, when the caller has it already.
    """
    if ts is None:
        ts = event_time(event.ts)
    h = event_hash(event.event_id)
    ms = round(ts * 1000)
    verdict = _admit(state, h, ms)
    if verdict is Admission.NEW:
        _remember(state, ms, h)
        _fold(state, event, ts, (ts, h))
    return verdict


def _remember(state: CustomerState, ms: int, h: int) -> None:
    """Put a new event into the ring in (time, hash) order; forget the oldest beyond ``DEDUP_RING``."""
    ring_ms, ring_ids = state.ring_ms, state.ring_ids
    i = bisect_right(ring_ms, ms)
    while i and ring_ms[i - 1] == ms and ring_ids[i - 1] > h:
        i -= 1
    ring_ms.insert(i, ms)
    ring_ids.insert(i, h)
    state.recent_ids.add(h)
    if len(ring_ms) > DEDUP_RING:
        del ring_ms[0]
        state.recent_ids.discard(ring_ids.pop(0))


def _fold(state: CustomerState, event: Any, ts: float, key: tuple[float, int]) -> None:
    """Fold a new event (time ``ts``, order ``key``) into everything but the de-duplication ring.

    ``event`` is an :data:`AccountEvent`; which fields it has depends on its ``event_type``,
    which the branches below read first.
    """
    if not state.customer_id:
        state.customer_id = event.customer_id
    state.n_events += 1
    # The clock: first and latest event times, and the latest before the latest.
    first = state.first_ts
    if first is None or ts < first:
        state.first_ts = ts
    last = state.last_ts
    if last is None:
        state.last_ts = ts
    elif ts > last:
        state.prev_ts = last
        state.last_ts = ts
    elif ts < last and (state.prev_ts is None or ts > state.prev_ts):
        state.prev_ts = ts

    kind = event.event_type
    if kind == "usage":
        bucket = int(ts // _BUCKET_S)
        state.usage[bucket] = _round3(state.usage.get(bucket, 0.0) + event.amount)
    elif kind == "payment":
        if event.status == "failed":
            insort(state.failed_payments, ts)
    elif kind == "support_call":
        insort(state.support_calls, ts)
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


def _prune(state: CustomerState) -> None:
    now = state.last_ts
    assert now is not None
    cut = now - SUPPORT_WINDOW_DAYS * DAY
    # Both lists are kept sorted (insort), so their first element is their oldest.
    if state.support_calls and state.support_calls[0] <= cut:
        state.support_calls = sorted(t for t in state.support_calls if t > cut)
    cut = now - FAILED_PAYMENT_WINDOW_DAYS * DAY
    if state.failed_payments and state.failed_payments[0] <= cut:
        state.failed_payments = sorted(t for t in state.failed_payments if t > cut)
    oldest = int(now // _BUCKET_S) - 2 * USAGE_WINDOW_BUCKETS
    if state.usage and min(state.usage) <= oldest:
        state.usage = {b: v for b, v in state.usage.items() if b > oldest}


def feature_values(state: CustomerState | StateView, at: float) -> dict[str, Any]:
    """The model inputs of ``state`` at event time ``at`` (epoch seconds): numbers, and the plan's name.

    A dict of ``Any`` so that the stream can add the vector's other fields to it in place.
    """
    last = state.last_ts if state.last_ts is not None else at
    if at > last:
        since = at - last
    elif state.prev_ts is not None:
        since = at - state.prev_ts
    else:
        since = 0.0
    start = state.signup_ts if state.signup_ts is not None else state.first_ts
    tenure = max(0.0, at - start) / (MONTH_DAYS * DAY) if start is not None else 0.0
    current = int(at // _BUCKET_S)
    recent_usage = 0.0
    previous_usage = 0.0
    for bucket, amount in state.usage.items():
        age = current - bucket
        if 0 <= age < USAGE_WINDOW_BUCKETS:
            recent_usage += amount
        elif USAGE_WINDOW_BUCKETS <= age < 2 * USAGE_WINDOW_BUCKETS:
            previous_usage += amount
    trend = math.log((recent_usage + 1.0) / (previous_usage + 1.0))
    support_cut = at - SUPPORT_WINDOW_DAYS * DAY
    failed_cut = at - FAILED_PAYMENT_WINDOW_DAYS * DAY
    support, failed = state.support_calls, state.failed_payments
    return {
        "tenure_months": _round4(tenure),
        "monthly_charges": state.monthly_charges,
        "has_autopay": int(state.has_autopay),
        # Both lists are sorted: the count of times t with cut < t <= at.
        "support_calls_30d": bisect_right(support, at) - bisect_right(support, support_cut),
        "failed_payments_90d": bisect_right(failed, at) - bisect_right(failed, failed_cut),
        "days_since_last_event": _round4(max(0.0, since) / DAY),
        "usage_30d": _round4(recent_usage),
        "usage_trend": _round4(max(-10.0, min(10.0, trend))),
        "plan": state.plan,
    }


def features(state: CustomerState, at: datetime | float, event_id: str = "") -> FeatureVector:
    """The :class:`FeatureVector` of ``state`` at event time ``at``."""
    at_s = at.timestamp() if isinstance(at, datetime) else float(at)
    return FeatureVector(
        customer_id=state.customer_id,
        event_id=event_id or f"{state.customer_id}@{int(at_s)}",
        event_ts=datetime.fromtimestamp(at_s, tz=UTC),
        **feature_values(state, at_s),
    )
