"""Replay a simulated stream through the feature logic, a model and the drift monitor.

The offline twin of a worker's drift path, used to measure false alarms on a stable
stream and detection delays per scenario without Kafka.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from producers.simulator import SimConfig, Simulator
from schemas.features import FEATURE_NAMES
from schemas.outputs import DriftAlert
from stream.drift.monitor import DriftConfig, DriftMonitor
from stream.features import Admission, CustomerState, apply_checked, event_time, feature_values
from stream.model_holder import columns_to_frame


@dataclass
class ReplayResult:
    events: int = 0
    onset_index: int | None = None
    alerts: list[tuple[int, DriftAlert]] = field(default_factory=list)

    def first(self, kind: str | None = None) -> tuple[int, DriftAlert] | None:
        for index, alert in self.alerts:
            if kind is None or alert.kind == kind:
                return index, alert
        return None

    def delay(self, kind: str | None = None) -> int | None:
        """Events from the scenario onset to the first alert (of ``kind``)."""
        hit = self.first(kind)
        if hit is None or self.onset_index is None:
            return None
        return hit[0] - self.onset_index


def replay(
    sim_config: SimConfig,
    predict: Callable,
    reference: dict,
    model_version: str = "1",
    drift: DriftConfig = DriftConfig(),
    batch: int = 500,
    max_events: int | None = None,
    until_detected: bool = False,
) -> ReplayResult:
    """Feed every simulated event through features, ``predict`` (a frame -> probabilities) and the monitor.

    With ``until_detected`` the replay ends at the first batch that raises an alert
    after the scenario's onset: the events after it cannot change the first alert
    or the detection delay.
    """
    sim = Simulator(sim_config)
    onset = sim.onset_ts
    monitor = DriftMonitor(reference, model_version, drift)
    states: dict[str, CustomerState] = {}
    result = ReplayResult()
    rows: list[dict] = []
    stamps: list[float] = []

    def flush() -> None:
        if not rows:
            return
        columns = {name: [r[name] for r in rows] for name in FEATURE_NAMES}
        probabilities = predict(columns_to_frame(columns))
        for alert in monitor.observe(rows, probabilities, stamps):
            result.alerts.append((result.events, alert))
        rows.clear()
        stamps.clear()

    for event in sim.events():
        ts = event_time(event.ts)
        if onset is not None and result.onset_index is None and ts >= onset:
            result.onset_index = result.events
        state = states.setdefault(event.customer_id, CustomerState())
        if apply_checked(state, event) is not Admission.NEW:
            continue
        values = feature_values(state, state.last_ts)
        values["customer_id"] = event.customer_id
        rows.append(values)
        stamps.append(ts)
        if event.event_type == "account_closed":
            monitor.label(event.customer_id, ts)
        result.events += 1
        if len(rows) >= batch:
            flush()
            if until_detected and result.onset_index is not None and result.alerts \
                    and result.alerts[-1][0] >= result.onset_index:
                return result
        if max_events is not None and result.events >= max_events:
            break
    flush()
    return result
