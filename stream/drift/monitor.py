"""One worker's drift monitor: feature and score windows, river detectors, concept drift.

Fed by the score agent (feature rows and their scores, batch by batch) and by the
labels agent; returns :class:`~schemas.outputs.DriftAlert` objects for the drift
agent to publish. Plain Python: no Faust, no Kafka.

Each worker monitors the partitions it owns. Keys are spread uniformly by the
murmur2 partitioner, so each worker's share is a random sample of customers, and a
drift of the population shows in every share.

Detectors
---------
``feature_psi`` / ``score_psi``  PSI per feature and of the score per window against
    the serving model's reference distributions, ``k`` breaching windows in a row,
    then a cooldown (event time).
``adwin`` / ``kswin`` / ``page_hinkley``  river detectors on a 1-in-``sample`` sample
    of the score stream. A change they flag becomes an alert only when the last
    closed window's score PSI is at least moderate (0.1): a statistically detectable
    wiggle of the mean that leaves the score distribution in place is no reason to
    retrain.
``*_log_loss``  scores joined with labels after the horizon; a river detector on the
    per-example log loss. It becomes an alert only when the rolling AUC has also
    dropped ``concept_auc_drop`` below the AUC first measured on this stream: more
    churn alone raises log loss (a price hike does), broken ranking is concept drift.

A stream that starts from nothing has empty per-customer histories for its first
weeks, which look nothing like training data: ``warmup_events`` skips them.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from schemas.outputs import DriftAlert
from stream.drift.detectors import ConceptDriftMonitor, DataDriftDetector, Finding, ScoreStreamDetector
from stream.drift.psi import PSI_THRESHOLDS, severity
from stream.drift.windows import FeatureWindow, WindowReport


@dataclass(frozen=True)
class DriftConfig:
    window_events: int = 2000
    window_seconds: float = 0.0
    psi_threshold: float = PSI_THRESHOLDS["major"]
    hysteresis: int = 2
    cooldown_s: float = 14 * 86_400.0
    horizon_s: float = 30 * 86_400.0
    sample: int = 10
    min_count: int = 200
    warmup_events: int = 0
    concept_auc_drop: float = 0.05
    concept_baseline_pairs: int = 1000


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts if math.isfinite(ts) else 0.0, tz=timezone.utc)


class DriftMonitor:
    """Every drift statistic of one worker, reset whenever the serving model changes."""

    def __init__(self, reference: Mapping, model_version: str, config: DriftConfig = DriftConfig()) -> None:
        self.config = config
        self.model_version = model_version
        window = {"every_s": config.window_seconds} if config.window_seconds else {"every_n": config.window_events}
        self.window = FeatureWindow(reference, **window)
        self.data = DataDriftDetector(reference, threshold=config.psi_threshold, k=config.hysteresis,
                                      cooldown_s=config.cooldown_s, min_count=config.min_count)
        self.scores = ScoreStreamDetector(seed=0)
        self.concept = ConceptDriftMonitor(config.horizon_s)
        self.last_report: WindowReport | None = None
        self.clock = -math.inf
        self._seen = 0
        self._score_cooldown_until = -math.inf
        self._concept_cooldown_until = -math.inf
        self._baseline_auc: float | None = None

    def observe(self, rows: Sequence[Mapping], probabilities: Sequence[float], event_ts: Sequence[float]) -> list[DriftAlert]:
        """A scored batch: feature rows, their probabilities and event times (epoch s)."""
        alerts, fired = self._take(rows, probabilities, event_ts)
        if fired and self._score_shifted() and self.clock >= self._score_cooldown_until:
            self._score_cooldown_until = self.clock + self.config.cooldown_s
            stats = {"score_psi": self.last_report.psi.get("score", 0.0)}
            start = self.last_report.start_ts
            alerts.extend(self._alerts([Finding("+".join(sorted(fired)), "prediction", stats,
                                                severity(stats["score_psi"]))], start, self.clock))
        findings = self.concept.update(self.clock)
        if self._baseline_auc is None and self.concept.matured >= self.config.concept_baseline_pairs:
            self._baseline_auc = self.concept.auc
        for finding in findings:
            if not self._ranking_degraded():
                continue
            if self.clock >= self._concept_cooldown_until:
                self._concept_cooldown_until = self.clock + self.config.cooldown_s
                alerts.extend(self._alerts([finding], self.clock - self.config.horizon_s, self.clock))
        return alerts

    def _take(self, rows: Sequence[Mapping], probabilities: Sequence[float], event_ts: Sequence[float]
              ) -> tuple[list[DriftAlert], set[str]]:
        """Feed a batch's vectors to the windows and detectors: the data alerts of the windows it
        closes, and the score detectors that flagged a change.

        The same as taking the vectors one at a time (the unit tests compare the two); the
        feature windows bin a whole batch at once.
        """
        alerts: list[DriftAlert] = []
        fired: set[str] = set()
        if len(event_ts):
            self.clock = max(self.clock, max(event_ts))
        # Histories are still filling (windows of 30-90 days): not yet comparable to training.
        skip = min(len(rows), max(0, self.config.warmup_events - self._seen))
        self._seen += skip
        rows, probabilities, event_ts = rows[skip:], probabilities[skip:], event_ts[skip:]
        for _, report in self.window.update_many(rows, probabilities, event_ts):
            self.last_report = report
            alerts.extend(self._alerts(self.data.update(report), report.start_ts, report.end_ts))
        # The score detectors see every sample-th vector of the stream, counting from its first.
        sample = self.config.sample
        fired.update(self.scores.update_many(probabilities[(-self._seen - 1) % sample::sample]))
        self._seen += len(rows)
        add_score = self.concept.add_score
        for row, p, ts in zip(rows, probabilities, event_ts):
            add_score(str(row.get("customer_id", "")), ts, p)
        return alerts, fired

    def label(self, customer_id: str, closed_ts: float) -> None:
        """Ground truth: the customer closed the account at ``closed_ts``."""
        self.concept.add_label(customer_id, closed_ts)

    def _ranking_degraded(self) -> bool:
        """The rolling AUC fell clearly below the AUC the model first showed on this stream."""
        auc = self.concept.auc
        return (self._baseline_auc is not None and not math.isnan(auc)
                and auc <= self._baseline_auc - self.config.concept_auc_drop)

    def _score_shifted(self) -> bool:
        return self.last_report is not None and self.last_report.psi.get("score", 0.0) >= PSI_THRESHOLDS["moderate"]

    def _alerts(self, findings: Sequence[Finding], start: float, end: float) -> list[DriftAlert]:
        now = datetime.now(timezone.utc)
        return [
            DriftAlert(
                alert_id=uuid.uuid4().hex,
                detector=f.detector,
                kind=f.kind,
                features={k: round(v, 6) for k, v in f.statistics.items() if math.isfinite(v)},
                window_start=_dt(start),
                window_end=_dt(end),
                model_version=self.model_version,
                severity=f.severity,
                created_at=now,
            )
            for f in findings
        ]
