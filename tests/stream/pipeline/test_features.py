"""The shared feature logic: golden values, duplicates, order, size."""

import itertools
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas.events import AccountClosed, AutopayChanged, Payment, PlanChanged, Signup, SupportCall, Usage
from stream.pipeline.features import (
    DEDUP_RING,
    Admission,
    CustomerState,
    admit,
    apply,
    event_time,
    feature_values,
    features,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def history():
    c = "c1"
    return [
        Signup(event_id="e01", customer_id=c, ts=at(0), plan="basic", monthly_charges=30.0, has_autopay=False),
        Usage(event_id="e02", customer_id=c, ts=at(1), amount=10.0),
        Usage(event_id="e03", customer_id=c, ts=at(20), amount=5.0),
        Payment(event_id="e04", customer_id=c, ts=at(30), amount=30.0, status="failed"),
        AutopayChanged(event_id="e05", customer_id=c, ts=at(31), enabled=True),
        SupportCall(event_id="e06", customer_id=c, ts=at(45), reason="billing"),
        PlanChanged(event_id="e07", customer_id=c, ts=at(50), plan="premium", monthly_charges=95.0),
        Usage(event_id="e08", customer_id=c, ts=at(55), amount=2.0),
        SupportCall(event_id="e09", customer_id=c, ts=at(70)),
        Usage(event_id="e10", customer_id=c, ts=at(72), amount=1.5),
    ]


def replay(events):
    state = CustomerState()
    for ev in events:
        apply(state, ev)
    return state


def test_golden_feature_values():
    state = replay(history())
    assert feature_values(state, at(72).timestamp()) == {
        "tenure_months": 2.3655,
        "monthly_charges": 95.0,
        "has_autopay": 1,
        "support_calls_30d": 2,
        "failed_payments_90d": 1,
        "days_since_last_event": 2.0,
        "usage_30d": 3.5,
        "usage_trend": -0.2877,
        "plan": "premium",
    }


def test_golden_values_later_show_silence_and_window_expiry():
    state = replay(history())
    values = feature_values(state, at(130).timestamp())
    assert values["days_since_last_event"] == 58.0
    assert values["support_calls_30d"] == 0
    assert values["failed_payments_90d"] == 0
    assert values["usage_30d"] == 0.0


def test_feature_vector_carries_event_id_and_time():
    state = replay(history())
    fv = features(state, at(72), event_id="e10")
    assert (fv.event_id, fv.customer_id, fv.event_ts) == ("e10", "c1", at(72))


def test_duplicate_event_changes_nothing():
    events = history()
    state = replay(events)
    before = state.to_bytes()
    for ev in events:
        assert admit(state, ev.event_id, ev.ts.timestamp()) is not Admission.NEW
        apply(state, ev)
    assert state.to_bytes() == before


def test_order_does_not_matter_within_the_ring():
    events = history()
    expected = replay(events).to_bytes()
    rng = random.Random(3)
    for _ in range(20):
        shuffled = events[:]
        rng.shuffle(shuffled)
        assert replay(shuffled).to_bytes() == expected


def test_latest_value_follows_event_time_not_arrival():
    early = PlanChanged(event_id="a", customer_id="c", ts=at(5), plan="basic", monthly_charges=30.0)
    late = PlanChanged(event_id="b", customer_id="c", ts=at(9), plan="standard", monthly_charges=60.0)
    for order in itertools.permutations([early, late]):
        assert replay(order).plan == "standard"


def test_events_older_than_a_full_ring_are_too_late():
    state = CustomerState()
    for i in range(DEDUP_RING):
        apply(state, Usage(event_id=f"u{i}", customer_id="c", ts=at(10 + i), amount=1.0))
    old = Usage(event_id="old", customer_id="c", ts=at(1), amount=100.0)
    assert admit(state, old.event_id, old.ts.timestamp()) is Admission.TOO_LATE
    before = state.to_bytes()
    apply(state, old)
    assert state.to_bytes() == before


def test_state_stays_bounded_and_small():
    state = CustomerState()
    apply(state, Signup(event_id="s", customer_id="c000001", ts=at(0), plan="standard", monthly_charges=60.0))
    for day in range(1000):
        apply(state, Usage(event_id=f"u{day}", customer_id="c000001", ts=at(day + 0.5), amount=3.25))
        if day % 3 == 0:
            apply(state, SupportCall(event_id=f"s{day}", customer_id="c000001", ts=at(day + 0.7)))
        if day % 30 == 0:
            apply(
                state,
                Payment(event_id=f"p{day}", customer_id="c000001", ts=at(day + 0.9), amount=60.0, status="failed"),
            )
    assert len(state.usage) <= 60
    assert len(state.support_calls) <= 11
    assert len(state.failed_payments) <= 4
    assert len(state.recent) == DEDUP_RING
    assert len(state.to_bytes()) <= 1024


def test_state_round_trips_through_bytes():
    state = replay(history())
    assert CustomerState.from_bytes(state.to_bytes()) == state


# ``replay(history())`` as the first table format wrote it: an object, times in ms before ``l``.
FORMAT_1 = (
    b'{"c":"c1","l":1773446400000,"s":6220800000,"f":6220800000,"p":172800000,"x":null,"pl":"premium","m":95.0,'
    b'"pk":[1900800000,47431297323],"a":1,"ak":[3542400000,922434745981],"sc":[2332800000,172800000],'
    b'"fp":[3628800000],"u":[4094,5.0,4101,2.0,4105,1.5],"r":[6220800000,263524550453,6134400000,848675351965,'
    b"4492800000,248438765607,3628800000,552642741402,3542400000,922434745981,2332800000,805690514649,"
    b'1900800000,47431297323,1468800000,784589843442,172800000,819514666979,0,651491813043],"n":10}'
)


# ``replay(history())`` as the second format wrote it: an array, the ring as two lists of integers.
FORMAT_2 = (
    b'[2,"c1",1773446400.0,1767225600.0,1767225600.0,1773273600.0,null,"premium",95.0,[1771545600.0,47431297323],'
    b"true,[1769904000.0,922434745981],[1771113600.0,1773273600.0],[1769817600.0],[[4094,5.0],[4101,2.0],"
    b"[4105,1.5]],[1767225600000,1767312000000,1768953600000,1769817600000,1769904000000,1771113600000,"
    b"1771545600000,1771977600000,1773273600000,1773446400000],[263524550453,848675351965,248438765607,"
    b"552642741402,922434745981,805690514649,47431297323,784589843442,819514666979,651491813043],10]"
)


@pytest.mark.parametrize("written", [FORMAT_1, FORMAT_2], ids=["first", "second"])
def test_states_written_in_earlier_formats_are_still_read(written):
    state = replay(history())
    old = CustomerState.from_bytes(written)
    assert old == state
    assert old.to_bytes() == state.to_bytes()
    assert admit(old, "e05", at(31).timestamp()) is Admission.DUPLICATE


def test_the_ring_is_encoded_as_little_endian_64_bit_integers():
    import base64

    import orjson

    state = replay(history())
    encoded = orjson.loads(state.to_bytes())
    assert encoded[0] == 3
    raw = base64.b64decode(encoded[-2])
    values = [int.from_bytes(raw[i : i + 8], "little", signed=True) for i in range(0, len(raw), 8)]
    assert values == list(state.ring_ms) + list(state.ring_ids)
    assert len(state.to_bytes()) < len(FORMAT_2)


def test_a_ring_of_the_wrong_length_is_refused():
    import base64

    import orjson

    encoded = orjson.loads(replay(history()).to_bytes())
    encoded[-2] = base64.b64encode(b"\0" * 24).decode()
    with pytest.raises(ValueError, match="ring of 24 bytes"):
        CustomerState.from_bytes(orjson.dumps(encoded))


def test_a_decoded_state_still_recognizes_its_events():
    events = history()
    state = CustomerState.from_bytes(replay(events).to_bytes())
    for ev in events:
        assert admit(state, ev.event_id, ev.ts.timestamp()) is Admission.DUPLICATE
    assert admit(state, "new", at(73).timestamp()) is Admission.NEW


def test_an_unknown_state_format_is_refused():
    with pytest.raises(ValueError, match="unknown customer-state format 9"):
        CustomerState.from_bytes(b'[9,"c1"]')


def test_the_ring_orders_events_of_the_same_millisecond_by_id_hash_in_any_arrival_order():
    from stream.pipeline.features import event_hash

    same_time = [Usage(event_id=f"u{i}", customer_id="c1", ts=at(80), amount=1.0) for i in range(10)]
    events = [*history(), *same_time]
    expected = replay(events)
    ms = round(at(80).timestamp() * 1000)
    assert sorted(expected.recent) == expected.recent
    assert {(ms, event_hash(e.event_id)) for e in same_time} <= set(expected.recent)
    rng = random.Random(3)
    for _ in range(20):
        shuffled = same_time[:]
        rng.shuffle(shuffled)
        assert replay([*history(), *shuffled]).to_bytes() == expected.to_bytes()


def test_closure_is_recorded():
    state = replay([*history(), AccountClosed(event_id="z", customer_id="c1", ts=at(80))])
    assert state.closed_ts == at(80).timestamp()


def test_simulated_states_round_trip_and_apply_checked_agrees_with_admit_then_apply():
    from producers.simulator import SimConfig, Simulator
    from stream.pipeline.features import apply_checked

    checked: dict[str, CustomerState] = {}
    stepwise: dict[str, CustomerState] = {}
    verdicts = []
    for i, event in enumerate(Simulator(SimConfig(n_customers=50, days=120, seed=5)).events()):
        if i >= 6000:
            break
        for ev in (event, event) if i % 50 == 0 else (event,):  # a few duplicates too
            a = checked.setdefault(ev.customer_id, CustomerState())
            b = stepwise.setdefault(ev.customer_id, CustomerState())
            expected = admit(b, ev.event_id, event_time(ev.ts))
            apply(b, ev)
            verdicts.append(apply_checked(a, ev))
            assert verdicts[-1] is expected
    assert Admission.DUPLICATE in verdicts and Admission.NEW in verdicts
    assert checked == stepwise
    for state in checked.values():
        raw = state.to_bytes()
        assert CustomerState.from_bytes(raw) == state
        assert CustomerState.from_bytes(raw).to_bytes() == raw


def test_event_time_is_the_timestamp_rounded_to_the_millisecond_for_any_time():
    rng = random.Random(11)
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    checked = 0
    for _ in range(20_000):
        micro = rng.choice([0, 1000 * rng.randrange(1000), 500 + 1000 * rng.randrange(1000), rng.randrange(1_000_000)])
        ts = datetime.fromtimestamp(rng.randrange(0, 4_000_000_000), tz=rng.choice(zones)).replace(microsecond=micro)
        assert event_time(ts) == round(ts.timestamp(), 3), ts
        checked += micro % 1000 == 0
    assert checked > 5_000  # the whole-millisecond path was taken, not only the rounding one


def _mixed_stream(seed: int, customers: int, n: int):
    """Events of every type for a few customers, partly out of order, with duplicates and sub-ms times."""
    rng = random.Random(seed)
    plans = ["basic", "standard", "premium"]
    clock = [0.0] * customers
    events = []
    for i in range(n):
        c = rng.randrange(customers)
        clock[c] += rng.expovariate(1 / 2.5)  # days
        when = clock[c] - (rng.uniform(0, 40) if rng.random() < 0.1 else 0.0)  # some arrive late
        ts = T0 + timedelta(days=when, microseconds=rng.choice([0, 0, 0, rng.randrange(1_000_000)]))
        base = {"event_id": f"e{seed}-{i}", "customer_id": f"c{c}", "ts": ts}
        kind = rng.choices(range(7), weights=[3, 2, 8, 4, 20, 2, 1])[0]
        if kind == 0:
            ev = Signup(
                **base,
                plan=rng.choice(plans),
                monthly_charges=round(rng.uniform(10, 120), 2),
                has_autopay=rng.random() < 0.5,
            )
        elif kind == 1:
            ev = PlanChanged(**base, plan=rng.choice(plans), monthly_charges=round(rng.uniform(10, 120), 2))
        elif kind == 2:
            ev = Payment(**base, amount=round(rng.uniform(5, 150), 2), status=rng.choice(["ok", "failed"]))
        elif kind == 3:
            ev = SupportCall(**base, reason=rng.choice(["", "billing", "outage"]))
        elif kind == 4:
            ev = Usage(**base, amount=rng.choice([round(rng.uniform(0, 50), 3), rng.uniform(0, 1e4), 0.0]))
        elif kind == 5:
            ev = AutopayChanged(**base, enabled=rng.random() < 0.5)
        else:
            ev = AccountClosed(**base)
        events.append(ev)
        if rng.random() < 0.05:
            events.append(ev)  # delivered twice
    return events


def _trace(events) -> str:
    """SHA-256 of every verdict, feature vector (at the event, and 3 and 45 days later) and state encoding."""
    import hashlib

    import orjson

    from stream.pipeline.features import apply_checked

    digest = hashlib.sha256()
    states: dict[str, CustomerState] = {}
    for ev in events:
        state = states.setdefault(ev.customer_id, CustomerState(customer_id=ev.customer_id))
        verdict = apply_checked(state, ev, event_time(ev.ts))
        digest.update(verdict.value.encode())
        if verdict is Admission.NEW:
            last = state.last_ts
            for later in (0.0, 3 * 86_400.0, 45 * 86_400.0):
                digest.update(orjson.dumps(feature_values(state, last + later), option=orjson.OPT_SORT_KEYS))
            digest.update(state.to_bytes())
    return digest.hexdigest()


# Recorded from the feature logic as defined; a change here changes what training and serving compute.
TRACE_DIGESTS = {
    (1, 12, 6000): "24fa678160946059bfe42f77fccdf1b5b2de74e16633c3172e2fb5953e666aba",
    (2, 300, 8000): "49bb40b0fc872db19485d3c43c4fe421abc90f2bd4c5e34255917ae8df4a7e51",
}


@pytest.mark.parametrize("seed, customers, n", list(TRACE_DIGESTS))
def test_the_feature_logic_computes_exactly_what_it_did(seed, customers, n):
    """Every verdict, feature value and state byte of mixed streams, bit for bit."""
    assert _trace(_mixed_stream(seed, customers, n)) == TRACE_DIGESTS[(seed, customers, n)]


@pytest.mark.parametrize("digits", [3, 4])
def test_the_features_rounding_gives_rounds_float_for_every_value(digits):
    import math
    import struct

    from stream.pipeline.features import rounder

    rounded = rounder(digits)
    rng = random.Random(digits)
    scale = 10**digits
    values = [
        0.0,
        -0.0,
        math.inf,
        -math.inf,
        math.nan,
        5e-5,
        -5e-5,
        0.00005,
        1e300,
        -1e300,
        5e11 / scale,
        4.9e11 / scale,
    ]
    values += [rng.uniform(-20, 200) for _ in range(50_000)]
    values += [rng.uniform(-1, 1) * 10.0 ** rng.randint(-9, 14) for _ in range(50_000)]
    # exact and near ties: k + 1/2 units of the last digit, and their float neighbours
    for _ in range(20_000):
        tie = (rng.randrange(-(10**9), 10**9) + 0.5) / scale
        values += [tie, math.nextafter(tie, math.inf), math.nextafter(tie, -math.inf)]
    values += [i / (2 * scale) for i in range(-5000, 5000)]

    def bits(x: float) -> bytes:
        return struct.pack("<d", x)

    differing = [x for x in values if bits(rounded(x)) != bits(round(x, digits))]
    assert differing == []
