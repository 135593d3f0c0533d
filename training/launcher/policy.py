"""The launch policy: a pure decision (launch now or not, and why) from the state, the time and an alert or a tick."""

from __future__ import annotations

import math
from dataclasses import dataclass

from stream.errors import ConfigError
from training.launcher.state import LauncherState

DEFAULT_COOLDOWN_S = 300.0


@dataclass(frozen=True)
class Decision:
    """``reason`` is a short code (a metric label): launched, running, shadowing, cooldown, duplicate, no_harm,
    not_due."""

    launch: bool
    reason: str
    detail: str = ""


class LaunchPolicy:
    """Pure: given the state, the time and an alert (or a timer tick), launch or not.

    >>> from training.launcher.state import JobEnd, RunningJob
    >>> p = LaunchPolicy(cooldown_s=60)
    >>> s = LauncherState()
    >>> p.on_alert(s, "a1", now=1000.0).launch
    True
    >>> s.record_launch(RunningJob("42", 1, "drift", "a1", 1000.0)); s.record_alert("a1")
    >>> p.on_alert(s, "a2", now=1001.0).reason
    'running'
    >>> s.record_end(JobEnd(0, "promoted"), now=1100.0)
    >>> p.on_alert(s, "a3", now=1130.0).reason, p.on_alert(s, "a3", now=1160.0).reason
    ('cooldown', 'launched')
    >>> p.on_alert(s, "a4", now=1160.0, harm=False).reason
    'no_harm'
    >>> LaunchPolicy(cooldown_s=60, promoted_cooldown_s=600).on_alert(s, "a5", now=1160.0).reason
    'cooldown'

    ``retrain_on``: ``harm`` launches only for alerts that judge the serving model hurt
    (``DriftAlert.harm``); ``any`` for every alert. A rejected job is retried by the next
    alert after the cooldown: while the harm persists, alerts keep coming, and each job
    learns from more matured data than the last.

    While a challenger is in shadow (``state.shadow``) nothing is launched: it is the answer
    to the drift being measured, and a new candidate would displace it and its evidence.
    """

    RETRAIN_ON = ("harm", "any")

    def __init__(
        self,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        every_s: float | None = None,
        retrain_on: str = "harm",
        promoted_cooldown_s: float | None = None,
    ) -> None:
        """``promoted_cooldown_s``: the cooldown after a job that promoted its candidate, when it should
        differ from ``cooldown_s`` (a new model is judged on its own scores before it is replaced)."""
        if cooldown_s < 0:
            raise ConfigError(f"--cooldown must be >= 0 seconds, got {cooldown_s}")
        if promoted_cooldown_s is not None and promoted_cooldown_s < 0:
            raise ConfigError(f"the cooldown after a promotion must be >= 0 seconds, got {promoted_cooldown_s}")
        self.promoted_cooldown_s = promoted_cooldown_s
        if every_s is not None and every_s <= 0:
            raise ConfigError(f"--every must be > 0 seconds, got {every_s}")
        if retrain_on not in self.RETRAIN_ON:
            raise ConfigError(f"--retrain-on must be one of {', '.join(self.RETRAIN_ON)}, not {retrain_on!r}")
        self.cooldown_s = cooldown_s
        self.every_s = every_s
        self.retrain_on = retrain_on

    def _free(self, state: LauncherState, now: float) -> Decision:
        if state.running is not None:
            return Decision(False, "running", f"job {state.running.handle} (run {state.running.run}) is running")
        if state.shadow is not None:
            return Decision(False, "shadowing", f"version {state.shadow.version} is in shadow")
        cooldown = self.cooldown_s
        if self.promoted_cooldown_s is not None and state.last_outcome == "promoted":
            cooldown = self.promoted_cooldown_s
        if state.last_end_at is not None and now - state.last_end_at < cooldown:
            left = cooldown - (now - state.last_end_at)
            return Decision(False, "cooldown", f"{left:.0f}s of cooldown left" if left < math.inf else "no relaunch")
        return Decision(True, "launched")

    def on_alert(self, state: LauncherState, alert_id: str, now: float, harm: bool = True) -> Decision:
        if alert_id in state.handled:
            return Decision(False, "duplicate", f"alert {alert_id} was handled before")
        if self.retrain_on == "harm" and not harm:
            return Decision(False, "no_harm", "the alert does not judge the serving model hurt")
        return self._free(state, now)

    def on_tick(self, state: LauncherState, now: float, since: float) -> Decision:
        """The schedule: due ``every_s`` after the last launch started (or after ``since``)."""
        if self.every_s is None:
            return Decision(False, "not_due", "no schedule")
        base = state.last_launch_at if state.last_launch_at is not None else since
        if now - base < self.every_s:
            return Decision(False, "not_due", f"next scheduled run in {self.every_s - (now - base):.0f}s")
        if state.running is not None:
            return Decision(False, "running", f"job {state.running.handle} is running")
        if state.shadow is not None:
            return Decision(False, "shadowing", f"version {state.shadow.version} is in shadow")
        return Decision(True, "launched", "scheduled")
