"""Replay a simulated stream through the feature logic, a model and the drift monitor.

The offline twin of a worker's drift path, used to measure false alarms on a stable
stream and detection delays per scenario without Kafka.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from producers.simulator import SimConfig, Simulator
from schemas.events import AccountEvent
from schemas.features import FEATURE_NAMES
from schemas.outputs import DriftAlert
from stream.drift.monitor import DriftConfig, DriftMonitor
from stream.pipeline.features import Admission, CustomerState, apply_checked, event_time, feature_values
from stream.serving.model_holder import columns_to_frame


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
    run = Replay(predict, reference, model_version, drift, batch, onset_ts=sim.onset_ts)
    return run.play(sim.events(), until_detected=until_detected, max_events=max_events)


class Replay:
    """A replay fed in parts: the customers' states, the monitor and what it found so far.

    :func:`replay` feeds one whole stream. Fed a stream's prefix and then forked (a
    fork-started process inherits it), one replay branches into several continuations
    of that prefix (see :meth:`Simulator.resume`) without replaying the prefix again.
    Set :attr:`onset_ts` to the continuation's onset before feeding it.
    """

    def __init__(
        self,
        predict: Callable,
        reference: dict,
        model_version: str = "1",
        drift: DriftConfig = DriftConfig(),
        batch: int = 500,
        onset_ts: float | None = None,
    ) -> None:
        self.predict = predict
        self.onset_ts = onset_ts
        self.batch = batch
        self.monitor = DriftMonitor(reference, model_version, drift)
        self.states: dict[str, CustomerState] = {}
        self.result = ReplayResult()
        self._rows: list[dict] = []
        self._stamps: list[float] = []

    def feed(self, events: Iterable[AccountEvent], until_detected: bool = False, max_events: int | None = None) -> bool:
        """Replay ``events``; True when an alert after the onset ended it (``until_detected``).

        Vectors of an unfinished batch wait for the next feed or :meth:`finish`, so the
        batches are the same however the stream is cut into feeds.
        """
        result, rows, stamps, states, monitor = self.result, self._rows, self._stamps, self.states, self.monitor
        onset = self.onset_ts
        for event in events:
            ts = event_time(event.ts)
            if onset is not None and result.onset_index is None and ts >= onset:
                result.onset_index = result.events
            state = states.get(event.customer_id)
            if state is None:
                state = states[event.customer_id] = CustomerState()
            if apply_checked(state, event, ts) is not Admission.NEW:
                continue
            values = feature_values(state, state.last_ts)
            values["customer_id"] = event.customer_id
            rows.append(values)
            stamps.append(ts)
            if event.event_type == "account_closed":
                monitor.label(event.customer_id, ts)
            result.events += 1
            if len(rows) >= self.batch:
                self._flush()
                if (
                    until_detected
                    and result.onset_index is not None
                    and result.alerts
                    and result.alerts[-1][0] >= result.onset_index
                ):
                    return True
            if max_events is not None and result.events >= max_events:
                break
        return False

    def play(
        self, events: Iterable[AccountEvent], until_detected: bool = False, max_events: int | None = None
    ) -> ReplayResult:
        """:meth:`feed` the rest of a stream, then :meth:`finish` it (unless an alert ended it): the result."""
        if self.feed(events, until_detected=until_detected, max_events=max_events):
            return self.result
        return self.finish()

    def finish(self) -> ReplayResult:
        """Score the last, unfinished batch; the result."""
        self._flush()
        return self.result

    def _flush(self) -> None:
        rows = self._rows
        if not rows:
            return
        columns = {name: [r[name] for r in rows] for name in FEATURE_NAMES}
        probabilities = self.predict(columns_to_frame(columns))
        for alert in self.monitor.observe(rows, probabilities, self._stamps):
            self.result.alerts.append((self.result.events, alert))
        rows.clear()
        self._stamps.clear()
