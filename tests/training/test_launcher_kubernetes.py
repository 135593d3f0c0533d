"""The Kubernetes backend against a small fake API server: the official client's requests, the shipped Job
template rendered with the alert, outcomes from Job conditions and termination messages, clean-up, restarts.

The fake server (a ``http.server`` thread on 127.0.0.1) speaks just the REST paths the launcher calls, answers
with JSON shaped like the real API's (enough for the client to deserialize it into its models) and records
every request; the tests say when a Job ends and how (:meth:`FakeKubernetes.finish`).
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from kubernetes import client
from support.events import drift_alert

from stream.errors import ChurnError, ConfigError
from stream.settings import Settings
from training.launcher import (
    DEFAULT_JOB_TEMPLATE,
    KubernetesJobLauncher,
    LaunchPolicy,
    LaunchRequest,
    RetrainLauncher,
    RunningJob,
    SubprocessLauncher,
    build_launcher,
    compact_result,
    load_state,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "churn"
T0 = 1_800_000_000.0
JOBS = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip


class FakeKubernetes:
    """Jobs and pods in one namespace, kept as the JSON the API server would return."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []  # method, path, query, body
        self.lock = threading.Lock()
        self._suffix = itertools.count(1)

    # --- what the tests read and do ---------------------------------------------------------------

    def created(self) -> list[dict[str, Any]]:
        return [body for method, path, _, body in self.requests if method == "POST" and path == JOBS]

    def calls(self, method: str, path: str) -> list[dict[str, list[str]]]:
        return [query for m, p, query, _ in self.requests if m == method and p == path]

    def finish(self, name: str, condition: str, reason: str = "", exit_code: int | None = 0, message: str = ""):
        """End Job ``name`` the way the Job controller does: a ``Complete`` or ``Failed`` condition, and,
        unless ``exit_code`` is None, a pod whose container terminated with that code and message."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        job = self.jobs[name]
        job["status"] = {
            "startTime": job["status"].get("startTime", now),
            "completionTime": now if condition == "Complete" else None,
            "succeeded": 1 if condition == "Complete" else 0,
            "failed": 1 if condition == "Failed" else 0,
            "active": 0,
            "conditions": [{"type": condition, "status": "True", "reason": reason or None, "lastTransitionTime": now}],
        }
        if exit_code is None:
            return
        container = job["spec"]["template"]["spec"]["containers"][0]
        terminated = {"exitCode": exit_code, "message": message, "reason": "Completed" if exit_code == 0 else "Error",
                      "finishedAt": now}  # fmt: skip
        self.pods[name] = [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"{name}-abcde", "namespace": NAMESPACE, "labels": {"job-name": name}},
                "spec": {"containers": [{"name": container["name"], "image": container["image"]}]},
                "status": {
                    "phase": "Succeeded" if exit_code == 0 else "Failed",
                    "containerStatuses": [
                        {
                            "name": container["name"],
                            "image": container["image"],
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "state": {"terminated": terminated},
                        }  # fmt: skip
                    ],
                },
            }
        ]

    # --- the API ----------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests.append((method, path, query, body))
            if path == JOBS and method == "POST":
                job = copy.deepcopy(body)
                meta = job["metadata"]
                meta["name"] = meta.pop("generateName", "job-") + f"x{next(self._suffix):04d}"
                meta.update(namespace=NAMESPACE, uid=f"uid-{meta['name']}", resourceVersion="1")
                job["status"] = {"active": 1, "startTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
                self.jobs[meta["name"]] = job
                return 201, job
            if path.startswith(JOBS + "/"):
                name = path.rsplit("/", 1)[1]
                if name not in self.jobs:
                    return 404, _status(404, "NotFound", f'jobs.batch "{name}" not found')
                if method == "GET":
                    return 200, self.jobs[name]
                if method == "DELETE":
                    self.jobs.pop(name)
                    self.pods.pop(name, None)
                    return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
            if path == PODS and method == "GET":
                selector = query.get("labelSelector", [""])[0]
                key, _, value = selector.partition("=")
                assert key == "job-name", selector
                return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": self.pods.get(value, [])}
            return 404, _status(404, "NotFound", f"{method} {path}: not a path of this fake")


@pytest.fixture
def kube():
    fake = FakeKubernetes()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            code, answer = fake.handle(self.command, url.path, parse_qs(url.query), json.loads(raw) if raw else None)
            data = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.host = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(5)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def k8s(kube: FakeKubernetes, **kwargs) -> KubernetesJobLauncher:
    return KubernetesJobLauncher(configuration=client.Configuration(host=kube.host), namespace=NAMESPACE, **kwargs)


def service(tmp_path: Path, launcher, clock) -> RetrainLauncher:
    return RetrainLauncher(
        Settings(data_dir=tmp_path), launcher, LaunchPolicy(cooldown_s=300), state_path=tmp_path / "state.json",
        clock=clock,
    )  # fmt: skip


def alert(alert_id: str) -> bytes:
    return drift_alert(alert_id, at=datetime(2026, 3, 1, tzinfo=UTC))


def expected_job(run: int, trigger: str, alert_id: str, options: list[str]) -> dict[str, Any]:
    """The shipped template, rendered by hand: the alert's options after its args, the run's labels."""
    job = yaml.safe_load(DEFAULT_JOB_TEMPLATE.read_text())
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["args"] = [*container["args"], *options]
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        meta["labels"] = {**meta["labels"], "churn-stream/trigger": trigger, "churn-stream/run": str(run)}
        meta["annotations"] = {"churn-stream/alert-id": alert_id}
    return job


# --- one alert storm, one Job, watched to its outcome -----------------------------------------------


def test_an_alert_storm_creates_one_job_from_the_shipped_template_and_reads_its_decision(tmp_path, kube):
    svc = service(tmp_path, k8s(kube), Clock())
    decisions = [svc.handle_alert(alert(f"a{i}")).reason for i in range(5)]
    assert decisions == ["launched", "running", "running", "running", "running"]
    (body,) = kube.created()
    assert body == expected_job(1, "drift", "a0", ["--trigger", "drift", "--alert-id", "a0"])
    assert body["spec"]["template"]["spec"]["containers"][0]["args"][:3] == [
        "retrain", "--termination-log", "/dev/termination-log"]  # fmt: skip
    (name,) = kube.jobs
    assert svc.state.running is not None and svc.state.running.handle == name
    assert svc.check_job() is None  # still active

    message = compact_result({"decision": "promoted", "version": "7", "roc_auc": 0.81})
    kube.finish(name, "Complete", exit_code=0, message=message)
    end = svc.check_job()
    assert end is not None and (end.exit_code, end.outcome) == (0, "promoted")
    assert (svc.state.last_outcome, svc.state.running) == ("promoted", None)
    assert kube.calls("GET", PODS) == [{"labelSelector": [f"job-name={name}"]}]
    assert kube.calls("DELETE", f"{JOBS}/{name}") == [{"propagationPolicy": ["Background"]}]
    assert name not in kube.jobs
    assert svc.metrics.retrains.labels("promoted")._value.get() == 1


def test_a_rejected_decision_and_a_job_without_a_message(tmp_path, kube):
    launcher = k8s(kube)
    rejected = launcher.launch(LaunchRequest(1, "schedule", "", T0))
    kube.finish(rejected.handle, "Complete", message='{"decision":"rejected","version":"8"}')
    assert launcher.poll(rejected).outcome == "rejected"
    silent = launcher.launch(LaunchRequest(2, "schedule", "", T0))
    kube.finish(silent.handle, "Complete", message="")
    end = launcher.poll(silent)
    assert end is not None and (end.exit_code, end.outcome) == (0, "succeeded")


def test_a_failed_job_is_failed_with_its_exit_code_and_kept_for_inspection(tmp_path, kube):
    svc = service(tmp_path, k8s(kube), Clock())
    svc.handle_alert(alert("a1"))
    (name,) = kube.jobs
    kube.finish(name, "Failed", reason="BackoffLimitExceeded", exit_code=2, message='{"decision":"failed"}')
    end = svc.check_job()
    assert end is not None and (end.exit_code, end.outcome, end.reason) == (2, "failed", "BackoffLimitExceeded")
    assert (svc.state.last_outcome, svc.state.last_exit_code) == ("failed", 2)
    assert kube.calls("DELETE", f"{JOBS}/{name}") == [] and name in kube.jobs  # kept; its TTL removes it

    not_kept = k8s(kube, keep_failed=False)
    job = not_kept.launch(LaunchRequest(2, "schedule", "", T0))
    kube.finish(job.handle, "Failed", reason="BackoffLimitExceeded", exit_code=1)
    assert not_kept.poll(job).outcome == "failed"
    assert kube.calls("DELETE", f"{JOBS}/{job.handle}") == [{"propagationPolicy": ["Background"]}]


def test_a_job_past_its_deadline_is_failed(tmp_path, kube):
    svc = service(tmp_path, k8s(kube), Clock())
    svc.handle_alert(alert("a1"))
    (name,) = kube.jobs
    kube.finish(name, "Failed", reason="DeadlineExceeded", exit_code=None)  # the controller killed its pod
    end = svc.check_job()
    assert end is not None and (end.exit_code, end.outcome, end.reason) == (None, "failed", "DeadlineExceeded")
    assert svc.state.last_outcome == "failed"


def test_a_job_still_active_long_past_its_deadline_is_failed_and_deleted(kube):
    clock = Clock(datetime.now(UTC).timestamp())
    launcher = k8s(kube, clock=clock)
    job = launcher.launch(LaunchRequest(1, "drift", "a1", clock.now))
    assert launcher.poll(job) is None
    deadline = kube.jobs[job.handle]["spec"]["activeDeadlineSeconds"]
    clock.now += deadline + 60  # within the grace: the Job controller fails it
    assert launcher.poll(job) is None
    started = datetime.now(UTC) - timedelta(seconds=deadline + 3600)
    kube.jobs[job.handle]["status"]["startTime"] = started.strftime("%Y-%m-%dT%H:%M:%SZ")
    end = launcher.poll(job)
    assert end is not None and (end.outcome, end.reason) == ("failed", "DeadlineExceeded")
    assert kube.calls("DELETE", f"{JOBS}/{job.handle}") == [{"propagationPolicy": ["Background"]}]


def test_a_job_deleted_behind_the_launchers_back_is_unknown(kube):
    launcher = k8s(kube)
    job = launcher.launch(LaunchRequest(1, "drift", "a1", T0))
    kube.jobs.clear()
    end = launcher.poll(job)
    assert end is not None and (end.exit_code, end.outcome) == (None, "unknown")
    assert launcher.poll(RunningJob(f"job.batch/{job.handle}", 1, "drift", "a1", T0)).outcome == "unknown"


# --- restarts --------------------------------------------------------------------------------------


def test_a_restarted_launcher_waits_for_the_running_job_and_creates_no_second(tmp_path, kube):
    clock = Clock()
    first = service(tmp_path, k8s(kube), clock)
    first.handle_alert(alert("a1"))
    (name,) = kube.jobs
    del first  # the launcher's pod is replaced; the state directory (a PersistentVolumeClaim) stays

    again = service(tmp_path, k8s(kube), clock)
    assert again.state.running is not None and again.state.running.handle == name
    assert [again.handle_alert(alert(i)).reason for i in ("a1", "a2", "a3")] == ["duplicate", "running", "running"]
    assert len(kube.created()) == 1
    kube.finish(name, "Complete", message='{"decision":"promoted"}')
    assert again.check_job().outcome == "promoted"
    assert load_state(tmp_path / "state.json").last_outcome == "promoted"
    clock.now += 301
    assert again.handle_alert(alert("a4")).reason == "launched"
    assert len(kube.created()) == 2


# --- errors, the RBAC, choosing the backend ---------------------------------------------------------


def test_an_api_error_on_create_is_one_clear_error(tmp_path, kube):
    launcher = KubernetesJobLauncher(configuration=client.Configuration(host=kube.host), namespace="elsewhere")
    with pytest.raises(ChurnError, match="creating the retraining Job in namespace elsewhere failed: HTTP 404"):
        launcher.launch(LaunchRequest(1, "drift", "a1", T0))
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: ConfigMap\n")
    with pytest.raises(ConfigError, match="not a Kubernetes Job"):
        k8s(kube, template=bad)


def test_an_unreachable_api_server_is_retried_on_the_next_poll(kube):
    launcher = KubernetesJobLauncher(configuration=client.Configuration(host="http://127.0.0.1:9"), namespace="x")
    assert launcher.poll(RunningJob("churn-retrain-x0001", 1, "drift", "a1", T0)) is None


def test_the_launchers_role_grants_exactly_the_calls_it_makes(tmp_path, kube):
    launcher = k8s(kube)
    for exit_code, condition in ((0, "Complete"), (1, "Failed")):
        job = launcher.launch(LaunchRequest(1, "drift", "a1", T0))
        launcher.poll(job)
        kube.finish(job.handle, condition, exit_code=exit_code, message='{"decision":"promoted"}')
        launcher.poll(job)
    verbs = {("POST", True): "create", ("GET", False): "get", ("DELETE", False): "delete", ("GET", True): "list"}
    called: set[tuple[str, str, str]] = set()
    for method, path, _, _ in kube.requests:
        group = "batch" if path.startswith("/apis/batch/") else ""
        resource = "jobs" if "/jobs" in path else "pods"
        collection = path.endswith(("/jobs", "/pods"))
        called.add((group, resource, verbs[method, collection]))
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "launcher.yaml").read_text()))
    (role,) = [d for d in docs if d and d["kind"] == "Role"]
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}  # fmt: skip
    assert granted == called


def test_the_backend_is_chosen_by_option_then_setting(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path)
    assert isinstance(build_launcher(settings), SubprocessLauncher)
    monkeypatch.setattr(
        "training.launcher.kubernetes.load_configuration",
        lambda: (client.Configuration(host="http://127.0.0.1:9"), "from-config"),
    )
    chosen = build_launcher(Settings(data_dir=tmp_path, launcher_backend="kubernetes"))
    assert isinstance(chosen, KubernetesJobLauncher) and chosen.namespace == "from-config"
    assert isinstance(build_launcher(settings, backend="kubernetes"), KubernetesJobLauncher)
    assert isinstance(build_launcher(settings, job_template=DEFAULT_JOB_TEMPLATE), KubernetesJobLauncher)
    with pytest.raises(ConfigError, match="--backend must be one of subprocess, kubernetes"):
        build_launcher(settings, backend="nomad")
    with pytest.raises(ConfigError, match="needs --backend kubernetes"):
        build_launcher(settings, job_template=DEFAULT_JOB_TEMPLATE, backend="subprocess")


def test_no_cluster_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="found no cluster"):
        KubernetesJobLauncher()


def test_the_template_ships_in_the_package_and_not_in_the_docker_ignore():
    assert DEFAULT_JOB_TEMPLATE == ROOT / "training" / "launcher" / "retrain-job.yaml"
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert not {"training", "training/launcher", "*.yaml", "**/*.yaml"} & set(ignored)


def test_compact_result_fits_a_termination_message():
    big = {"decision": "promoted", "version": "3", "evidence": {"x": "y" * 10_000}, "roc_auc": 0.8}
    text = compact_result(big)
    assert len(text.encode()) <= 4096
    assert json.loads(text) == {"decision": "promoted", "version": "3", "roc_auc": 0.8}
