"""The featurize step on its own: table bytes, duplicates and the dead-letter path."""

import pytest
from support.events import messages

from stream.metrics import StreamMetrics
from stream.pipeline.features import CustomerState
from stream.pipeline.featurize import DLQ, FEATURES, Featurizer
from stream.pipeline.messages import Inbound

pytestmark = pytest.mark.unit


def test_each_changed_state_comes_with_the_bytes_of_its_final_value():
    featurizer = Featurizer(StreamMetrics.create(), 10_000)
    batch = messages(400)
    result = featurizer.process(batch, lambda key: None)
    assert len(result.scorable) == 400
    assert result.encoded.keys() == result.dirty.keys()
    assert len(result.dirty) < 400  # several events per customer: the bytes are of the last change
    for key, state in result.dirty.items():
        assert result.encoded[key] == state.to_bytes()
        assert CustomerState.from_bytes(result.encoded[key]) == state


def test_a_repeated_batch_changes_nothing_and_bad_payloads_are_dead_lettered():
    featurizer = Featurizer(StreamMetrics.create(), 10_000)
    batch = messages(100)
    first = featurizer.process(batch, lambda key: None)
    states = {key: CustomerState.from_bytes(raw) for key, raw in first.encoded.items()}
    bad = Inbound(b"c1", b'{"event_type": "usage"}', "account-events", 0, 100, 2_000)
    again = featurizer.process([*batch, bad], states.get)
    assert again.dirty == {} and again.encoded == {} and again.scorable == []
    assert [o.topic for o in again.out] == [DLQ]
    assert {o.topic for o in first.out} == {FEATURES}
