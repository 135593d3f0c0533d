"""Production and the challenger measured on exactly the same matured labels.

Every batch both models scored feeds one :class:`ShadowComparison`: the customer, event
time and partition of each vector, with each alias's probability. Two
:class:`~stream.drift.detectors.ConceptDriftMonitor` joins receive the same scores (but
the probability), the same labels and the same partition clocks, so they mature the same
events in the same order: their rolling windows hold the same events, and what differs
between their ROC AUC, log loss and Brier score is the model alone. Vectors production
scored while no challenger was loaded are not in it. Plain Python: no Faust, no Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stream.drift.detectors import ConceptDriftMonitor

PRODUCTION = "production"
MEASURES = ("roc_auc", "log_loss", "brier")


class ShadowComparison:
    """Both aliases' rolling performance on the same matured events, for one pair of versions."""

    def __init__(
        self,
        horizon_s: float,
        versions: Mapping[str, str],
        window: int = 5000,
    ) -> None:
        if PRODUCTION not in versions or len(versions) != 2:
            raise ValueError(f"a comparison is of production and one challenger, got {sorted(versions)}")
        self.versions = dict(versions)
        self.joins = {alias: ConceptDriftMonitor(horizon_s, window=window) for alias in versions}

    @property
    def challenger(self) -> str:
        """The challenger's alias."""
        return next(alias for alias in self.versions if alias != PRODUCTION)

    def observe(
        self,
        customer_ids: Sequence[str],
        event_ts: Sequence[float],
        probabilities: Mapping[str, Sequence[float]],
        partitions: Sequence[int],
    ) -> None:
        """A batch both scored: per vector its customer, event time (epoch s) and partition, and each
        alias's probabilities in the same order; then mature what the batch's clocks make due."""
        clocks: dict[int, float] = {}
        for ts, part in zip(event_ts, partitions):
            if ts > clocks.get(part, float("-inf")):
                clocks[part] = ts
        for alias, join in self.joins.items():
            add = join.add_score
            for customer_id, ts, p, part in zip(customer_ids, event_ts, probabilities[alias], partitions):
                add(customer_id, ts, float(p), part)
            for part, clock in clocks.items():
                join.advance(clock, part)

    def label(self, customer_id: str, closed_ts: float, partition: int = 0) -> None:
        """Ground truth for both joins: the customer closed the account at ``closed_ts``."""
        for join in self.joins.values():
            join.add_label(customer_id, closed_ts, partition)

    @property
    def labels(self) -> int:
        """Matured labels since the comparison began (the same for both aliases)."""
        return self.joins[PRODUCTION].matured

    def report(self) -> dict[str, dict[str, float]]:
        """Per alias: ``roc_auc``, ``log_loss`` and ``brier`` over the rolling window, and ``labels``
        (matured since the comparison began); empty while no label has matured."""
        if not self.labels:
            return {}
        out: dict[str, dict[str, float]] = {}
        for alias, join in self.joins.items():
            performance = join.performance()
            out[alias] = {name: float(performance[name]) for name in MEASURES}
            out[alias]["labels"] = float(join.matured)
        return out
