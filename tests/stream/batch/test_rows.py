"""The batch's pure core: which customers, evaluated when, scored exactly as the stream scores them."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest
from support.events import START, sample_events
from support.models import fitted

from schemas.events import AccountClosed, Signup, SupportCall
from schemas.features import FEATURE_NAMES
from stream.batch.output import SCHEMA, ParquetSink, arrow_table, score_records
from stream.batch.rows import (
    AFTER_AS_OF,
    CLOSED,
    NO_EVENT,
    UNDECODABLE,
    evaluation_time,
    featurize,
    score,
)
from stream.batch.run import BatchOptions, run_batch
from stream.metrics import StreamMetrics
from stream.pipeline.features import CustomerState, StateView, apply, feature_values, rounder
from stream.pipeline.messages import Scorable
from stream.serving.linear_path import round_array
from stream.serving.model_holder import LoadedModel
from stream.serving.scoring import Scorer

pytestmark = pytest.mark.unit

DAY = 86_400.0


def states(n_events: int = 3000, customers: int = 120, seed: int = 4) -> dict[str, CustomerState]:
    out: dict[str, CustomerState] = {}
    for event in sample_events(n_events, customers, seed):
        apply(out.setdefault(event.customer_id, CustomerState(customer_id=event.customer_id)), event)
    return out


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    loaded = LoadedModel("churn-model", "7", fitted())
    assert loaded.fast is not None
    return loaded


def test_a_view_of_stored_bytes_has_the_features_of_the_full_state():
    for state in states().values():
        raw = state.to_bytes()
        view = StateView.from_bytes(raw)
        assert isinstance(view, StateView)
        full = CustomerState.from_bytes(raw)
        for at in (full.last_ts, full.last_ts + 3 * DAY, full.last_ts + 41.5 * DAY):
            assert feature_values(view, at) == feature_values(full, at)


def test_without_an_as_of_each_customer_is_its_latest_vector_and_closed_ones_are_skipped():
    base = states()
    closed = {c for c, s in base.items() if s.closed_ts is not None}
    assert closed and len(closed) < len(base)
    chunk = featurize([s.to_bytes() for s in base.values()], None)
    assert set(chunk.customer_ids) == set(base) - closed
    assert chunk.skipped == {CLOSED: len(closed)}
    for i, customer in enumerate(chunk.customer_ids):
        state = base[customer]
        assert chunk.times[i] == state.last_ts
        assert {name: chunk.columns[name][i] for name in FEATURE_NAMES} == feature_values(state, state.last_ts)


def test_an_as_of_advances_quiet_customers_and_skips_what_it_cannot_see():
    quiet = CustomerState(customer_id="quiet")
    apply(
        quiet,
        Signup(event_id="q1", customer_id="quiet", ts=START, plan="basic", monthly_charges=20.0, has_autopay=False),
    )
    apply(quiet, SupportCall(event_id="q2", customer_id="quiet", ts=START + timedelta(days=2), reason="billing"))
    later = CustomerState(customer_id="later")
    apply(
        later,
        Signup(
            event_id="l1",
            customer_id="later",
            ts=START + timedelta(days=9),
            plan="basic",
            monthly_charges=20.0,
            has_autopay=False,
        ),
    )
    straddles = CustomerState(customer_id="straddles")
    apply(
        straddles,
        Signup(event_id="s1", customer_id="straddles", ts=START, plan="basic", monthly_charges=20.0, has_autopay=False),
    )
    apply(straddles, SupportCall(event_id="s2", customer_id="straddles", ts=START + timedelta(days=8), reason=""))
    gone = CustomerState(customer_id="gone")
    apply(
        gone, Signup(event_id="g1", customer_id="gone", ts=START, plan="basic", monthly_charges=20.0, has_autopay=False)
    )
    apply(gone, AccountClosed(event_id="g2", customer_id="gone", ts=START + timedelta(days=1), reason="price"))
    as_of = (START + timedelta(days=5)).timestamp()

    chunk = featurize([quiet, later, straddles, gone, CustomerState(customer_id="empty"), b"[99]", b"not json"], as_of)

    assert chunk.customer_ids == ["quiet"] and chunk.times == [as_of]
    assert chunk.skipped == {NO_EVENT: 2, AFTER_AS_OF: 1, CLOSED: 1, UNDECODABLE: 2}
    assert chunk.columns["days_since_last_event"] == [3.0]  # the silence so far, not the one before the last event
    assert chunk.columns["support_calls_30d"] == [1]
    assert evaluation_time(quiet, as_of) == (as_of, "")


def test_a_chunk_scores_as_the_stream_scores_each_vector(model):
    base = states()
    chunk = featurize(list(base.values()), None)
    scored = score(model, chunk, 3, 0.3, 0.6)
    rows = []
    for i, customer in enumerate(chunk.customer_ids):
        row = {name: chunk.columns[name][i] for name in FEATURE_NAMES}
        rows.append(
            Scorable(customer.encode(), {**row, "customer_id": customer, "event_id": "e", "event_ts": "t"}, 0, 0)
        )
    # The stream scores whatever batches form; a batch row's score must not depend on its neighbours.
    stream = Scorer(StreamMetrics.create(), 0.3, 0.6, 3).score(rows[::-1], model).rows
    expected = {
        r["customer_id"]: r
        for r in (orjson.loads(o.value) for o in Scorer(StreamMetrics.create(), 0.3, 0.6, 3).score(rows, model).out)
    }
    assert len(stream) == len(chunk)
    table = arrow_table(scored).to_pylist()
    assert table and len(table) == len(chunk)
    for got in table:
        want = expected[got["customer_id"]]
        assert got["probability"] == want["probability"]
        assert got["risk_band"] == want["risk_band"]
        assert [
            (r["feature"], r["value"] if r["category"] is None else r["category"], r["contribution"])
            for r in got["reasons"]
        ] == [(r["feature"], r["value"], r["contribution"]) for r in want["reasons"]]
        assert (got["model_name"], got["model_version"]) == ("churn-model", "7")


def test_published_records_are_churn_scores_marked_batch(model):
    from schemas.outputs import ChurnScore

    chunk = featurize(list(states().values()), None)
    records = score_records(score(model, chunk, 3, 0.3, 0.6), 1_800_000_000.0)
    assert len(records) == len(chunk)
    for (key, value, headers), customer, at in zip(records, chunk.customer_ids, chunk.times):
        parsed = ChurnScore.model_validate_json(value)
        assert key == customer.encode() and parsed.customer_id == customer
        assert parsed.event_id == f"{customer}@{int(at)}" and parsed.event_ts.timestamp() == at
        assert dict(headers)["score.reason"] == b"batch" and dict(headers)["model.version"] == b"7"
        assert len(parsed.reasons or []) == 3


def test_a_model_without_exact_reasons_writes_none(tmp_path):
    model = LoadedModel("churn-model", "2", fitted("hist_gradient_boosting", n=200))
    assert model.fast is None
    scored = score(model, featurize(list(states().values()), None), 3, 0.3, 0.6)
    assert scored.picked is None
    assert all(row["reasons"] is None for row in arrow_table(scored).to_pylist())


def test_round_array_is_the_streams_rounding_to_the_bit():
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [
            rng.normal(0, 2, 20_000),
            rng.normal(0, 1e-6, 2_000),  # near zero, where the sign of a rounded zero is kept
            np.array([0.5e-6, -0.5e-6, 2.5e-6, 1.0000005, 0.0, -0.0, 1e12, np.inf, -np.inf]),
            np.round(rng.normal(0, 1, 2_000), 7),  # many exact halves of the 6th decimal
        ]
    )
    six = rounder(6)
    got = round_array(values, 6)
    want = np.array([six(float(v)) for v in values])
    assert got.tobytes() == want.tobytes()


def test_chunks_become_row_groups_of_one_file_with_the_stable_schema(model, tmp_path):
    base = states(6000, 400, seed=9)
    items = [s.to_bytes() for s in base.values()]
    path = tmp_path / "scores.parquet"
    summary = run_batch(items, model, ParquetSink(path), BatchOptions(chunk_rows=97))
    file = pq.ParquetFile(path)
    assert file.schema_arrow == SCHEMA
    assert file.metadata.num_rows == summary.rows == len(base) - summary.skipped[CLOSED]
    assert summary.customers == len(base)
    sizes = [file.metadata.row_group(i).num_rows for i in range(file.metadata.num_row_groups)]
    assert summary.chunks == file.metadata.num_row_groups == -(-len(base) // 97)
    assert max(sizes) <= 97
    whole = file.read()
    one_chunk = arrow_table(score(model, featurize(items, None), 3, 0.3, 0.6))
    assert whole.equals(one_chunk)  # chunking changes nothing but the row groups
    assert not (tmp_path / "scores.parquet.partial").exists()


def test_a_failed_run_leaves_no_file(model, tmp_path):
    def broken():
        yield from (s.to_bytes() for s in states().values())
        raise RuntimeError("the source broke")

    path = tmp_path / "scores.parquet"
    with pytest.raises(RuntimeError):
        run_batch(broken(), model, ParquetSink(path), BatchOptions(chunk_rows=10))
    assert not path.exists() and not (tmp_path / "scores.parquet.partial").exists()
