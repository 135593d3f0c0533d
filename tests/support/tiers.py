"""The broker tiers of a test session: which ran on what, which could not run and why.

A module of its own (not the conftest) so that the fixtures in every conftest and the
hooks share one record.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import pytest

TIERS = ("kafka", "embedded")
TRIO = "kafka, three nodes"
SECURE = "kafka, SASL_SSL and ACLs"


@dataclass
class TierOutcome:
    broker: str = ""  # what ran, for the summary
    missing: str = ""  # why the tier could not run
    results: Counter = field(default_factory=Counter)


TIER_OUTCOMES: dict[str, TierOutcome] = {}


def session_tiers() -> list[str]:
    """The broker tiers this session runs: ``CHURN_TEST_BOOTSTRAP``, ``CHURN_TEST_BROKER`` or both."""
    if os.environ.get("CHURN_TEST_BOOTSTRAP", "").strip():
        return ["explicit"]
    forced = os.environ.get("CHURN_TEST_BROKER", "").strip().lower()
    if forced:
        if forced not in TIERS:
            raise pytest.UsageError(f"CHURN_TEST_BROKER must be one of {', '.join(TIERS)}, not {forced!r}")
        return [forced]
    return list(TIERS)


def tier(name: str) -> TierOutcome:
    """The record of tier ``name``."""
    return TIER_OUTCOMES.setdefault(name, TierOutcome())


def tier_broker(name: str, broker: str) -> None:
    """Record what broker tier ``name`` runs on, for the summary."""
    tier(name).broker = broker


def missing_tier(name: str, why: str) -> None:
    """Record that tier ``name`` cannot run here and skip the test that needed it (the run fails under CI)."""
    tier(name).missing = why
    pytest.skip(f"the {name} tier did not run: {why}")


def tier_lines() -> list[str]:
    """One line per tier: its broker and its tests' outcomes, or why it did not run."""
    lines = []
    for name, outcome in TIER_OUTCOMES.items():
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(outcome.results.items())) or "no tests"
        if outcome.missing:
            lines.append(f"broker tier {name}: did not run: {outcome.missing}")
        else:
            lines.append(f"broker tier {name}: {outcome.broker}: {counts}")
    return lines
