"""The retrain launcher without a broker: decisions, state on disk, launchers, the CLI's error path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support.events import drift_alert

from stream.errors import ChurnError, ConfigError
from stream.settings import Settings
from training.launcher import (
    DEFAULT_JOB_TEMPLATE,
    JobEnd,
    KubernetesJobLauncher,
    LauncherState,
    LaunchPolicy,
    LaunchRequest,
    RetrainLauncher,
    RunningJob,
    SubprocessLauncher,
    load_state,
    save_state,
    settings_env,
)
from training.shadow import Challenger, ShadowDecision, ShadowEvidence, ShadowRule

pytestmark = pytest.mark.unit

CHURN = str(Path(sys.executable).parent / "churn")
T0 = 1_800_000_000.0


def alert(alert_id: str) -> bytes:
    return drift_alert(alert_id)


class FakeLauncher:
    """Jobs end when the test says so (``ends[handle]``)."""

    def __init__(self) -> None:
        self.calls: list[LaunchRequest] = []
        self.ends: dict[str, JobEnd] = {}

    def launch(self, request: LaunchRequest) -> RunningJob:
        self.calls.append(request)
        return RunningJob(f"job-{request.run}", request.run, request.trigger, request.alert_id, request.now)

    def poll(self, job: RunningJob) -> JobEnd | None:
        return self.ends.get(job.handle)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def service(tmp_path, launcher, clock, cooldown_s=300.0, every_s=None) -> RetrainLauncher:
    settings = Settings(data_dir=tmp_path)
    return RetrainLauncher(settings, launcher, LaunchPolicy(cooldown_s, every_s), clock=clock)


# --- the pure decision ------------------------------------------------------------------


def test_a_storm_while_the_job_runs_launches_once():
    policy, state = LaunchPolicy(cooldown_s=300), LauncherState()
    launches = 0
    for i in range(50):
        now = T0 + i
        decision = policy.on_alert(state, f"a{i}", now)
        if decision.launch:
            launches += 1
            state.record_launch(RunningJob("1", launches, "drift", f"a{i}", now))
        state.record_alert(f"a{i}")
    assert launches == 1 and state.launches == 1
    assert policy.on_alert(state, "late", T0 + 60).reason == "running"


def test_cooldown_counts_from_the_end_of_the_last_job():
    policy, state = LaunchPolicy(cooldown_s=300), LauncherState()
    state.record_launch(RunningJob("1", 1, "drift", "a", T0))
    state.record_end(JobEnd(0, "promoted"), now=T0 + 1000)  # a long job: cooldown starts at its end
    assert policy.on_alert(state, "b", T0 + 1000 + 299.9).reason == "cooldown"
    assert policy.on_alert(state, "b", T0 + 1000 + 300).launch
    assert LaunchPolicy(cooldown_s=0).on_alert(state, "b", T0 + 1000).launch


def test_an_alert_already_handled_is_never_launched_again():
    policy, state = LaunchPolicy(cooldown_s=0), LauncherState()
    state.record_alert("a")
    assert policy.on_alert(state, "a", T0).reason == "duplicate"
    assert policy.on_alert(state, "b", T0).launch


def test_alerts_that_judge_the_model_unhurt_launch_nothing_unless_asked():
    state = LauncherState()
    assert LaunchPolicy(cooldown_s=0).on_alert(state, "low", T0, harm=False).reason == "no_harm"
    assert LaunchPolicy(cooldown_s=0, retrain_on="any").on_alert(state, "low", T0, harm=False).launch
    with pytest.raises(ConfigError, match="--retrain-on"):
        LaunchPolicy(retrain_on="sometimes")


def test_a_rejected_job_is_retried_by_the_next_harmful_alert_after_the_cooldown():
    policy, state = LaunchPolicy(cooldown_s=300), LauncherState()
    state.record_launch(RunningJob("1", 1, "drift", "a", T0))
    state.record_end(JobEnd(0, "rejected"), now=T0 + 100)
    state.record_alert("a")
    assert policy.on_alert(state, "b", T0 + 200).reason == "cooldown"
    assert policy.on_alert(state, "c", T0 + 400).launch


def test_schedule_is_due_every_period_and_single_flight():
    policy, state = LaunchPolicy(cooldown_s=300, every_s=3600), LauncherState()
    assert policy.on_tick(state, T0 + 3599, since=T0).reason == "not_due"
    assert policy.on_tick(state, T0 + 3600, since=T0).launch
    state.record_launch(RunningJob("1", 1, "schedule", "", T0 + 3600))
    assert policy.on_tick(state, T0 + 7200, since=T0).reason == "running"
    state.record_end(JobEnd(0, "rejected"), now=T0 + 7300)
    assert policy.on_tick(state, T0 + 7300, since=T0).launch  # regardless of the cooldown
    assert LaunchPolicy().on_tick(state, T0 + 10**6, since=T0).reason == "not_due"


def test_bad_policy_values_say_which_option():
    with pytest.raises(ChurnError, match="--cooldown"):
        LaunchPolicy(cooldown_s=-1)
    with pytest.raises(ChurnError, match="--every"):
        LaunchPolicy(every_s=0)


# --- the service with a fake launcher ----------------------------------------------------


def test_service_storm_then_cooldown_then_a_second_launch(tmp_path):
    fake, clock = FakeLauncher(), Clock()
    svc = service(tmp_path, fake, clock)
    decisions = [svc.handle_alert(alert(f"s{i}")).reason for i in range(20)]
    assert decisions == ["launched"] + ["running"] * 19
    fake.ends["job-1"] = JobEnd(0, "promoted")
    clock.now += 10
    assert svc.handle_alert(alert("after")).reason == "cooldown"
    assert svc.state.last_outcome == "promoted" and svc.state.last_end_at == T0 + 10
    clock.now += 300
    assert svc.handle_alert(alert("later")).reason == "launched"
    assert [c.alert_id for c in fake.calls] == ["s0", "later"]
    assert [c.run for c in fake.calls] == [1, 2]


def test_a_failed_job_is_recorded_with_its_exit_code(tmp_path):
    fake, clock = FakeLauncher(), Clock()
    svc = service(tmp_path, fake, clock)
    svc.handle_alert(alert("a"))
    fake.ends["job-1"] = JobEnd(3, "failed")
    assert svc.check_job() == JobEnd(3, "failed")
    saved = load_state(svc.state_path)
    assert saved.last_outcome == "failed" and saved.last_exit_code == 3 and saved.running is None
    assert saved.last_job is not None and saved.last_job.alert_id == "a"
    samples = {
        s.labels["outcome"]: s.value
        for m in svc.metrics.retrains.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }
    assert samples == {"failed": 1.0}


def test_restart_with_the_saved_state_does_not_relaunch(tmp_path):
    fake, clock = FakeLauncher(), Clock()
    first = service(tmp_path, fake, clock)
    first.handle_alert(alert("a"))
    # A new launcher process: same state file, the job still running.
    second = service(tmp_path, fake, clock)
    assert second.state.running == first.state.running
    assert second.handle_alert(alert("a")).reason == "duplicate"  # redelivered: offsets not yet committed
    assert second.handle_alert(alert("b")).reason == "running"
    assert len(fake.calls) == 1
    # And once that job has ended, the restarted launcher records it.
    fake.ends["job-1"] = JobEnd(0, "rejected")
    clock.now += 1
    assert service(tmp_path, fake, clock).check_job() == JobEnd(0, "rejected")
    assert load_state(first.state_path).last_outcome == "rejected"


def test_invalid_alerts_are_counted_and_change_nothing(tmp_path):
    fake = FakeLauncher()
    svc = service(tmp_path, fake, Clock())
    assert svc.handle_alert(b'{"alert_id": "x"}').reason == "invalid"
    assert svc.handle_alert(b"not json").reason == "invalid"
    assert fake.calls == [] and not svc.state_path.exists()


def test_scheduled_run_through_the_service(tmp_path):
    fake, clock = FakeLauncher(), Clock()
    svc = service(tmp_path, fake, clock, every_s=60)
    assert not svc.tick(since=T0).launch
    clock.now += 60
    assert svc.tick(since=T0).launch
    assert [(c.trigger, c.alert_id) for c in fake.calls] == [("schedule", "")]
    assert load_state(svc.state_path).running is not None


# --- the shadow stage: a challenger judged by the pure rule --------------------------------


class FakeShadow:
    """A registry with one challenger (or none) and workers whose evidence the test sets; applied
    decisions are recorded and move the challenger out, as the registry would."""

    def __init__(self, version: str | None = None, since: float | None = None) -> None:
        self.current = None if version is None else Challenger("churn-model", "challenger", version, "3", since)
        self.labels = 0
        self.auc = (0.70, 0.70)
        self.applied: list[tuple[str, str]] = []
        self.reads = 0

    def challenger(self) -> Challenger | None:
        return self.current

    def evidence(self, challenger, texts=None) -> ShadowEvidence:
        self.reads += 1
        production, candidate = self.auc
        return ShadowEvidence(
            challenger.production_version,
            challenger.version,
            self.labels,
            {"roc_auc": production, "log_loss": 0.30},
            {"roc_auc": candidate, "log_loss": 0.29},
        )

    def apply(self, challenger, decision: ShadowDecision, evidence) -> None:
        if decision.action != "wait":
            self.applied.append((decision.action, challenger.version))
            self.current = None


RULE = ShadowRule(min_labels=1000, margin=0.01, deadline_s=3600.0)


def shadow_service(tmp_path, launcher, clock, shadow, judge_every_s=60.0) -> RetrainLauncher:
    settings = Settings(data_dir=tmp_path, launcher_stage="shadow")
    return RetrainLauncher(
        settings,
        launcher,
        LaunchPolicy(cooldown_s=0),
        clock=clock,
        shadow=shadow,
        rule=RULE,
        judge_every_s=judge_every_s,
    )


def test_shadow_stage_jobs_register_a_challenger_and_alerts_wait_for_its_verdict(tmp_path):
    fake, clock, shadow = FakeLauncher(), Clock(), FakeShadow()
    svc = shadow_service(tmp_path, fake, clock, shadow)
    assert svc.handle_alert(alert("a")).reason == "launched"
    assert fake.calls[0].options()[-2:] == ["--stage", "shadow"]
    shadow.current = Challenger("churn-model", "challenger", "4", "3", T0 + 5)  # the job registered it
    fake.ends["job-1"] = JobEnd(0, "shadowed")
    clock.now += 10
    assert svc.check_job() == JobEnd(0, "shadowed")
    assert svc.state.shadow is not None and (svc.state.shadow.version, svc.state.shadow.since) == ("4", T0 + 5)
    assert svc.handle_alert(alert("b")).reason == "shadowing"  # the cooldown is 0: only the challenger holds it
    assert svc.tick(since=T0).reason == "not_due"
    assert len(fake.calls) == 1


def test_the_loop_promotes_on_evidence_and_frees_the_launcher(tmp_path):
    fake, clock, shadow = FakeLauncher(), Clock(), FakeShadow("4", since=T0)
    svc = shadow_service(tmp_path, fake, clock, shadow)
    steps = []
    for labels, auc in ((0, (0.70, 0.80)), (600, (0.70, 0.80)), (1200, (0.70, 0.705)), (1500, (0.70, 0.72))):
        clock.now += 60
        shadow.labels, shadow.auc = labels, auc
        decision = svc.judge_shadow()
        steps.append(decision.action)
    assert steps == ["wait", "wait", "wait", "promote"]  # too few labels, then short of the margin, then won
    assert shadow.applied == [("promote", "4")]
    assert svc.state.shadow is None
    saved = load_state(svc.state_path)
    assert saved.last_shadow is not None and (saved.last_shadow.version, saved.last_shadow.action) == ("4", "promote")
    assert "1500 matured labels" in saved.last_shadow.reason
    counts = {
        s.labels["decision"]: s.value
        for m in svc.metrics.shadow.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }
    assert counts == {"wait": 3.0, "promote": 1.0}
    clock.now += 60
    assert svc.judge_shadow() is None  # nothing in shadow any more
    assert svc.handle_alert(alert("next")).reason == "launched"


def test_the_evidence_is_read_once_per_period(tmp_path):
    clock, shadow = Clock(), FakeShadow("4", since=T0)
    svc = shadow_service(tmp_path, FakeLauncher(), clock, shadow, judge_every_s=30.0)
    assert svc.judge_shadow().action == "wait"
    clock.now += 29
    assert svc.judge_shadow() is None
    clock.now += 1
    assert svc.judge_shadow().action == "wait"
    assert shadow.reads == 2


def test_a_restart_keeps_the_deadline_of_a_challenger_the_registry_has_no_time_for(tmp_path):
    fake, clock, shadow = FakeLauncher(), Clock(), FakeShadow("4", since=None)  # aliased by hand: no shadow.since
    assert shadow_service(tmp_path, fake, clock, shadow).judge_shadow().action == "wait"  # first seen now
    clock.now += 3599
    restarted = shadow_service(tmp_path, fake, clock, shadow)
    assert restarted.state.shadow is not None and restarted.state.shadow.since == T0
    assert restarted.judge_shadow().action == "wait"
    clock.now += 1
    decision = shadow_service(tmp_path, fake, clock, shadow).judge_shadow()
    assert decision.action == "drop" and "3600s in shadow" in decision.reason
    assert shadow.applied == [("drop", "4")]
    assert load_state(tmp_path / "launcher" / "state.json").last_shadow.action == "drop"


def test_a_challenger_gone_elsewhere_or_a_new_one_resets_the_watch(tmp_path):
    clock, shadow = Clock(), FakeShadow("4", since=T0)
    svc = shadow_service(tmp_path, FakeLauncher(), clock, shadow)
    svc.judge_shadow()
    shadow.current = None  # promoted by hand (churn models promote --from-shadow)
    assert svc.judge_shadow(force=True) is None and svc.state.shadow is None
    shadow.current = Challenger("churn-model", "challenger", "5", "4", None)
    clock.now += 100
    svc.judge_shadow(force=True)
    assert (svc.state.shadow.version, svc.state.shadow.since) == ("5", T0 + 100)


def test_the_promote_stage_judges_nothing_and_forgets_a_stale_watch(tmp_path):
    fake, clock = FakeLauncher(), Clock()
    shadowing = shadow_service(tmp_path, fake, clock, FakeShadow("4", since=T0))
    shadowing.judge_shadow()
    promoting = service(tmp_path, fake, clock, cooldown_s=0)
    assert promoting.state.shadow is None and promoting.judge_shadow() is None
    assert promoting.handle_alert(alert("a")).reason == "launched"
    assert "--stage" not in fake.calls[0].options()
    with pytest.raises(ConfigError, match="--stage"):
        RetrainLauncher(Settings(data_dir=tmp_path), fake, LaunchPolicy(), stage="canary")
    with pytest.raises(ConfigError, match="CHURN_SHADOW_ALIAS"):
        RetrainLauncher(Settings(data_dir=tmp_path, shadow_alias=""), fake, LaunchPolicy(), stage="shadow")


# --- state on disk -----------------------------------------------------------------------


def test_state_round_trips_and_is_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "launcher" / "state.json"
    state = LauncherState()
    state.record_launch(RunningJob("123", 1, "drift", "a", T0, "/tmp/r.json"))
    state.record_alert("a")
    save_state(path, state)
    assert load_state(path) == state
    assert os.listdir(path.parent) == ["state.json"]

    # A write that fails half-way leaves the previous state intact and no temporary file behind.
    def broken_dump(obj, f, **kwargs):
        f.write('{"launches": 99, "runn')
        raise OSError("disk full")

    monkeypatch.setattr("training.launcher.state.json.dump", broken_dump)
    state.record_end(JobEnd(1, "failed"), T0 + 5)
    with pytest.raises(OSError, match="disk full"):
        save_state(path, state)
    monkeypatch.undo()
    assert load_state(path).running is not None and load_state(path).launches == 1
    assert os.listdir(path.parent) == ["state.json"]


def test_handled_ids_are_bounded(tmp_path):
    state = LauncherState()
    for i in range(1500):
        state.record_alert(f"a{i}")
    assert len(state.handled) == 1000 and state.handled[-1] == "a1499" and state.last_alert_id == "a1499"


def test_missing_state_is_fresh_and_a_corrupt_one_is_a_clear_error(tmp_path):
    assert load_state(tmp_path / "none.json") == LauncherState()
    bad = tmp_path / "state.json"
    bad.write_text("{not json")
    with pytest.raises(ChurnError, match="state.json is unreadable"):
        load_state(bad)


# --- launchers ---------------------------------------------------------------------------


def wait_end(launcher, job, timeout=20.0) -> JobEnd:
    deadline = time.monotonic() + timeout
    while (end := launcher.poll(job)) is None:
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.05)
    return end


def request(run=1) -> LaunchRequest:
    return LaunchRequest(run=run, trigger="drift", alert_id="a-1", now=T0)


def test_subprocess_launcher_records_exit_code_and_decision(tmp_path):
    failing = SubprocessLauncher(tmp_path, command=[sys.executable, "-c", "import sys; sys.exit(3)"])
    job = failing.launch(request(1))
    assert wait_end(failing, job) == JobEnd(3, "failed")

    script = (
        "import json, sys; a = sys.argv; assert a[1:6] == ['retrain', '--trigger', 'drift', '--alert-id', "
        "'a-1'], a; open(a[a.index('--result-file') + 1], 'w').write(json.dumps({'decision': 'rejected'}))"
    )
    deciding = SubprocessLauncher(tmp_path, command=[sys.executable, "-c", script])
    job = deciding.launch(request(2))
    assert wait_end(deciding, job) == JobEnd(0, "rejected")
    assert (tmp_path / "retrain-2.log").exists()


def test_a_job_gets_the_registry_login_in_its_environment_never_its_command_line(tmp_path, caplog):
    secret = "job-s3cret-" + os.urandom(6).hex()
    settings = Settings(data_dir=tmp_path, mlflow_username="churn-trainer", mlflow_password=secret)
    script = (
        "import json, os, sys; a = sys.argv; open(a[a.index('--result-file') + 1], 'w').write(json.dumps("
        "{'decision': 'rejected', 'argv': a, 'user': os.environ['CHURN_MLFLOW_USERNAME'], "
        "'password': os.environ['CHURN_MLFLOW_PASSWORD']}))"
    )
    jobs = SubprocessLauncher(
        tmp_path, {**os.environ, **settings_env(settings)}, command=[sys.executable, "-c", script]
    )
    with caplog.at_level("DEBUG"):
        job = jobs.launch(request(3))
        assert wait_end(jobs, job) == JobEnd(0, "rejected")
    seen = json.loads(Path(job.result_file).read_text())
    assert (seen["user"], seen["password"]) == ("churn-trainer", secret)
    assert not [arg for arg in seen["argv"] if secret in arg]
    assert "retraining job pid" in caplog.text and secret not in caplog.text


def test_a_job_from_before_a_restart_is_waited_on(tmp_path):
    # A process the launcher did not start itself (its pid comes from the state file).
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "retrain"])
    try:
        job = RunningJob(str(sleeper.pid), 1, "drift", "a", T0, str(tmp_path / "retrain-1.result.json"))
        launcher = SubprocessLauncher(tmp_path)
        assert launcher.poll(job) is None
    finally:
        sleeper.kill()
        sleeper.wait()
    assert launcher.poll(job) == JobEnd(None, "unknown")
    (tmp_path / "retrain-1.result.json").write_text('{"decision": "failed", "error": "the feature log is empty"}')
    assert launcher.poll(job) == JobEnd(None, "failed")
    (tmp_path / "retrain-1.result.json").write_text('{"decision": "promoted"}')
    assert launcher.poll(job) == JobEnd(None, "promoted")


def _k8s(template: Path = DEFAULT_JOB_TEMPLATE) -> KubernetesJobLauncher:
    """Rendering needs no cluster: a configuration that points nowhere (the API tests are in
    test_launcher_kubernetes.py)."""
    from kubernetes import client

    return KubernetesJobLauncher(template, namespace="x", configuration=client.Configuration(host="http://127.0.0.1:9"))


def test_kubernetes_job_renders_the_template_with_the_alert():
    doc = _k8s().render(LaunchRequest(run=4, trigger="drift", alert_id="psi-2026-01-01", now=T0))
    template = yaml.safe_load(DEFAULT_JOB_TEMPLATE.read_text())
    assert doc["kind"] == "Job" and doc["metadata"]["generateName"] == "churn-retrain-"
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    (original,) = template["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [*original["args"], "--trigger", "drift", "--alert-id", "psi-2026-01-01"]
    assert original["args"] == ["retrain", "--termination-log", "/dev/termination-log"]
    assert {k: v for k, v in container.items() if k != "args"} == {k: v for k, v in original.items() if k != "args"}
    for meta in (doc["metadata"], doc["spec"]["template"]["metadata"]):
        assert meta["labels"]["churn-stream/trigger"] == "drift"
        assert meta["labels"]["churn-stream/run"] == "4"
        assert meta["annotations"]["churn-stream/alert-id"] == "psi-2026-01-01"
    assert doc["spec"]["backoffLimit"] == 0 and doc["spec"]["template"]["spec"]["restartPolicy"] == "Never"

    scheduled = _k8s().render(LaunchRequest(5, "schedule", "", T0))
    assert scheduled["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == ["--trigger", "schedule"]


def test_kubernetes_launcher_refuses_a_template_that_is_not_a_job(tmp_path):
    bad = tmp_path / "job.yaml"
    bad.write_text("kind: Deployment\n")
    with pytest.raises(ChurnError, match="not a Kubernetes Job"):
        _k8s(bad)


def test_settings_env_gives_a_child_the_same_settings(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path, topic_prefix="p-", sasl_password="s3cret", bootstrap_servers="h:1")
    for key in [k for k in os.environ if k.startswith("CHURN_")]:
        monkeypatch.delenv(key)
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)
    assert Settings() == settings


# --- the CLI's error path ----------------------------------------------------------------


def churn(*args: str, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")}
    env["CHURN_DATA_DIR"] = str(tmp_path)
    return subprocess.run([CHURN, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("retrain", "--trigger", "bogus"), ("trigger 'bogus'", "manual")),
        (("retrain", "--window-days", "0"), ("--window-days",)),
        (("launcher", "--cooldown", "-5"), ("--cooldown",)),
        (("launcher", "--backend", "nomad"), ("--backend", "subprocess, kubernetes")),
    ],
)
def test_cli_bad_arguments_are_one_line_errors(tmp_path, args, words):
    result = tmp_path / "result.json"
    termination_log = tmp_path / "termination-log"
    if args[0] == "retrain":  # as the launchers run it: the failure also lands in the result file / termination log
        args = (*args, "--result-file", str(result), "--termination-log", str(termination_log))
    proc = churn(*args, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0]
    if args[0] == "retrain":
        assert json.loads(result.read_text())["decision"] == "failed"
        compact = termination_log.read_text()
        assert "\n" not in compact and json.loads(compact)["decision"] == "failed"
