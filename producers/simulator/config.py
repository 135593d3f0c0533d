"""What to simulate: :class:`SimConfig` (seed, population, days, start, scenario and its onset)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from producers.simulator.scenarios import ALL_SCENARIOS


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. Equal configs give identical event streams."""

    n_customers: int = 2000
    days: int = 180
    seed: int = 7
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    scenario: str | None = None
    onset_day: int = 90
    id_prefix: str = ""

    def __post_init__(self) -> None:
        if self.scenario is not None and self.scenario not in ALL_SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; allowed: {', '.join(ALL_SCENARIOS)} (or None)")
        if self.n_customers < 0:
            raise ValueError(f"n_customers must be >= 0, got {self.n_customers}")
        if self.days < 0:
            raise ValueError(f"days must be >= 0, got {self.days}")
        if self.onset_day < 0:
            raise ValueError(f"onset_day must be >= 0, got {self.onset_day}")
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")

    def to_json(self) -> str:
        """This config as JSON; :meth:`from_json` rebuilds it (equal configs, equal worlds).

        >>> config = SimConfig(seed=3, scenario="new_plan")
        >>> SimConfig.from_json(config.to_json()) == config
        True
        """
        return json.dumps({**asdict(self), "start": self.start.isoformat()})

    @classmethod
    def from_json(cls, text: str) -> SimConfig:
        fields = json.loads(text)
        return cls(**{**fields, "start": datetime.fromisoformat(fields["start"])})
