"""The launcher's Prometheus metrics: alerts by decision, launches by trigger, retrains by outcome, running,
shadow decisions."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass(frozen=True)
class LauncherMetrics:
    registry: CollectorRegistry
    alerts: Counter
    launches: Counter
    retrains: Counter
    running: Gauge
    shadow: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> LauncherMetrics:
        r = registry if registry is not None else CollectorRegistry()
        return cls(
            registry=r,
            alerts=Counter(
                "churn_launcher_alerts", "Drift alerts read by the launcher, by decision.", ["decision"], registry=r
            ),
            launches=Counter(
                "churn_retrain_launches", "Retraining jobs launched, by trigger.", ["trigger"], registry=r
            ),
            retrains=Counter("churn_retrains", "Retraining jobs, by outcome.", ["outcome"], registry=r),
            running=Gauge("churn_retrain_running", "1 while a retraining job runs.", registry=r),
            shadow=Counter(
                "churn_launcher_shadow_decisions",
                "Readings of the shadow evidence by the launcher, by decision (promote, drop, wait).",
                ["decision"],
                registry=r,
            ),
        )
