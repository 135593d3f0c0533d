"""Deliberately bad messages, for testing the dead-letter path and for demos.

Each kind is something real producers send by mistake: truncated JSON, a field of
the wrong type, an event type the contract does not know, a NaN, a payload far
over the size limit, a naive timestamp.
"""

from __future__ import annotations

import random

KINDS = ("broken_json", "wrong_type", "unknown_type", "nan", "oversized", "naive_ts")


def bad_message(kind: str, n: int, customer_id: str, oversize_bytes: int = 100_000) -> bytes:
    """One invalid ``account-events`` payload of ``kind``; ``n`` makes it unique."""
    base = f'"event_id": "bad-{n}", "customer_id": "{customer_id}", "ts": "2026-02-01T00:00:00Z"'
    if kind == "broken_json":
        return f'{{"event_type": "usage", {base}, "amount": 1.0'.encode()
    if kind == "wrong_type":
        return f'{{"event_type": "usage", {base}, "amount": "a lot"}}'.encode()
    if kind == "unknown_type":
        return f'{{"event_type": "teleported", {base}}}'.encode()
    if kind == "nan":
        return f'{{"event_type": "usage", {base}, "amount": NaN}}'.encode()
    if kind == "oversized":
        return f'{{"event_type": "support_call", {base}, "reason": "{"x" * oversize_bytes}"}}'.encode()
    if kind == "naive_ts":
        return (
            f'{{"event_type": "usage", "event_id": "bad-{n}", "customer_id": "{customer_id}", '
            f'"ts": "2026-02-01T00:00:00", "amount": 1.0}}'
        ).encode()
    raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")


def inject(messages: list[tuple[bytes, bytes]], share: float, seed: int = 0) -> tuple[list[tuple[bytes, bytes]], int]:
    """Insert ``share`` bad messages at seeded random places; returns (messages, number of bad ones).

    A bad message is keyed like the valid message it is placed before, so it lands on
    a real customer's partition between that customer's events.
    """
    rng = random.Random(seed)
    count = int(round(len(messages) * share))
    positions = sorted(rng.sample(range(len(messages)), count))
    out: list[tuple[bytes, bytes]] = []
    last = 0
    for n, pos in enumerate(positions):
        out.extend(messages[last:pos])
        key = messages[pos][0]
        out.append((key, bad_message(KINDS[n % len(KINDS)], n, key.decode())))
        last = pos
    out.extend(messages[last:])
    return out, count
