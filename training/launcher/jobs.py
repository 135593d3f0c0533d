"""What the service asks of a backend: a :class:`LaunchRequest`, the :class:`Launcher` protocol, a job's outcome."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from training.launcher.state import JobEnd, RunningJob


@dataclass(frozen=True)
class LaunchRequest:
    """One retraining run to start: ``since`` (ISO time, may be empty) and ``wait_labels_s``
    make the job learn the world since a drift; ``extra`` are more ``churn retrain`` options."""

    run: int
    trigger: str
    alert_id: str
    now: float
    since: str = ""
    wait_labels_s: float = 0.0
    extra: tuple[str, ...] = ()

    def options(self) -> list[str]:
        """``churn retrain`` options for this request.

        >>> LaunchRequest(1, "drift", "a1", 0.0, since="2026-03-01T00:00:00+00:00", wait_labels_s=60).options()
        ['--trigger', 'drift', '--alert-id', 'a1', '--since', '2026-03-01T00:00:00+00:00', '--wait-labels', '60']
        """
        options = ["--trigger", self.trigger, *(["--alert-id", self.alert_id] if self.alert_id else [])]
        if self.since:
            options += [
                "--since",
                self.since,
                *(["--wait-labels", f"{self.wait_labels_s:g}"] if self.wait_labels_s else []),
            ]
        return [*options, *self.extra]


class Launcher(Protocol):
    """Starts retraining jobs and reports when they end."""

    def launch(self, request: LaunchRequest) -> RunningJob: ...

    def poll(self, job: RunningJob) -> JobEnd | None:
        """None while the job runs."""
        ...


def decision_outcome(exit_code: int | None, result: str) -> str:
    """The outcome of an ended job from its exit code and the result JSON it left (may be empty).

    >>> decision_outcome(0, '{"decision": "promoted", "version": "3"}'), decision_outcome(0, "")
    ('promoted', 'succeeded')
    >>> decision_outcome(0, '{"decision": "shadowed", "version": "4"}')
    'shadowed'
    >>> decision_outcome(1, '{"decision": "promoted"}'), decision_outcome(None, "not json")
    ('failed', 'unknown')
    """
    if exit_code not in (0, None):
        return "failed"
    try:
        decision = json.loads(result).get("decision", "") if result else ""
    except (ValueError, AttributeError):
        decision = ""
    if decision in ("promoted", "shadowed", "rejected", "failed"):
        return decision
    return "succeeded" if exit_code == 0 else "unknown"


def result_outcome(exit_code: int | None, result_file: str) -> str:
    """The outcome of an ended job from its exit code and the result file it wrote."""
    try:
        result = Path(result_file).read_text() if result_file else ""
    except OSError:
        result = ""
    return decision_outcome(exit_code, result)


#: The kubelet keeps at most this many bytes of a container's termination message.
TERMINATION_MESSAGE_LIMIT = 4096


def compact_result(summary: dict, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """``summary`` (a retraining job's result) as one JSON line of at most ``limit`` bytes, for a Kubernetes
    termination message: the decision always, then the other keys in order while they fit.

    >>> compact_result({"decision": "rejected", "version": "4", "reasons": ["x" * 5000]})
    '{"decision":"rejected","version":"4"}'
    """
    kept = {"decision": summary.get("decision", "")}
    for key, value in summary.items():
        if key in kept:
            continue
        trial = json.dumps({**kept, key: value}, separators=(",", ":"), default=str)
        if len(trial.encode()) <= limit:
            kept[key] = value
    return json.dumps(kept, separators=(",", ":"), default=str)
