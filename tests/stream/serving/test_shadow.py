"""The challenger in shadow: its holder, its scorer and the batch step that adds its scores to production's."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry
from support.events import messages

from stream.app.featurize import FeaturizeState
from stream.errors import ModelLoadError
from stream.kafka.partitioning import HomePartitions
from stream.metrics import StreamMetrics
from stream.pipeline.featurize import Featurizer
from stream.serving.model_holder import LoadedModel
from stream.serving.scoring import SCORES, Scorer
from stream.serving.shadow import SHADOW_SCORES, ChallengerHolder, ShadowScorer
from stream.settings import Settings

pytestmark = pytest.mark.unit


class Fixed:
    """A pipeline whose probability is a fixed number (or that raises)."""

    def __init__(self, p: float | None) -> None:
        self.p = p

    def predict_proba(self, frame):
        if self.p is None:
            raise RuntimeError("the challenger cannot score")
        return np.column_stack([np.full(len(frame), 1 - self.p), np.full(len(frame), self.p)])


class Source:
    """A registry whose challenger alias names ``alias`` (None: no version), with a version that fails to load."""

    def __init__(self) -> None:
        self.alias: str | None = "7"

    def version_for_alias(self) -> str | None:
        return self.alias

    def load(self, version: str, expected_checksum: str | None = None) -> LoadedModel:
        if version == "bad":
            raise ModelLoadError("signature does not match FeatureVector")
        return LoadedModel("churn-model", version, Fixed(0.9))


def sample(metrics: StreamMetrics, name: str, labels: dict | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


@pytest.fixture
def metrics() -> StreamMetrics:
    return StreamMetrics.create(CollectorRegistry())


@pytest.fixture
def batch():
    return Featurizer(StreamMetrics.create(), 10_000).process(messages(300), lambda key: None)


async def test_the_challenger_holder_loads_refuses_and_clears_without_touching_production(metrics):
    source = Source()
    holder = ChallengerHolder(Settings(), metrics, source=source)
    assert await holder.refresh()
    assert holder.current is not None and holder.current.version == "7"
    assert sample(metrics, "churn_shadow_model_version") == 7.0
    assert sample(metrics, "churn_model_version") == 0.0  # production's gauge is not the challenger's
    assert sample(metrics, "churn_model_swaps_total") == 0.0

    assert not await holder.refresh("bad")  # refused: counted as a shadow failure, the challenger stays
    assert holder.current.version == "7"
    assert sample(metrics, "churn_shadow_load_failures_total", {"reason": "incompatible"}) == 1.0
    assert sample(metrics, "churn_model_load_failures_total", {"reason": "incompatible"}) is None

    holder.clear("8")  # not the challenger: nothing happens
    assert holder.current is not None
    source.alias = None  # promoted or dropped: the alias names no version, shadow scoring stops
    assert not await holder.refresh()
    assert holder.current is None and sample(metrics, "churn_shadow_model_version") == 0.0


def test_shadow_records_go_to_the_shadow_topic_shaped_like_production_with_the_alias(metrics, batch):
    production = Scorer(metrics).score(batch.scorable, LoadedModel("churn-model", "3", Fixed(0.2)))
    shadow = ShadowScorer(metrics, "challenger").score(batch.scorable, LoadedModel("churn-model", "7", Fixed(0.9)))
    assert {o.topic for o in production.out} == {SCORES} and {o.topic for o in shadow.out} == {SHADOW_SCORES}
    for mine, theirs in zip(production.out, shadow.out):
        assert mine.key == theirs.key
        a, b = orjson.loads(mine.value), orjson.loads(theirs.value)
        assert set(a) == set(b) and a["event_id"] == b["event_id"]
        assert (a["model_version"], b["model_version"]) == ("3", "7")
        assert ("score.shadow", b"true") in theirs.headers and ("model.alias", b"challenger") in theirs.headers
        assert not any(name in ("score.shadow", "model.alias") for name, _ in mine.headers)
    n = len(batch.scorable)
    assert sample(metrics, "churn_scores_out_total", {"model_version": "3"}) == n
    assert sample(metrics, "churn_scores_out_total", {"model_version": "7"}) is None
    assert sample(metrics, "churn_shadow_scores_out_total", {"model_version": "7"}) == n
    assert sample(metrics, "churn_score_batch_size_count") == 1.0  # the shadow batch is not production's


def state_with(metrics: StreamMetrics, challenger: LoadedModel | None):
    """The parts of a FeaturizeState its shadow step reads."""
    state = SimpleNamespace(
        challenger=SimpleNamespace(current=challenger, alias="challenger"),
        shadow_scorer=ShadowScorer(metrics, "challenger"),
        metrics=metrics,
        comparison=None,
        compared_labels=-1,
        compared_at=0.0,
        shadow_failed=set(),
        drift_config=SimpleNamespace(horizon_s=30 * 86_400.0, concept_window=5000),
        featurizer=Featurizer(metrics, 10_000, HomePartitions(4)),
    )
    state.compare = lambda *args: FeaturizeState.compare(state, *args)
    state.flush_comparison = lambda: FeaturizeState.flush_comparison(state)
    state.export_comparison = lambda comparison: FeaturizeState.export_comparison(state, comparison)
    return state


def test_no_challenger_no_shadow_work_and_a_failing_one_leaves_production_alone(metrics, batch):
    model = LoadedModel("churn-model", "3", Fixed(0.2))
    scored = Scorer(metrics).score(batch.scorable, model)

    none = state_with(metrics, None)
    assert FeaturizeState.shadow(none, batch.scorable, model, scored, batch) == []

    failing = state_with(metrics, LoadedModel("churn-model", "8", Fixed(None)))
    assert FeaturizeState.shadow(failing, batch.scorable, model, scored, batch) == []
    assert FeaturizeState.shadow(failing, batch.scorable, model, scored, batch) == []
    assert sample(metrics, "churn_shadow_scoring_failures_total") == 2.0
    assert failing.shadow_failed == {"8"}  # logged once per version

    working = state_with(metrics, LoadedModel("churn-model", "7", Fixed(0.9)))
    out = FeaturizeState.shadow(working, batch.scorable, model, scored, batch)
    assert len(out) == len(scored.out) and {o.topic for o in out} == {SHADOW_SCORES}
    assert working.comparison is not None and working.comparison.versions == {"production": "3", "challenger": "7"}
