"""Account events for tests: built straight from the schema models, or the simulator's as the featurizer receives them."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from producers.simulator import SimConfig, Simulator
from schemas.events import (
    AccountClosed,
    AccountEvent,
    AutopayChanged,
    Payment,
    PlanChanged,
    Signup,
    SupportCall,
    Usage,
    dump_event,
)
from stream.pipeline.messages import Inbound

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


def messages(n: int) -> list[Inbound]:
    """The first ``n`` simulated events as the featurizer receives them (one partition, offsets from 0)."""
    events = Simulator(SimConfig(n_customers=20, days=120, seed=2)).events()
    out = []
    for i, event in enumerate(events):
        if i >= n:
            break
        out.append(Inbound(event.customer_id.encode(), dump_event(event), "account-events", 0, i, 1_000 + i))
    return out


def drift_alert(alert_id: str, at: datetime | None = None) -> bytes:
    """A high data-drift alert as the worker publishes it on ``drift-alerts`` (``at``: its window and creation time)."""
    from schemas.outputs import DriftAlert

    now = at or datetime.now(UTC)
    alert = DriftAlert(
        alert_id=alert_id,
        detector="psi",
        kind="data",
        window_start=now,
        window_end=now,
        severity="high",
        created_at=now,
    )
    return alert.model_dump_json().encode()
