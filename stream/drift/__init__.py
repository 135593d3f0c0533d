"""Drift statistics for the drift agent: plain Python, no Faust, no Kafka.

* :mod:`stream.drift.psi` — the Population Stability Index and its thresholds.
* :mod:`stream.drift.windows` — :class:`FeatureWindow`, rolling windows of feature
  vectors and scores that report PSI against the model's reference distributions.
* :mod:`stream.drift.detectors` — hysteresis and cooldown, the data-drift detector
  over window reports, river detectors on the score stream, and the concept-drift
  monitor that joins scores with labels after the horizon.

Every object here follows river's shape: ``update(...)`` plus ``drift_detected``,
deterministic given its inputs (and its seed), with no I/O.
"""
