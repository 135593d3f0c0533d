"""The Kubernetes backend: a Job from ``deploy/k8s/retrain-job.yaml`` submitted and watched with ``kubectl``."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import yaml

from stream.errors import ChurnError, ConfigError
from training.launcher.jobs import LaunchRequest
from training.launcher.state import JobEnd, RunningJob

log = logging.getLogger(__name__)

DEFAULT_JOB_TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "retrain-job.yaml"


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
