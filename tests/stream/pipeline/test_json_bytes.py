"""Records and table values are allocated for their length, not for orjson's buffer."""

import gc
import tracemalloc

import numpy as np
import orjson
import pytest
from support.events import messages

from stream.metrics import StreamMetrics
from stream.pipeline.features import CustomerState
from stream.pipeline.featurize import Featurizer
from stream.pipeline.json_bytes import json_bytes
from stream.serving.model_holder import LoadedModel
from stream.serving.scoring import Scorer

pytestmark = pytest.mark.unit

# A bytes object's header (33 bytes), the allocator's rounding, and what a call leaves
# behind beside its result (a few pandas objects, in the scorer's case). orjson's own
# buffer is 1 KiB or more: a value of a few hundred bytes in it is far past this.
SLACK = 128


def allocated_per_item(make, n: int = 400) -> float:
    """Bytes still allocated per item while ``make``'s ``n`` results are kept."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [make(i) for i in range(n)]
        gc.collect()  # what the calls left in reference cycles is not theirs to keep
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(kept) == n
    return (after - before - 8 * n) / n  # less the list's own pointers


def test_json_bytes_is_orjsons_document_in_an_object_of_its_size():
    doc = {"customer_id": "c000042", "probability": 0.123456789, "risk_band": "low", "n": [1, 2.5, None]}
    assert json_bytes(doc) == orjson.dumps(doc)
    assert type(json_bytes(doc)) is bytes
    size = len(json_bytes(doc))
    assert allocated_per_item(lambda i: json_bytes({**doc, "n": i})) <= size + SLACK


def test_the_measure_sees_an_oversized_buffer():
    """orjson's own result keeps its buffer (4 KiB since 3.12, 1 KiB before): the check above can fail."""
    doc = {"customer_id": "c000042", "probability": 0.123456789}
    assert allocated_per_item(lambda i: orjson.dumps({**doc, "n": i})) >= 1024


def test_states_features_and_scores_are_kept_at_their_own_size():
    featurizer = Featurizer(StreamMetrics.create(), 10_000)
    result = featurizer.process(messages(400), lambda key: None)
    states = list(result.dirty.values())
    assert states

    state_size = max(len(state.to_bytes()) for state in states)
    assert allocated_per_item(lambda i: states[i % len(states)].to_bytes()) <= state_size + SLACK

    again = Featurizer(StreamMetrics.create(), 10_000)
    batch = messages(400)
    feature_size = max(len(o.value) for o in result.out)
    per_event = allocated_per_item(lambda i: again.process(batch[i : i + 1], lambda key: None).out[0].value)
    assert per_event <= feature_size + SLACK

    class Constant:
        def predict_proba(self, frame):
            return np.tile([0.25, 0.75], (len(frame), 1))

    model = LoadedModel("churn", "7", Constant())
    scorer = Scorer(StreamMetrics.create())
    scored = scorer.score(result.scorable, model)
    score_size = max(len(o.value) for o in scored.out)
    per_score = allocated_per_item(lambda i: scorer.score(result.scorable[i : i + 1], model).out[0].value)
    assert per_score <= score_size + SLACK
    assert CustomerState.from_bytes(states[0].to_bytes()) == states[0]
