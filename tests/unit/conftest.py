"""Shared fixtures of the unit tests."""

from __future__ import annotations

import pytest

from training.config import DEFAULT_CONFIG, load_config
from training.train import TrainResult, train


@pytest.fixture(scope="session")
def bootstrap_result() -> TrainResult:
    """The committed bootstrap config, trained once per session (about 30 s)."""
    return train(load_config(DEFAULT_CONFIG))
