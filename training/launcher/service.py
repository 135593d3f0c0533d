"""The retrain launcher service (``churn launcher``): drift alerts in, one retraining job at a time out.

::

    drift-alerts ──► RetrainLauncher ──► LaunchPolicy (pure: launch now?) ──► Launcher
                        │  consumer group <app_id>-launcher          SubprocessLauncher: churn retrain
                        │  commit after the decision is saved        KubernetesJobLauncher: a Job (API)
                        └► LauncherState (JSON under CHURN_DATA_DIR/launcher/, written atomically)

* **Single flight.** While a job runs, alerts are recorded and skipped: a storm of
  alerts launches one job.
* **Cooldown**, measured from the end of the last job: alerts within it are skipped.
* **Restart-safe.** Every decision is saved before the alert's offset is committed,
  and the state remembers the ids of recent alerts, so a restart never launches again
  for an alert it already decided on. A job still running (a pid or Job name in the
  state file) is waited on, not launched again.
* **Schedule** (``every_s``): a job is launched that long after the last launch
  started (or after the launcher started), alerts or not; still single-flight.
* **Shadow stage** (``CHURN_LAUNCHER_STAGE=shadow``): jobs run with ``--stage shadow``, so
  a candidate that passes its gate becomes the challenger instead of production. Every
  ``CHURN_LAUNCHER_JUDGE_S`` while one is in shadow, the launcher reads the workers'
  evidence and applies :func:`training.shadow.decide`: promote, drop or wait. When the
  challenger went into shadow is kept in the state (the registry's record, else when the
  launcher first saw it), so a restart does not reset its deadline; while it is in shadow
  no job is launched (``shadowing``).

Outcomes (the ``outcome`` label of ``churn_retrains_total``): ``promoted``, ``shadowed`` and
``rejected`` (from the job's result file, or a Kubernetes Job's termination message), ``succeeded`` (exit 0, no result file),
``failed`` (non-zero exit, its code recorded; or a result file saying so) and
``unknown`` (the job ended while the launcher was away, so its exit code is not known,
and it left no result file).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, cast

from confluent_kafka import Consumer, KafkaError
from pydantic import ValidationError

from schemas.outputs import DriftAlert
from stream.errors import BrokerError, ChurnError, ConfigError
from stream.kafka.config import confluent_config
from stream.kafka.topics import DRIFT_ALERTS, ensure_topics, topic_specs
from stream.runtime.end_offsets import exact_end_offsets
from stream.settings import Settings
from training.launcher.jobs import Launcher, LaunchRequest
from training.launcher.kubernetes import DEFAULT_JOB_TEMPLATE, KubernetesJobLauncher
from training.launcher.metrics import LauncherMetrics
from training.launcher.policy import Decision, LaunchPolicy
from training.launcher.processes import SubprocessLauncher
from training.launcher.state import JobEnd, LauncherState, ShadowEnd, ShadowWatch, load_state, save_state, state_dir
from training.shadow import Challenger, RegistryShadow, ShadowDecision, ShadowEvidence, ShadowRule, decide

log = logging.getLogger(__name__)

STAGES = ("promote", "shadow")


class Shadow(Protocol):
    """The I/O of judging a challenger (:class:`training.shadow.RegistryShadow` in production)."""

    def challenger(self) -> Challenger | None: ...

    def evidence(self, challenger: Challenger, texts: Iterable[str] | None = None) -> ShadowEvidence: ...

    def apply(self, challenger: Challenger, decision: ShadowDecision, evidence: ShadowEvidence) -> None: ...


class RetrainLauncher:
    """Consumes ``drift-alerts`` and launches retraining jobs as the policy decides.

    With ``learn_since_drift_s`` a drift-triggered job learns only from the world since
    the alert's window start and waits up to that many seconds for its labels to mature
    (``churn retrain --since --wait-labels``); ``job_args`` go to every job.

    ``stage`` (default ``CHURN_LAUNCHER_STAGE``) ``shadow`` makes jobs register their candidate
    as the challenger and the launcher judge it every ``judge_every_s`` (default
    ``CHURN_LAUNCHER_JUDGE_S``) by ``rule`` (default the ``CHURN_SHADOW_*`` settings) on the
    evidence ``shadow`` reads (default: the registry and the workers' /metrics).
    """

    def __init__(
        self,
        settings: Settings,
        launcher: Launcher,
        policy: LaunchPolicy,
        metrics: LauncherMetrics | None = None,
        state_path: Path | None = None,
        clock=time.time,
        learn_since_drift_s: float | None = None,
        job_args: Sequence[str] = (),
        stage: str | None = None,
        shadow: Shadow | None = None,
        rule: ShadowRule | None = None,
        judge_every_s: float | None = None,
    ) -> None:
        if learn_since_drift_s is not None and learn_since_drift_s < 0:
            raise ConfigError(f"--learn-since-drift must be >= 0 seconds, got {learn_since_drift_s}")
        self.stage = stage or settings.launcher_stage
        if self.stage not in STAGES:
            raise ConfigError(f"--stage must be one of {', '.join(STAGES)}, not {self.stage!r}")
        if self.stage == "shadow" and not settings.shadow_alias:
            raise ConfigError("--stage shadow needs a challenger alias: CHURN_SHADOW_ALIAS is empty")
        self.learn_since_drift_s = learn_since_drift_s
        self.job_args = (*job_args, *(("--stage", "shadow") if self.stage == "shadow" else ()))
        self.shadow: Shadow | None = None
        if self.stage == "shadow":
            self.shadow = shadow or RegistryShadow(settings)
        self.rule = rule or ShadowRule.from_settings(settings)
        self.judge_every_s = settings.launcher_judge_s if judge_every_s is None else judge_every_s
        self._judged_at: float | None = None
        self.settings = settings
        self.launcher = launcher
        self.policy = policy
        self.metrics = metrics or LauncherMetrics.create()
        self.state_path = state_path or state_dir(settings) / "state.json"
        self.clock = clock
        self.state = load_state(self.state_path)
        self.metrics.running.set(1 if self.state.running else 0)
        if self.shadow is None and self.state.shadow is not None:  # the stage changed: nothing judges it here now
            log.info("not judging version %s in shadow: the stage is %s", self.state.shadow.version, self.stage)
            self.state.shadow = None

    def _launch(self, trigger: str, alert_id: str, now: float, alert: DriftAlert | None = None) -> None:
        since, wait = "", 0.0
        if alert is not None and self.learn_since_drift_s is not None:
            since, wait = alert.window_start.isoformat(), self.learn_since_drift_s
        request = LaunchRequest(self.state.launches + 1, trigger, alert_id, now, since, wait, self.job_args)
        job = self.launcher.launch(request)
        self.state.record_launch(job)
        self.metrics.launches.labels(trigger).inc()
        self.metrics.running.set(1)
        log.info(
            "launched retraining run %d (%s, trigger %s%s)",
            job.run,
            job.handle,
            trigger,
            f", alert {alert_id}" if alert_id else "",
        )

    def check_job(self) -> JobEnd | None:
        """Record the running job's end, if it has ended."""
        job = self.state.running
        if job is None:
            return None
        end = self.launcher.poll(job)
        if end is None:
            return None
        self.state.record_end(end, self.clock())
        save_state(self.state_path, self.state)
        self.metrics.retrains.labels(end.outcome).inc()
        self.metrics.running.set(0)
        log.info(
            "retraining run %d (%s) ended: %s%s, exit code %s; %d launches so far",
            job.run,
            job.handle,
            end.outcome,
            f" ({end.reason})" if end.reason else "",
            end.exit_code,
            self.state.launches,
        )
        if end.outcome == "shadowed":
            self.judge_shadow(force=True)  # from now on, alerts wait for the challenger's verdict
        return end

    def judge_shadow(self, force: bool = False) -> ShadowDecision | None:
        """With the shadow stage, at most every ``judge_every_s`` (or now, ``force``): judge the challenger
        on the workers' evidence and apply the decision. None when not judged or there is no challenger."""
        if self.shadow is None:
            return None
        now = self.clock()
        if not force and self._judged_at is not None and now - self._judged_at < self.judge_every_s:
            return None
        self._judged_at = now
        try:
            challenger = self.shadow.challenger()
        except ChurnError as exc:
            log.warning("cannot judge the challenger now: %s", exc)
            return None
        if challenger is None:
            if self.state.shadow is not None:
                log.info("version %s is no longer in shadow (promoted or dropped elsewhere)", self.state.shadow.version)
                self.state.shadow = None
                save_state(self.state_path, self.state)
            return None
        watch = self.state.shadow
        if watch is None or watch.version != challenger.version:
            watch = ShadowWatch(challenger.version, challenger.since if challenger.since is not None else now)
            self.state.shadow = watch
            save_state(self.state_path, self.state)
            log.info("judging version %s, in shadow since %.0f", watch.version, watch.since)
        try:
            evidence = self.shadow.evidence(challenger)
            decision = decide(evidence, now - watch.since, self.rule)
            self.shadow.apply(challenger, decision, evidence)
        except ChurnError as exc:
            log.warning("cannot judge version %s now: %s", challenger.version, exc)
            return None
        self.metrics.shadow.labels(decision.action).inc()
        log.info("shadow decision on version %s: %s (%s)", challenger.version, decision.action, decision.reason)
        if decision.action != "wait":
            self.state.shadow = None
            self.state.last_shadow = ShadowEnd(challenger.version, decision.action, decision.reason, now)
            save_state(self.state_path, self.state)
        return decision

    def handle_alert(self, raw: bytes, where: str = "") -> Decision:
        """Decide on one ``drift-alerts`` record and save the decision (before any commit)."""
        try:
            alert = DriftAlert.model_validate_json(raw)
        except ValidationError as exc:
            log.warning("skipping an invalid drift alert at %s: %s", where, exc.errors(include_url=False)[:2])
            self.metrics.alerts.labels("invalid").inc()
            return Decision(False, "invalid")
        self.check_job()
        now = self.clock()
        decision = self.policy.on_alert(self.state, alert.alert_id, now, alert.harm)
        if decision.launch:
            self._launch("drift", alert.alert_id, now, alert)
        self.state.record_alert(alert.alert_id)
        save_state(self.state_path, self.state)
        self.metrics.alerts.labels(decision.reason).inc()
        log.info(
            "drift alert %s (%s, %s): %s%s",
            alert.alert_id,
            alert.detector,
            alert.severity,
            decision.reason,
            f" ({decision.detail})" if decision.detail else "",
        )
        return decision

    def tick(self, since: float) -> Decision:
        """The schedule: launch a job when one is due."""
        self.check_job()
        now = self.clock()
        decision = self.policy.on_tick(self.state, now, since)
        if decision.launch:
            self._launch("schedule", "", now)
            save_state(self.state_path, self.state)
        return decision

    def wait_job(self, stop: threading.Event, poll_s: float = 0.5) -> None:
        while self.state.running is not None and not stop.is_set():
            if self.check_job() is None:
                stop.wait(poll_s)

    def _consumer(self, config: Mapping[str, str]) -> Consumer:
        return Consumer(
            {
                **config,
                "group.id": f"{self.settings.app_id}-launcher",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1000,
                "topic.metadata.refresh.interval.ms": 5000,
            }
        )

    @staticmethod
    def _ends_and_positions(consumer: Consumer, config: Mapping[str, str]) -> tuple[dict, dict]:
        assigned = consumer.assignment()
        marks = {tp: consumer.get_watermark_offsets(tp, timeout=10) for tp in assigned}
        ends = exact_end_offsets(config, {tp: high for tp, (_, high) in marks.items()})
        committed = consumer.committed(assigned, timeout=10)
        positions = {tp.partition: tp.offset if tp.offset >= 0 else marks[tp][0] for tp in committed}
        keyed = {tp.partition: end for tp, end in ends.items()}
        return keyed, positions

    def run(
        self,
        once: bool = False,
        stop: threading.Event | None = None,
        poll_s: float = 1.0,
        assign_timeout_s: float = 60.0,
    ) -> LauncherState:
        """Consume alerts until ``stop``; with ``once``, until the alerts there now are decided
        and the launched (or inherited) job has ended."""
        stop = stop or threading.Event()
        since = self.clock()
        config = confluent_config(self.settings, self.settings.resolved_bootstrap())
        topic = self.settings.topic(DRIFT_ALERTS)
        ensure_topics(config, [s for s in topic_specs(self.settings) if s.name == topic])
        if self.state.running is not None:
            log.info(
                "waiting for retraining run %d (%s) from before the restart",
                self.state.running.run,
                self.state.running.handle,
            )
        consumer = self._consumer(config)
        consumer.subscribe([topic])
        ends: dict[int, int] | None = None
        positions: dict[int, int] = {}
        deadline = time.monotonic() + assign_timeout_s
        try:
            while not stop.is_set():
                for msg in consumer.consume(500, poll_s):
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.warning("consuming %s: %s", topic, err)
                        continue
                    where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
                    self.handle_alert(msg.value() or b"", where)
                    consumer.commit(message=msg, asynchronous=False)
                    positions[cast(int, msg.partition())] = cast(int, msg.offset()) + 1  # set on every record
                self.tick(since)
                self.judge_shadow()
                if not once:
                    continue
                if ends is None:
                    if consumer.assignment():
                        ends, start = self._ends_and_positions(consumer, config)
                        positions = {p: max(positions.get(p, 0), start.get(p, 0)) for p in ends}
                    elif time.monotonic() > deadline:
                        raise BrokerError(
                            f"no partition of {topic} was assigned to group "
                            f"{self.settings.app_id}-launcher within {assign_timeout_s:.0f}s"
                        )
                if ends is not None and all(positions.get(p, 0) >= end for p, end in ends.items()):
                    break
        finally:
            consumer.close()
        if once:  # the consumer is closed first: a long job must not outlive max.poll.interval.ms in the group
            self.wait_job(stop, min(poll_s, 0.5))
            self.judge_shadow(force=True)
        return self.state


BACKENDS = ("subprocess", "kubernetes")


def build_launcher(settings: Settings, job_template: Path | None = None, backend: str | None = None) -> Launcher:
    """The backend ``backend`` names (default ``CHURN_LAUNCHER_BACKEND``): local subprocesses, or Kubernetes
    Jobs from ``job_template`` (default: the packaged template). A template alone means Kubernetes."""
    chosen = backend or ("kubernetes" if job_template is not None else settings.launcher_backend)
    if chosen not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, not {chosen!r}")
    if chosen == "kubernetes":
        return KubernetesJobLauncher(job_template or DEFAULT_JOB_TEMPLATE)
    if job_template is not None:
        raise ConfigError("--job-template is a Kubernetes Job: it needs --backend kubernetes, not subprocess")
    return SubprocessLauncher.for_settings(settings)
