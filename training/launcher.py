"""The retrain launcher (``churn launcher``): drift alerts in, one retraining job at a time out.

::

    drift-alerts ──► RetrainLauncher ──► LaunchPolicy (pure: launch now?) ──► Launcher
                        │  consumer group <app_id>-launcher          SubprocessLauncher: churn retrain
                        │  commit after the decision is saved        KubernetesJobLauncher: kubectl create
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

Outcomes (the ``outcome`` label of ``churn_retrains_total``): ``promoted`` and
``rejected`` (from the job's result file), ``succeeded`` (exit 0, no result file),
``failed`` (non-zero exit, its code recorded; or a result file saying so) and
``unknown`` (the job ended while the launcher was away, so its exit code is not known,
and it left no result file).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import yaml
from confluent_kafka import Consumer, KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import SecretStr, ValidationError

from schemas.outputs import DriftAlert
from stream.errors import BrokerError, ChurnError, ConfigError
from stream.kafka.config import confluent_config
from stream.kafka.topics import DRIFT_ALERTS, ensure_topics, topic_specs
from stream.runtime.end_offsets import exact_end_offsets
from stream.settings import ENV_PREFIX, Settings


def churn_executable() -> list[str]:
    """How to run ``churn`` from this interpreter's environment."""
    script = Path(sys.executable).parent / "churn"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from stream.cli.commands import main; main()"]


def child_env(churn_vars: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its ``CHURN_*`` variables, plus ``churn_vars``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update({k: str(v) for k, v in churn_vars.items()})
    return env


log = logging.getLogger(__name__)

DEFAULT_COOLDOWN_S = 300.0
HANDLED_MEMORY = 1000  # alert ids remembered across restarts
DEFAULT_JOB_TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "k8s" / "retrain-job.yaml"


# --- state ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningJob:
    """A launched job: ``handle`` is a pid or a Kubernetes Job name."""

    handle: str
    run: int
    trigger: str
    alert_id: str
    started_at: float
    result_file: str = ""


@dataclass(frozen=True)
class JobEnd:
    """How a job ended; ``exit_code`` is None when the launcher could not observe it."""

    exit_code: int | None
    outcome: str


@dataclass
class LauncherState:
    """What the launcher remembers across restarts. Times are epoch seconds."""

    launches: int = 0
    running: RunningJob | None = None
    last_launch_at: float | None = None
    last_end_at: float | None = None
    last_alert_id: str = ""
    last_outcome: str = ""
    last_exit_code: int | None = None
    last_job: RunningJob | None = None
    handled: list[str] = field(default_factory=list)

    def record_alert(self, alert_id: str) -> None:
        self.last_alert_id = alert_id
        if alert_id not in self.handled:
            self.handled.append(alert_id)
            del self.handled[:-HANDLED_MEMORY]

    def record_launch(self, job: RunningJob) -> None:
        self.running = job
        self.launches += 1
        self.last_launch_at = job.started_at

    def record_end(self, end: JobEnd, now: float) -> None:
        self.last_job, self.running = self.running, None
        self.last_end_at = now
        self.last_outcome = end.outcome
        self.last_exit_code = end.exit_code

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping) -> LauncherState:
        data = dict(raw)
        for key in ("running", "last_job"):
            if data.get(key) is not None:
                data[key] = RunningJob(**data[key])
        return cls(**data)


def state_dir(settings: Settings) -> Path:
    return settings.data_dir / "launcher"


def load_state(path: Path) -> LauncherState:
    """The saved state, or a fresh one when there is no file yet."""
    try:
        raw = json.loads(path.read_text())
        return LauncherState.from_dict(raw)
    except FileNotFoundError:
        return LauncherState()
    except (OSError, ValueError, TypeError) as exc:
        raise ChurnError(
            f"launcher state {path} is unreadable ({exc}); fix or remove it "
            "(removing it forgets the running job and the alerts already handled)"
        ) from exc


def save_state(path: Path, state: LauncherState) -> None:
    """Write ``state`` atomically: a temporary file in the same folder, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state.to_dict(), f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with suppress(OSError):  # make the rename durable where the platform allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# --- the decision -----------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """``reason`` is a short code (a metric label): launched, running, cooldown, duplicate, no_harm, not_due."""

    launch: bool
    reason: str
    detail: str = ""


class LaunchPolicy:
    """Pure: given the state, the time and an alert (or a timer tick), launch or not.

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

    ``retrain_on``: ``harm`` launches only for alerts that judge the serving model hurt
    (``DriftAlert.harm``); ``any`` for every alert. A rejected job is retried by the next
    alert after the cooldown: while the harm persists, alerts keep coming, and each job
    learns from more matured data than the last.
    """

    RETRAIN_ON = ("harm", "any")

    def __init__(
        self, cooldown_s: float = DEFAULT_COOLDOWN_S, every_s: float | None = None, retrain_on: str = "harm"
    ) -> None:
        if cooldown_s < 0:
            raise ConfigError(f"--cooldown must be >= 0 seconds, got {cooldown_s}")
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
        if state.last_end_at is not None and now - state.last_end_at < self.cooldown_s:
            left = self.cooldown_s - (now - state.last_end_at)
            return Decision(False, "cooldown", f"{left:.0f}s of cooldown left")
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
        return Decision(True, "launched", "scheduled")


# --- launchers --------------------------------------------------------------------------


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


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as ``CHURN_*`` variables, so a child process sees exactly these settings."""
    env = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        env[f"{ENV_PREFIX}{name.upper()}"] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return env


def result_outcome(exit_code: int | None, result_file: str) -> str:
    """The outcome of an ended job from its exit code and the result file it wrote."""
    if exit_code not in (0, None):
        return "failed"
    try:
        decision = json.loads(Path(result_file).read_text()).get("decision", "") if result_file else ""
    except (OSError, ValueError, AttributeError):
        decision = ""
    if decision in ("promoted", "rejected", "failed"):
        return decision
    return "succeeded" if exit_code == 0 else "unknown"


def _alive(pid: int) -> bool:
    """True while ``pid`` is a live (not zombie) ``churn retrain`` process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False
            return b"retrain" in (proc / "cmdline").read_bytes()  # else the pid was reused
        except OSError:
            return False
    return True


class SubprocessLauncher:
    """Runs ``churn retrain`` as a child process with the launcher's settings.

    The child gets its own session (a launcher stopped with Ctrl-C leaves it running,
    and the restarted launcher waits for it), a log file and a result file in
    ``work_dir``.
    """

    def __init__(
        self, work_dir: Path, env: Mapping[str, str] | None = None, command: Sequence[str] | None = None
    ) -> None:
        self.work_dir = Path(work_dir)
        self.env = dict(os.environ if env is None else env)
        self.command = list(command or churn_executable())
        self._children: dict[str, tuple[subprocess.Popen, object]] = {}

    @classmethod
    def for_settings(cls, settings: Settings) -> SubprocessLauncher:
        return cls(state_dir(settings), {**os.environ, **settings_env(settings)})

    def launch(self, request: LaunchRequest) -> RunningJob:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        result = self.work_dir / f"retrain-{request.run}.result.json"
        result.unlink(missing_ok=True)
        log_path = self.work_dir / f"retrain-{request.run}.log"
        argv = [*self.command, "retrain", *request.options(), "--result-file", str(result)]
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed when the job ends
        try:
            proc = subprocess.Popen(
                argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            log_file.close()
            raise ChurnError(f"cannot start the retraining job {argv[0]}: {exc}") from exc
        self._children[str(proc.pid)] = (proc, log_file)
        log.info("retraining job pid %d started: %s (log %s)", proc.pid, " ".join(argv), log_path)
        return RunningJob(str(proc.pid), request.run, request.trigger, request.alert_id, request.now, str(result))

    def poll(self, job: RunningJob) -> JobEnd | None:
        child = self._children.get(job.handle)
        if child is not None:
            proc, log_file = child
            code = proc.poll()
            if code is None:
                return None
            del self._children[job.handle]
            log_file.close()
            return JobEnd(code, result_outcome(code, job.result_file))
        if _alive(int(job.handle)):  # launched by an earlier launcher process
            return None
        return JobEnd(None, result_outcome(None, job.result_file))

    def stop_all(self, grace_s: float = 10.0) -> list[int]:
        """Stop the jobs this launcher started (SIGTERM to each job's session, SIGKILL after
        ``grace_s``); their pids. A launcher that is stopped for good calls it; a restart
        does not (the restarted launcher waits for the job instead)."""
        stopped = []
        for handle, (proc, log_file) in list(self._children.items()):
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(grace_s)
                except subprocess.TimeoutExpired:
                    with suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
                stopped.append(proc.pid)
            log_file.close()
            del self._children[handle]
        return stopped


class KubernetesJobLauncher:
    """Submits ``deploy/k8s/retrain-job.yaml`` with ``kubectl create -f -`` and watches the Job."""

    def __init__(self, template: Path = DEFAULT_JOB_TEMPLATE, kubectl: str = "kubectl") -> None:
        self.template = Path(template)
        self.kubectl = kubectl

    def render(self, request: LaunchRequest) -> str:
        """The Job manifest for ``request``: the template with the alert's options and labels."""
        try:
            doc = yaml.safe_load(self.template.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read the retraining Job template {self.template}: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("kind") != "Job":
            raise ConfigError(f"{self.template} is not a Kubernetes Job manifest")
        pod = doc["spec"]["template"]
        (container,) = pod["spec"]["containers"][:1]
        container["args"] = [*(container.get("args") or ["retrain"]), *request.options()]
        for meta in (doc.setdefault("metadata", {}), pod.setdefault("metadata", {})):
            meta.setdefault("labels", {})["churn-stream/trigger"] = request.trigger
            meta.setdefault("annotations", {})["churn-stream/alert-id"] = request.alert_id
        return yaml.safe_dump(doc, sort_keys=False)

    def _kubectl(self, *args: str, manifest: str | None = None) -> subprocess.CompletedProcess:
        exe = shutil.which(self.kubectl)
        if exe is None:
            raise ChurnError(
                f"{self.kubectl} not found on PATH: the Kubernetes launcher submits the retraining "
                "Job with `kubectl create -f -` (install kubectl, or run the launcher without "
                "--job-template to start jobs as local processes)"
            )
        try:
            return subprocess.run([exe, *args], input=manifest, capture_output=True, text=True, timeout=60, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ChurnError(f"kubectl {' '.join(args)} did not answer within 60s") from exc

    def launch(self, request: LaunchRequest) -> RunningJob:
        done = self._kubectl("create", "-f", "-", "-o", "name", manifest=self.render(request))
        if done.returncode != 0:
            raise ChurnError(f"kubectl create of the retraining Job failed: {done.stderr.strip()}")
        name = done.stdout.strip()
        log.info("retraining Job %s created", name)
        return RunningJob(name, request.run, request.trigger, request.alert_id, request.now)

    def poll(self, job: RunningJob) -> JobEnd | None:
        done = self._kubectl("get", job.handle, "-o", "jsonpath={.status.succeeded} {.status.failed}")
        if done.returncode != 0:
            if "NotFound" in done.stderr:  # deleted (ttlSecondsAfterFinished, or by hand)
                return JobEnd(None, "unknown")
            log.warning("kubectl get %s failed: %s", job.handle, done.stderr.strip())
            return None
        succeeded, _, failed = done.stdout.partition(" ")
        if succeeded.strip() not in ("", "0"):
            return JobEnd(0, "succeeded")
        if failed.strip() not in ("", "0"):
            return JobEnd(1, "failed")
        return None


# --- metrics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LauncherMetrics:
    registry: CollectorRegistry
    alerts: Counter
    launches: Counter
    retrains: Counter
    running: Gauge

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
        )


# --- the service ------------------------------------------------------------------------


class RetrainLauncher:
    """Consumes ``drift-alerts`` and launches retraining jobs as the policy decides.

    With ``learn_since_drift_s`` a drift-triggered job learns only from the world since
    the alert's window start and waits up to that many seconds for its labels to mature
    (``churn retrain --since --wait-labels``); ``job_args`` go to every job.
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
    ) -> None:
        if learn_since_drift_s is not None and learn_since_drift_s < 0:
            raise ConfigError(f"--learn-since-drift must be >= 0 seconds, got {learn_since_drift_s}")
        self.learn_since_drift_s = learn_since_drift_s
        self.job_args = tuple(job_args)
        self.settings = settings
        self.launcher = launcher
        self.policy = policy
        self.metrics = metrics or LauncherMetrics.create()
        self.state_path = state_path or state_dir(settings) / "state.json"
        self.clock = clock
        self.state = load_state(self.state_path)
        self.metrics.running.set(1 if self.state.running else 0)

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
            "retraining run %d (%s) ended: %s, exit code %s; %d launches so far",
            job.run,
            job.handle,
            end.outcome,
            end.exit_code,
            self.state.launches,
        )
        return end

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
                    positions[msg.partition()] = msg.offset() + 1
                self.tick(since)
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
        return self.state


def build_launcher(settings: Settings, job_template: Path | None = None) -> Launcher:
    """The Kubernetes launcher when a Job template is given, else local subprocesses."""
    if job_template is not None:
        return KubernetesJobLauncher(job_template)
    return SubprocessLauncher.for_settings(settings)
