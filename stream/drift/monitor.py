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
``concept``  scores joined with labels after the horizon. Every ``concept_check_pairs``
    matured pairs the last ``concept_window`` pairs are measured against the model's own
    promise (:class:`~stream.drift.detectors.ConceptDriftMonitor`): their log loss over
    the log loss calibrated scores expect, corrected by the holdout's ratio from the
    registry. A ratio of at least ``1 + concept_loss_rise`` in ``hysteresis`` checks in a
    row raises a ``concept`` alert; a river Page-Hinkley change on the excess loss
    checks at once. More churn that the model's scores follow (a price hike) keeps the
    ratio near 1; a concept that changed does not.

Severity and harm
-----------------
Every alert says whether the serving model is hurt (``harm``) and why (``evidence``).
A concept alert is harm. So is a shift that brings categorical values the model never
saw in training, once they are ``harm_unseen`` of a window (an unseen plan encodes as
no plan: the model has learnt nothing about it, whatever the loss over all customers
says); high from twice that share. A data or prediction alert is judged on matured
labels when there are labels of scores made under at least half of the shift seen now
(a slow drift, such as a population ageing, has them; a sudden one does not for a
horizon): a loss ratio of at least ``1 + concept_loss_rise`` is harm (high), below it
the model extrapolates over the shift correctly (low). Otherwise the expected effect
decides: harm when the scores moved (score PSI at least moderate) or the
importance-weighted PSI (each moved feature's PSI, capped at 2, times its share of the
model's ranking, from the version's logged importances) is at least ``harm_shift``;
high when the score PSI is major, medium otherwise. A shift in features the model
barely uses that leaves the scores in place is low.

A stream that starts from nothing has empty per-customer histories for its first
weeks, which look nothing like training data: ``warmup_events`` skips them.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.outputs import DriftAlert
from stream.drift.detectors import (
    ConceptDriftMonitor,
    Cooldown,
    DataDriftDetector,
    Finding,
    Hysteresis,
    ScoreStreamDetector,
)
from stream.drift.psi import PSI_THRESHOLDS, Severity, severity
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
    concept_window: int = 5000
    concept_check_pairs: int = 1000
    concept_loss_rise: float = 0.3
    harm_shift: float = 0.05
    harm_unseen: float = 0.05

    @classmethod
    def from_settings(cls, settings, **over) -> DriftConfig:
        """The drift settings a worker runs with (``stream.settings.Settings``; ``over`` replaces fields)."""
        values = dict(
            window_events=settings.drift_window_events,
            window_seconds=settings.drift_window_seconds,
            psi_threshold=settings.drift_psi_threshold,
            hysteresis=settings.drift_hysteresis,
            cooldown_s=settings.drift_cooldown_days * 86_400.0,
            horizon_s=settings.horizon_days * 86_400.0,
            warmup_events=settings.drift_warmup_events,
            concept_window=settings.drift_concept_window,
            concept_check_pairs=settings.drift_concept_check_pairs,
            concept_loss_rise=settings.drift_concept_loss_rise,
            harm_shift=settings.drift_harm_shift,
            harm_unseen=settings.drift_harm_unseen,
        )
        return cls(**{**values, **over})


CONCEPT_DETECTOR = "concept_log_loss"
TIMES = ("scored_from", "known_at")  # event times in a performance summary, not statistics
HISTORY_WINDOWS = 512


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts if math.isfinite(ts) else 0.0, tz=UTC)


class DriftMonitor:
    """Every drift statistic of one worker, reset whenever the serving model changes.

    ``baseline`` holds the version's holdout metrics from the registry (``log_loss``,
    ``expected_log_loss``, ``roc_auc``...); ``importance`` each input's share of its ranking.
    """

    def __init__(
        self,
        reference: Mapping,
        model_version: str,
        config: DriftConfig = DriftConfig(),
        baseline: Mapping[str, float] | None = None,
        importance: Mapping[str, float] | None = None,
    ) -> None:
        self.config = config
        self.model_version = model_version
        self.baseline = dict(baseline or {})
        self.importance = dict(importance or {})
        window = {"every_s": config.window_seconds} if config.window_seconds else {"every_n": config.window_events}
        self.window = FeatureWindow(reference, **window)
        self.data = DataDriftDetector(
            reference,
            threshold=config.psi_threshold,
            k=config.hysteresis,
            cooldown_s=config.cooldown_s,
            min_count=config.min_count,
        )
        self.scores = ScoreStreamDetector(seed=0)
        self.concept = ConceptDriftMonitor(
            config.horizon_s, window=config.concept_window, calibration=holdout_calibration(self.baseline)
        )
        self.concept_breaches = Hysteresis(config.hysteresis)
        self.last_report: WindowReport | None = None
        self.last_performance: dict[str, float] = {}
        self.clock = -math.inf
        self._seen = 0
        self._score_cooldown_until = -math.inf
        self._concept_cooldown = Cooldown(config.cooldown_s)
        self._next_check = config.concept_check_pairs
        self._batch_clocks: dict[int, float] = {}
        # Recent windows' PSI by their end (event time): what the scores behind matured labels saw.
        self._history: deque[tuple[float, dict[str, float]]] = deque(maxlen=HISTORY_WINDOWS)

    def observe(
        self,
        rows: Sequence[Mapping],
        probabilities: Sequence[float],
        event_ts: Sequence[float],
        partitions: Sequence[int] | None = None,
    ) -> list[DriftAlert]:
        """A scored batch: feature rows, their probabilities, event times (epoch s) and the partition each
        customer's state lives on (all 0 when not given): scores mature against their partition's clock."""
        alerts, fired = self._take(rows, probabilities, event_ts, partitions)
        report = self.last_report
        if fired and report is not None and self._score_shifted() and self.clock >= self._score_cooldown_until:
            self._score_cooldown_until = self.clock + self.config.cooldown_s
            stats = {"score_psi": report.psi.get("score", 0.0)}
            start = report.start_ts
            alerts.extend(
                self._alerts(
                    [Finding("+".join(sorted(fired)), "prediction", stats, severity(stats["score_psi"]))],
                    start,
                    self.clock,
                )
            )
        for partition, clock in self._batch_clocks.items():
            self.concept.advance(clock, partition)
        changed = self.concept.take_change()
        if self.concept.matured >= self._next_check or (changed and self.concept.pairs):
            self._next_check = self.concept.matured + self.config.concept_check_pairs
            alerts.extend(self._check_concept())
        return alerts

    def _check_concept(self) -> list[DriftAlert]:
        """Measure the window; a concept alert once the loss ratio has breached in enough checks in a row."""
        config = self.config
        if len(self.concept.pairs) < min(config.concept_window, config.concept_check_pairs):
            return []
        performance = self.last_performance = self.concept.performance()
        ratio = performance.get("log_loss_ratio", math.nan)
        breached = self.concept_breaches.update(math.isfinite(ratio) and ratio >= 1 + config.concept_loss_rise)
        if not breached or not self._concept_cooldown.ready(self.clock):
            return []
        self._concept_cooldown.fire(self.clock)
        stats = {k: v for k, v in performance.items() if k not in TIMES}
        for name in ("roc_auc", "log_loss"):
            if name in self.baseline:
                stats[f"holdout_{name}"] = self.baseline[name]
        stats["detector_changes"] = float(self.concept.changes)
        level: Severity = "high" if ratio >= 1 + 2 * config.concept_loss_rise else "medium"
        finding = Finding(CONCEPT_DETECTOR, "concept", stats, level)
        # The window judged: from its oldest score to when its newest label was known (a partition drained
        # ahead of the others moves the worker's clock, not this).
        return self._alerts([finding], performance["scored_from"], min(performance["known_at"], self.clock))

    def _take(
        self,
        rows: Sequence[Mapping],
        probabilities: Sequence[float],
        event_ts: Sequence[float],
        partitions: Sequence[int] | None = None,
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
        clocks = self._batch_clocks = {}
        for part, ts in zip(partitions if partitions is not None else [0] * len(event_ts), event_ts):
            if ts > clocks.get(part, -math.inf):
                clocks[part] = ts
        # Histories are still filling (windows of 30-90 days): not yet comparable to training.
        skip = min(len(rows), max(0, self.config.warmup_events - self._seen))
        self._seen += skip
        rows, probabilities, event_ts = rows[skip:], probabilities[skip:], event_ts[skip:]
        parts = partitions[skip:] if partitions is not None else [0] * len(rows)
        for _, report in self.window.update_many(rows, probabilities, event_ts):
            self.last_report = report
            self._history.append((report.end_ts, report.psi))
            alerts.extend(self._alerts(self.data.update(report), report.start_ts, report.end_ts))
        # The score detectors see every sample-th vector of the stream, counting from its first.
        sample = self.config.sample
        fired.update(self.scores.update_many(probabilities[(-self._seen - 1) % sample :: sample]))
        self._seen += len(rows)
        add_score = self.concept.add_score
        for row, p, ts, part in zip(rows, probabilities, event_ts, parts):
            add_score(str(row.get("customer_id", "")), ts, p, part)
        return alerts, fired

    def label(self, customer_id: str, closed_ts: float, partition: int = 0) -> None:
        """Ground truth: the customer (of ``partition``) closed the account at ``closed_ts``."""
        self.concept.add_label(customer_id, closed_ts, partition)

    def _score_shifted(self) -> bool:
        return self.last_report is not None and self.last_report.psi.get("score", 0.0) >= PSI_THRESHOLDS["moderate"]

    def judge(self, finding: Finding) -> tuple[bool, Severity, dict[str, float]]:
        """Whether ``finding`` hurts the serving model, how much, and the evidence (see the module doc)."""
        config = self.config
        evidence: dict[str, float] = {}
        if finding.kind == "concept":
            return True, finding.severity, evidence
        moderate, major = PSI_THRESHOLDS["moderate"], PSI_THRESHOLDS["major"]
        last_psi = self.last_report.psi if self.last_report is not None else {}
        score_psi = finding.statistics.get("score_psi", last_psi.get("score", 0.0))
        evidence["score_psi"] = score_psi
        shifted = {k: v for k, v in finding.statistics.items() if k != "score_psi"}
        if shifted and self.importance:
            for name in shifted:
                evidence[f"importance.{name}"] = float(self.importance.get(name, 0.0))
            evidence["shift_weighted"] = sum(min(v, 2.0) * self.importance.get(k, 0.0) for k, v in shifted.items())
        unseen = self.last_report.unseen if self.last_report is not None else {}
        blind = {name: share for name, share in unseen.items() if name in shifted}
        for name, share in blind.items():
            evidence[f"unseen.{name}"] = share
        if blind and max(blind.values()) >= config.harm_unseen:
            # Values the model never saw in training: it has learnt nothing about them, whatever the
            # loss over all customers says (they are a minority of it).
            return True, ("high" if max(blind.values()) >= 2 * config.harm_unseen else "medium"), evidence
        measured = self.last_performance
        if measured and shifted and self._labels_cover(shifted, measured):
            evidence.update({k: v for k, v in measured.items() if k not in TIMES})
            if measured["log_loss_ratio"] >= 1 + config.concept_loss_rise:
                return True, "high", evidence
            return False, "low", evidence  # the model extrapolates over this shift correctly
        weighted = evidence.get("shift_weighted", math.inf)  # no importances logged: harm is not ruled out
        if score_psi >= moderate or weighted >= config.harm_shift:
            return True, ("high" if score_psi >= major else "medium"), evidence
        return False, "low", evidence

    def _labels_cover(self, shifted: Mapping[str, float], measured: Mapping[str, float]) -> bool:
        """Whether the matured labels measured were scored under at least half of the shift seen now.

        A sudden shift has no such labels for a horizon; a slow one (a population ageing) has them
        long before its PSI crosses the threshold.
        """
        start = measured.get("scored_from", math.inf)
        then = [psi for end, psi in self._history if end >= start]
        if not then:
            return False
        for name, now in shifted.items():
            past = sum(p.get(name, 0.0) for p in then) / len(then)
            if past < now / 2:
                return False
        return True

    def _alerts(self, findings: Sequence[Finding], start: float, end: float) -> list[DriftAlert]:
        now = datetime.now(UTC)
        alerts = []
        for f in findings:
            harm, level, evidence = self.judge(f)
            alerts.append(
                DriftAlert(
                    alert_id=uuid.uuid4().hex,
                    detector=f.detector,
                    kind=f.kind,
                    features={k: round(v, 6) for k, v in f.statistics.items() if math.isfinite(v)},
                    window_start=_dt(start),
                    window_end=_dt(end),
                    model_version=self.model_version,
                    severity=level,
                    created_at=now,
                    harm=harm,
                    evidence={k: round(v, 6) for k, v in evidence.items() if math.isfinite(v)},
                )
            )
        return alerts


def holdout_calibration(baseline: Mapping[str, float]) -> float:
    """The holdout's measured over expected log loss (1 when the registry has not both)."""
    measured, expected = baseline.get("log_loss"), baseline.get("expected_log_loss")
    if measured is None or expected is None or not (math.isfinite(measured) and math.isfinite(expected)):
        return 1.0
    if measured <= 0 or expected <= 0:
        return 1.0
    return measured / expected
