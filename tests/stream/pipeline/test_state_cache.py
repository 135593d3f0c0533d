"""StateCache: reuse only while the table holds the same bytes; give states up while in use."""

from __future__ import annotations

import pytest

from stream.pipeline.features import CustomerState
from stream.pipeline.state_cache import StateCache

pytestmark = pytest.mark.unit


def state(customer: str, n: int = 1) -> CustomerState:
    return CustomerState(customer_id=customer, last_ts=1_700_000_000.0 + n, first_ts=1_700_000_000.0, n_events=n)


def test_a_state_is_reused_while_the_table_holds_its_bytes():
    cache = StateCache()
    s = state("c1")
    raw = s.to_bytes()
    cache.put(b"c1", raw, s)
    assert cache.take(b"c1", raw) is s
    cache.put(b"c1", raw, s)
    assert cache.take(b"c1", bytes(bytearray(raw))) is s  # equal bytes, another object


def test_other_bytes_in_the_table_are_decoded_afresh():
    cache = StateCache()
    cache.put(b"c1", state("c1").to_bytes(), state("c1"))
    newer = state("c1", n=5)
    loaded = cache.take(b"c1", newer.to_bytes())
    assert loaded == newer
    assert cache.take(b"c1", None) is None


def test_a_taken_state_is_gone_until_put_back():
    cache = StateCache()
    s = state("c1")
    raw = s.to_bytes()
    cache.put(b"c1", raw, s)
    taken = cache.take(b"c1", raw)
    taken.n_events += 1  # a batch changes it, then fails before writing the table
    again = cache.take(b"c1", raw)
    assert again is not taken and again == state("c1")


def test_the_least_recently_used_state_is_dropped_at_the_limit():
    cache = StateCache(limit=2)
    states = {k: state(k.decode()) for k in (b"a", b"b", b"c")}
    for k in (b"a", b"b"):
        cache.put(k, states[k].to_bytes(), states[k])
    cache.put(b"a", *cache_entry(cache, b"a", states))
    cache.put(b"c", states[b"c"].to_bytes(), states[b"c"])
    assert len(cache) == 2
    assert cache.take(b"b", states[b"b"].to_bytes()) is not states[b"b"]
    assert cache.take(b"a", states[b"a"].to_bytes()) is states[b"a"]


def cache_entry(cache: StateCache, key: bytes, states: dict) -> tuple[bytes, CustomerState]:
    raw = states[key].to_bytes()
    return raw, cache.take(key, raw)
