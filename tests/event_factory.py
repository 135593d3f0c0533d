"""Deterministic account events built straight from the schema models (no simulator)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from schemas.events import (
    AccountClosed,
    AccountEvent,
    AutopayChanged,
    Payment,
    PlanChanged,
    Signup,
    SupportCall,
    Usage,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
PLANS = ("basic", "standard", "premium")


def sample_events(n: int, customers: int = 50, seed: int = 7) -> list[AccountEvent]:
    """``n`` events over ``customers`` customers: a signup first, then a mix of every type."""
    rng = random.Random(seed)
    events: list[AccountEvent] = []
    signed_up: set[str] = set()
    for i in range(n):
        customer = f"cust-{rng.randrange(customers):05d}"
        common = {"event_id": f"ev-{seed}-{i:07d}", "customer_id": customer, "ts": START + timedelta(minutes=i)}
        if customer not in signed_up:
            signed_up.add(customer)
            autopay = rng.random() < 0.5
            events.append(Signup(**common, plan=rng.choice(PLANS), monthly_charges=29.5, has_autopay=autopay))
            continue
        kind = rng.randrange(6)
        if kind == 0:
            events.append(PlanChanged(**common, plan=rng.choice(PLANS), monthly_charges=round(rng.uniform(10, 90), 2)))
        elif kind == 1:
            events.append(Payment(**common, amount=round(rng.uniform(10, 90), 2), status=rng.choice(("ok", "failed"))))
        elif kind == 2:
            events.append(SupportCall(**common, reason=rng.choice(("", "billing", "outage"))))
        elif kind == 3:
            events.append(Usage(**common, amount=round(rng.uniform(0, 500), 3)))
        elif kind == 4:
            events.append(AutopayChanged(**common, enabled=rng.random() < 0.5))
        else:
            events.append(AccountClosed(**common, reason="price"))
    return events
