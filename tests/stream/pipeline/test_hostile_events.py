"""Hostile payloads on account-events: each ends as one dead-letter record with a reason, in bounded time.

The featurizer runs as the worker runs it, on one-message batches, with the largest event
size the settings allow (``CHURN_MAX_EVENT_BYTES`` = 10,000,000) so that the size check does
not hide what validation does with a large payload. Then property-based runs: arbitrary bytes
and arbitrary JSON-ish documents (nested with hypothesis' ``recursive``, numbers of any size,
NaN and Infinity, repeated names) always give either an applied event or one dead-letter
record with a known error class, never an exception; and the shape check refuses only what
validation refuses too.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.events import EVENT_TYPES, Signup, Usage, account_event_adapter
from stream.metrics import StreamMetrics
from stream.pipeline.event_shape import MAX_MEMBERS, shape_problem
from stream.pipeline.featurize import DLQ, DLQ_VALUE_BYTES, FEATURES, Featurizer
from stream.pipeline.messages import Inbound
from stream.settings import WorkerSettings

pytestmark = pytest.mark.unit

LARGEST = 10_000_000
EVENT_FUZZ_CASES = 1000
ERROR_CLASSES = {"PayloadRejected", "ValidationError", "KeyMismatch"}
USAGE = dict(Usage.EXAMPLES[0])
SIGNUP = dict(Signup.EXAMPLES[0])
# CPU seconds one hostile payload may take at the largest size: generous, to stay clear of a busy
# machine; before the shape check, the nested payload below took about 10 s.
CPU_BOUND_S = 3.0


def test_the_largest_setting_is_the_one_these_tests_use():
    assert WorkerSettings.model_fields["max_event_bytes"].metadata[-1].le == LARGEST


def one(featurizer: Featurizer, value: bytes | None, key: bytes | None = b"cust-00042"):
    """The featurizer's outputs for one message on account-events."""
    return featurizer.process([Inbound(key, value, "account-events", 0, 7, 1_767_225_600_000)], lambda k: None)


def dead_letter(result) -> tuple[str, str, bytes]:
    """The error class, message and value of the batch's one dead-letter record (fails if it is not that)."""
    assert [o.topic for o in result.out] == [DLQ] and not result.scorable and not result.dirty
    headers = dict(result.out[0].headers)
    message = headers["error.message"].decode()
    assert message and len(message) <= 2000
    return headers["error.class"].decode(), message, result.out[0].value


def nested(n: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * n + closer * n


def event_with(**fields) -> bytes:
    return json.dumps({**USAGE, **fields}).encode()


def with_literal(name: str, literal: bytes) -> bytes:
    return event_with(**{name: "LITERAL"}).replace(b'"LITERAL"', literal)


HOSTILE = {
    "100k nested arrays": (nested(100_000), "ValidationError", "not a JSON object"),
    "100k nested arrays in a field": (
        event_with(x=0).replace(b"0}", nested(100_000) + b"}"),
        "ValidationError",
        "array or an object",
    ),
    "100k nested objects": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "ValidationError", "members"),
    "50 MB value": (b"x" * 50_000_000, "PayloadRejected", "oversized payload: 50000000 bytes"),
    "1M-element array": (
        event_with(x=0).replace(b"0}", b"[" + b",".join([b"1"] * 1_000_000) + b"]}"),
        "ValidationError",
        "array",
    ),
    "1M small objects": (b'{"x":[' + b",".join([b'{"a":{}}'] * 1_000_000) + b"]}", "ValidationError", "members"),
    "700k members": (b"{" + b",".join(b'"k%d":1' % i for i in range(700_000)) + b"}", "ValidationError", "members"),
    "800k repeated names": (b"{" + b",".join([b'"amount":1'] * 800_000) + b"}", "ValidationError", "members"),
    "900k numbers as members": (b"{" + b",".join([b"1:1"] * 900_000) + b"}", "ValidationError", "members"),
    "non-UTF-8 bytes": (event_with(event_id="e-XX").replace(b"XX", b"\xff\xfe"), "ValidationError", "unicode"),
    "UTF-16": (json.dumps(USAGE).encode("utf-16"), "ValidationError", "Invalid JSON"),
    "a lone surrogate escape": (event_with(event_id="e-\ud800"), "ValidationError", "Invalid JSON"),
    "NaN": (with_literal("amount", b"NaN"), "ValidationError", "finite number"),
    "Infinity": (with_literal("amount", b"Infinity"), "ValidationError", "finite number"),
    "-Infinity": (with_literal("amount", b"-Infinity"), "ValidationError", "finite number"),
    "1e400": (with_literal("amount", b"1e400"), "ValidationError", "finite number"),
    "a 100,000-digit integer": (with_literal("amount", b"9" * 100_000), "ValidationError", "out of range"),
    "a 2 MB string": (event_with(event_id="e" * 2_000_000), "ValidationError", "1 to 128 characters"),
    "2 MB of escaped quotes": (event_with(event_id='"' * 1_000_000), "ValidationError", "1 to 128 characters"),
    "an empty value": (None, "PayloadRejected", "empty payload"),
    "not JSON": (b"\x00\x01\x02garbage", "ValidationError", "not a JSON object"),
}


@pytest.mark.parametrize(("value", "error", "says"), list(HOSTILE.values()), ids=list(HOSTILE))
def test_a_hostile_payload_is_dead_lettered_with_a_reason_in_bounded_time_and_memory(value, error, says):
    featurizer = Featurizer(StreamMetrics.create(), LARGEST)
    tracemalloc.start()
    began = time.process_time()
    try:
        result = one(featurizer, value)
        spent = time.process_time() - began
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    got, message, kept = dead_letter(result)
    assert spent < CPU_BOUND_S
    size = len(value or b"")
    # Python memory taken on the way (tracemalloc; pydantic's parser allocates outside it): copies of the
    # payload, the record's at most DLQ_VALUE_BYTES, never an object per element (a million of them would
    # be over a hundred MB)
    assert peak < 3 * min(size, LARGEST) + DLQ_VALUE_BYTES + 1_000_000, peak
    assert kept == (value or b"")[:DLQ_VALUE_BYTES]
    assert (got, says in message) == (error, True), message


def test_a_dead_letter_keeps_at_most_its_limit_of_the_payload_and_says_so():
    featurizer = Featurizer(StreamMetrics.create(), LARGEST)
    value = b"x" * 5_000_000
    result = one(featurizer, value, key=b"k" * 5000)
    _, _, kept = dead_letter(result)
    record = result.out[0]
    headers = dict(record.headers)
    assert len(kept) == DLQ_VALUE_BYTES and len(record.key) == 1024
    assert (headers["payload"], headers["payload.value.bytes"], headers["payload.key.bytes"]) == (
        b"truncated",
        b"5000000",
        b"5000",
    )
    small = one(featurizer, b"not json")
    assert small.out[0].value == b"not json" and "payload" not in dict(small.out[0].headers)


def test_a_repeated_name_counts_its_last_value_as_in_every_json_parser():
    """Not refused: pydantic, orjson and Python's json all keep the last value. The key check sees that value."""
    featurizer = Featurizer(StreamMetrics.create(), LARGEST)
    raw = json.dumps(USAGE).encode()[:-1] + b', "customer_id": "cust-other"}'
    assert dead_letter(one(featurizer, raw, key=b"cust-00042"))[0] == "KeyMismatch"
    applied = one(featurizer, raw, key=b"cust-other")
    assert [o.topic for o in applied.out] == [FEATURES] and applied.scorable[0].row["customer_id"] == "cust-other"


def test_real_events_pass_the_shape_check_even_with_brackets_and_colons_in_their_text():
    for event in (USAGE, SIGNUP, {**SIGNUP, "plan": "a:b:c:d:e:f:g:h:i:j:k:l:m:n:o:p:q"}):
        assert shape_problem(json.dumps(event).encode()) is None
    closed = {"event_type": "account_closed", "event_id": "e1", "customer_id": "c1", "ts": "2026-01-01T00:00:00Z"}
    for reason in ('[{"x": 1}]', 'say "hi" \\ {', ":" * 200, "\\"):
        raw = json.dumps({**closed, "reason": reason}).encode()
        assert shape_problem(raw) is None, raw
        assert shape_problem(json.dumps({**closed, "reason": reason}, ensure_ascii=False).encode()) is None
    assert shape_problem(b"{" + b",".join(b'"k%d":1' % i for i in range(MAX_MEMBERS)) + b"}") is None


# --- property-based ------------------------------------------------------------------------------------


def dumps(value) -> bytes:
    """JSON as Python writes it: integers of any size, NaN and Infinity as bare words, any key order."""
    return json.dumps(value).encode()


NAMES = st.sampled_from([*USAGE, *SIGNUP, "amount", "status", "reason", "enabled", "x"])
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(10**60), 10**60)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from([*EVENT_TYPES, *USAGE.values(), *SIGNUP.values(), "2026-02-30T00:00:00Z", "ok", "failed"])
)
JSONISH = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(NAMES, children, max_size=5),
    max_leaves=20,
)


def member(name: str, value) -> bytes:
    return json.dumps(name).encode() + b":" + dumps(value)


# Objects written member by member, so that a name can come twice; near a real event or anything.
OBJECTS = st.builds(
    lambda base, extra, drop: b"{" + b",".join([member(k, v) for k, v in base.items() if k not in drop] + extra) + b"}",
    st.sampled_from([USAGE, SIGNUP, {}]),
    st.lists(st.builds(member, NAMES, JSONISH), max_size=4),
    st.sets(NAMES, max_size=2),
)
# A real event with a new id, and half the time one field changed (then often still valid), in any member order.
CHANGED = st.builds(
    lambda base, event_id, change, order: (
        b"{"
        + b",".join(sorted((member(k, v) for k, v in {**base, "event_id": event_id, **change}.items()), key=order))
        + b"}"
    ),
    st.sampled_from([USAGE, SIGNUP]),
    st.text(min_size=1, max_size=10),
    st.just({}) | st.dictionaries(NAMES, LEAVES, max_size=1),
    st.sampled_from([len, bytes, lambda m: m[::-1]]),
)
PAYLOADS = st.one_of(
    CHANGED,
    st.binary(max_size=400),
    JSONISH.map(dumps),
    OBJECTS,
    OBJECTS.flatmap(lambda raw: st.integers(0, len(raw)).map(lambda i: raw[:i] + b"\xff" + raw[i:])),  # not UTF-8
    st.integers(1, 3000).map(nested),
    st.integers(1, 3000).map(lambda n: nested(n, b'{"a":', b"}").replace(b"{}", b"{1}")),
)


def test_fuzz_any_payload_is_an_applied_event_or_one_dead_letter_and_the_shape_check_is_only_a_shortcut(
    record_property,
):
    """For every payload: the featurizer applies it (then it is a valid event) or writes one dead-letter record
    with a known error class, and raises nothing. And the shape check is a shortcut, not a rule of its own:
    what it refuses fails validation too, but for an object with more members than any event has, because its
    names repeat (validation would keep the last value of each)."""
    featurizer = Featurizer(StreamMetrics.create(), 16_384)
    seen: Counter[str] = Counter()

    @settings(
        max_examples=EVENT_FUZZ_CASES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(PAYLOADS, st.sampled_from([b"cust-00042", b"c1", None]))
    def case(raw, key):
        result = one(featurizer, raw, key)
        if any(o.topic == DLQ for o in result.out):
            error, _, _ = dead_letter(result)
            assert error in ERROR_CLASSES
            seen[error] += 1
        else:
            event = account_event_adapter.validate_json(raw)  # what was applied is a valid event
            assert [s.row["customer_id"] for s in result.scorable] == [event.customer_id]
            seen["applied"] += 1
        problem = shape_problem(raw)
        seen["shape refused" if problem else "shape passed"] += 1
        if problem is not None:
            try:
                account_event_adapter.validate_json(raw)
            except ValidationError:
                return
            names = [name for name, _ in json.loads(raw, object_pairs_hook=list)]
            assert "members" in problem and len(names) > MAX_MEMBERS and len(set(names)) < len(names), raw

    case()
    payloads = seen["shape refused"] + seen["shape passed"]
    record_property("event_fuzz_cases", payloads)
    print(f"event fuzz: {payloads} payloads, {sorted(seen.items())}")
    assert payloads >= EVENT_FUZZ_CASES
    assert {"applied", "ValidationError", "KeyMismatch", "shape refused", "shape passed"} <= set(seen)
