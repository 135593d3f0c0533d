"""The seeded customer simulator: the world and its churn hazard, the drift scenarios, the event stream, pacing.

May import ``schemas`` and ``stream.pipeline``; inside, imports go one way:
pacing | engine > config > scenarios, and engine > world.
"""

from producers.simulator.config import SimConfig
from producers.simulator.engine import Simulator
from producers.simulator.pacing import paced
from producers.simulator.scenarios import (
    ALL_SCENARIOS,
    SCENARIOS,
    SEASON_DAYS,
    SEASON_PEAK_DAYS,
    SEASON_USAGE,
    SHAPES,
)
from producers.simulator.world import FLEX_PLAN, HAZARD, PLAN_PRICES, Hazard

__all__ = [
    "SCENARIOS",
    "SHAPES",
    "ALL_SCENARIOS",
    "SEASON_DAYS",
    "SEASON_PEAK_DAYS",
    "SEASON_USAGE",
    "PLAN_PRICES",
    "FLEX_PLAN",
    "Hazard",
    "HAZARD",
    "SimConfig",
    "Simulator",
    "paced",
]
