"""The batch's sources without a broker: an events file replayed as the stream folds it, a synthetic base."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support.events import START, sample_events

from schemas.events import dump_event
from stream.batch.sources import EventsFile, SyntheticBase, changelog_topic
from stream.pipeline.features import CustomerState, apply, event_time

pytestmark = pytest.mark.unit


def write_events(path, events, extra: list[bytes] = ()):
    lines = [dump_event(e) for e in events]
    for i, bad in enumerate(extra):
        lines.insert(7 + 50 * i, bad)
    path.write_bytes(b"\n".join(lines) + b"\n")


def folded(events, until: float | None = None) -> dict[str, bytes]:
    out: dict[str, CustomerState] = {}
    for e in events:
        if until is None or event_time(e.ts) <= until:
            apply(out.setdefault(e.customer_id, CustomerState(customer_id=e.customer_id)), e)
    return {c: s.to_bytes() for c, s in out.items()}


BAD = [b'{"event_type": "usage", "customer_id": "cust-00001"}', b"not json at all", b'{"customer_id": 5}']


@pytest.mark.parametrize("bucket_bytes", [1 << 30, 4096], ids=["direct", "bucketed"])
def test_an_events_file_replays_to_the_streams_states_and_counts_bad_lines(tmp_path, bucket_bytes):
    events = sample_events(4000, 150, seed=3)
    events += events[:300]  # a replayed stretch: duplicates change nothing
    path = tmp_path / "events.jsonl"
    write_events(path, events, BAD)
    source = EventsFile(path, bucket_bytes=bucket_bytes, spill_dir=tmp_path)
    assert (source.buckets() > 1) == (bucket_bytes == 4096)
    got = {s.customer_id: s.to_bytes() for s in source}
    assert got == folded(events)
    assert source.stats.counts["invalid"] == len(BAD)
    # Each repeat is a duplicate the ring remembers, or too late to tell: either way it is not applied.
    assert source.stats.counts["events_duplicate"] + source.stats.counts["events_too_late"] == 300
    assert source.stats.records == len(events) + len(BAD)
    numbers = sorted(int(e.split(":")[0].removeprefix("line ")) for e in source.stats.errors)
    assert numbers == [8, 58, 108]
    assert list(tmp_path.glob("churn-score-batch-*")) == []  # the buckets are gone


def test_an_events_file_with_an_as_of_leaves_out_later_events(tmp_path):
    events = sample_events(3000, 100, seed=5)
    as_of = (START + timedelta(minutes=1700)).timestamp()
    path = tmp_path / "events.jsonl"
    write_events(path, events)
    source = EventsFile(path, as_of)
    got = {s.customer_id: s.to_bytes() for s in source}
    assert got == folded(events, as_of)
    assert source.stats.counts["events_after_as_of"] == sum(1 for e in events if event_time(e.ts) > as_of) > 0


def test_a_synthetic_base_is_open_accounts_under_ids_of_their_own():
    base = [CustomerState.from_bytes(raw) for raw in SyntheticBase(1200, world_customers=60, days=40)]
    assert len(base) == 1200
    assert len({s.customer_id for s in base}) == 1200 and base[7].customer_id == "syn-00000007"
    assert all(s.closed_ts is None and s.last_ts is not None for s in base)


def test_the_changelog_is_named_after_the_app():
    assert changelog_topic("churn-x") == "churn-x-customer-state-changelog"
