"""The serving model's age: ``churn_model_registered_timestamp_seconds`` is set when a version is swapped in."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from stream.metrics import StreamMetrics
from stream.serving.model_holder import LoadedModel, ModelHolder, registered_at
from stream.settings import Settings

pytestmark = pytest.mark.unit

GAUGE = "churn_model_registered_timestamp_seconds"


class Constant:
    def predict_proba(self, frame):
        raise NotImplementedError


class FakeClient:
    """The part of MlflowClient the source reads here: a version with its creation time in milliseconds."""

    def __init__(self) -> None:
        self.versions = {
            "1": SimpleNamespace(version="1", creation_timestamp=1_700_000_000_123),
            "2": SimpleNamespace(version="2", creation_timestamp=1_700_086_400_500),
            "3": SimpleNamespace(version="3", creation_timestamp=None),
        }

    def get_model_version(self, name: str, version: str):
        return self.versions[version]


class FakeSource:
    """A registry source that builds each version from the fake client's ModelVersion."""

    def __init__(self) -> None:
        self.client = FakeClient()
        self.alias = "1"

    def version_for_alias(self) -> str:
        return self.alias

    def load(self, version: str, expected_checksum: str | None = None) -> LoadedModel:
        mv = self.client.get_model_version("churn-model", version)
        return LoadedModel("churn-model", version, Constant(), registered_at=registered_at(mv))


def test_registered_at_is_mlflows_creation_time_in_seconds():
    assert registered_at(SimpleNamespace(creation_timestamp=1_700_000_000_123)) == pytest.approx(1_700_000_000.123)
    assert registered_at(SimpleNamespace(creation_timestamp=None)) is None
    assert registered_at(SimpleNamespace()) is None


async def test_the_gauge_follows_the_version_swapped_in():
    metrics = StreamMetrics.create(CollectorRegistry())
    source = FakeSource()
    holder = ModelHolder(Settings(), metrics, source=source)
    assert metrics.registry.get_sample_value(GAUGE) == 0.0  # nothing served yet

    assert await holder.refresh()
    assert metrics.registry.get_sample_value(GAUGE) == pytest.approx(1_700_000_000.123)
    assert not await holder.refresh()  # the same version: no swap, the same value
    assert metrics.registry.get_sample_value(GAUGE) == pytest.approx(1_700_000_000.123)

    source.alias = "2"
    assert await holder.refresh()
    assert metrics.registry.get_sample_value(GAUGE) == pytest.approx(1_700_086_400.5)

    # A version whose creation time is unknown does not keep the previous version's.
    assert await holder.refresh("3")
    assert math.isnan(metrics.registry.get_sample_value(GAUGE))
