"""The challenger: a second model scored in shadow beside production, never served.

A version under ``CHURN_SHADOW_ALIAS`` (``challenger``) is loaded with the same guards
as production's (signature, checksum, load in an executor, hot swap on ``model-events``
and the alias poll) by a :class:`ChallengerHolder` of its own, with its own lock: a
challenger that is slow or fails to load never holds production back. It has no
"keep the old one" rule: once the alias names no version (the challenger was promoted
or dropped) the worker stops scoring in shadow at once.

:class:`ShadowScorer` writes records shaped and keyed like production's (a
``ChurnScore`` with the challenger's version) to ``churn-scores-shadow``, with two more
headers: ``score.shadow`` (``true``) and ``model.alias``. They never go to
``churn-scores``.
"""

from __future__ import annotations

import logging

from stream.metrics import StreamMetrics
from stream.serving.model_holder import LoadedModel, ModelHolder, RegistrySource
from stream.serving.scoring import Scorer
from stream.settings import Settings

log = logging.getLogger(__name__)

SHADOW_SCORES = "scores-shadow"
SHADOW_HEADER = "score.shadow"
ALIAS_HEADER = "model.alias"


class ChallengerHolder(ModelHolder):
    """Holds the challenger scored in shadow: the production holder's guards, its own metrics, and empty
    as soon as the alias names no version."""

    refusal_stops = False  # production decides whether the worker can run

    def __init__(self, settings: Settings, metrics: StreamMetrics, source: RegistrySource | None = None) -> None:
        super().__init__(settings, metrics, source or RegistrySource(settings, alias=settings.shadow_alias))
        self.alias = settings.shadow_alias

    def swap(self, model: LoadedModel) -> None:
        old = self.current
        self.current = model
        shadow = self.metrics.shadow
        shadow.swaps.inc()
        try:
            shadow.model_version.set(float(model.version))
        except ValueError:
            pass
        log.info(
            "scoring %s version %s in shadow as @%s (was %s)",
            model.name,
            model.version,
            self.alias,
            old.version if old else "none",
        )

    def failed(self, reason: str) -> None:
        self.metrics.shadow.load_failures.labels(reason).inc()

    def absent(self) -> bool:
        self.clear()
        return False

    def clear(self, version: str | None = None) -> None:
        """Stop scoring in shadow (only if ``version`` is the challenger's, when given)."""
        current = self.current
        if current is None or (version is not None and current.version != version):
            return
        self.current = None
        self.metrics.shadow.model_version.set(0.0)
        log.info("stopped scoring %s version %s in shadow", current.name, current.version)


class ShadowScorer(Scorer):
    """Scores a batch with the challenger: records for ``churn-scores-shadow``, counted apart from production's."""

    topic = SHADOW_SCORES

    def __init__(
        self, metrics: StreamMetrics, alias: str, risk_medium: float = 0.3, risk_high: float = 0.6, reasons: int = 3
    ) -> None:
        super().__init__(metrics, risk_medium, risk_high, reasons)
        self.headers = ((SHADOW_HEADER, b"true"), (ALIAS_HEADER, alias.encode()))

    def _record(self, version: str, latencies: list[float]) -> None:
        counter = self._by_version.get(version)
        if counter is None:
            counter = self._by_version[version] = self.metrics.shadow.scores_out.labels(version)
        counter.inc(len(latencies))
