"""The Kubernetes backend: a Job rendered from the packaged ``retrain-job.yaml``, created and watched through the API.

Calls, and nothing else (the launcher's Role in ``deploy/k8s/launcher.yaml`` grants exactly these):

* ``create`` a Job (``BatchV1Api.create_namespaced_job``) for each launch;
* ``get`` it (``read_namespaced_job``) on each poll: ``Complete`` or ``Failed`` conditions end it, and a Job
  still active well past ``activeDeadlineSeconds`` counts as failed (``DeadlineExceeded``);
* ``list`` its pods (``CoreV1Api.list_namespaced_pod``, label ``job-name=<job>``) once it has ended, for the
  container's exit code and termination message: ``churn retrain --termination-log`` writes the decision
  there as JSON, which gives the outcome ``promoted`` or ``rejected``;
* ``delete`` it (propagation ``Background``, so its pods go too) once the outcome is recorded. A failed Job
  is kept for inspection (``kubectl describe``, ``kubectl logs job/<name>``); the template's
  ``ttlSecondsAfterFinished`` removes it later. A Job stuck past its deadline is deleted, failed or not.

Configuration: in-cluster (the pod's ServiceAccount, and its namespace) first, else the kubeconfig
(``KUBECONFIG`` or ``~/.kube/config``, the current context's namespace, else ``default``).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import yaml

from stream.errors import ChurnError, ConfigError
from training.launcher.jobs import LaunchRequest, decision_outcome
from training.launcher.state import JobEnd, RunningJob

log = logging.getLogger(__name__)

#: The retraining Job template, shipped in the package (the wheel and the image hold it).
DEFAULT_JOB_TEMPLATE = Path(__file__).resolve().parent / "retrain-job.yaml"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
REQUEST_TIMEOUT_S = 30
#: How long past ``activeDeadlineSeconds`` a Job may stay active before the launcher stops waiting for the
#: Job controller to fail it, and fails (and deletes) it itself.
DEADLINE_GRACE_S = 120.0


def load_configuration() -> tuple[Any, str]:
    """The API client's configuration and the namespace: in-cluster first, then the kubeconfig."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except ConfigException:
        pass
    else:
        try:
            return configuration, SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
        except OSError:
            return configuration, "default"
    try:
        config.load_kube_config(client_configuration=configuration)
        _, active = config.list_kube_config_contexts()
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        raise ConfigError(
            "the Kubernetes launcher found no cluster: not in a pod with a ServiceAccount, and no usable "
            f"kubeconfig (KUBECONFIG or ~/.kube/config): {exc}"
        ) from exc
    return configuration, ((active or {}).get("context") or {}).get("namespace") or "default"


def _api_error(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if status is None:
        return f"{type(exc).__name__}: {exc}"
    return f"HTTP {status} {getattr(exc, 'reason', '')}: {(getattr(exc, 'body', '') or '')[:300]}".strip()


class KubernetesJobLauncher:
    """Creates the retraining Job from ``template`` in ``namespace`` and watches it to its end.

    ``configuration`` is a ``kubernetes.client.Configuration``; without one the launcher loads the
    in-cluster configuration, else the kubeconfig (:func:`load_configuration`).
    """

    def __init__(
        self,
        template: Path = DEFAULT_JOB_TEMPLATE,
        namespace: str | None = None,
        configuration: Any = None,
        clock: Callable[[], float] = time.time,
        keep_failed: bool = True,
    ) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        self.template = Path(template)
        self._template = self._load_template()
        if configuration is None:
            configuration, found = load_configuration()
            namespace = namespace or found
        self.namespace = namespace or "default"
        api = client.ApiClient(configuration)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.clock = clock
        self.keep_failed = keep_failed
        self._errors: tuple[type[BaseException], ...] = (ApiException, HTTPError, OSError)

    def _load_template(self) -> dict:
        try:
            doc = yaml.safe_load(self.template.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read the retraining Job template {self.template}: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("kind") != "Job":
            raise ConfigError(f"{self.template} is not a Kubernetes Job manifest")
        try:
            containers = doc["spec"]["template"]["spec"]["containers"]
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{self.template}: a Job needs spec.template.spec.containers") from exc
        if not containers:
            raise ConfigError(f"{self.template}: a Job needs spec.template.spec.containers")
        return doc

    def render(self, request: LaunchRequest) -> dict:
        """The Job for ``request``: the template with the alert's options appended to the first
        container's ``args``, and the run's labels and annotations."""
        doc = copy.deepcopy(self._template)
        pod = doc["spec"]["template"]
        container = pod["spec"]["containers"][0]
        container["args"] = [*(container.get("args") or ["retrain"]), *request.options()]
        for meta in (doc.setdefault("metadata", {}), pod.setdefault("metadata", {})):
            labels = meta.get("labels") or {}
            labels.update({"churn-stream/trigger": request.trigger, "churn-stream/run": str(request.run)})
            meta["labels"] = labels
            annotations = meta.get("annotations") or {}
            annotations["churn-stream/alert-id"] = request.alert_id
            meta["annotations"] = annotations
        return doc

    def launch(self, request: LaunchRequest) -> RunningJob:
        try:
            created = self.batch.create_namespaced_job(  # a dict body is sent as it is
                self.namespace, cast(Any, self.render(request)), _request_timeout=REQUEST_TIMEOUT_S
            )
        except self._errors as exc:
            raise ChurnError(
                f"creating the retraining Job in namespace {self.namespace} failed: {_api_error(exc)}"
            ) from exc
        name = created.metadata.name if created.metadata is not None else None
        if not name:
            raise ChurnError(f"the API server created a retraining Job in {self.namespace} without a name")
        log.info("retraining Job %s/%s created (run %d)", self.namespace, name, request.run)
        return RunningJob(name, request.run, request.trigger, request.alert_id, request.now)

    @staticmethod
    def _name(handle: str) -> str:
        return handle.rpartition("/")[2]  # "job.batch/<name>" from the kubectl backend's state files

    def poll(self, job: RunningJob) -> JobEnd | None:
        name = self._name(job.handle)
        try:
            found = self.batch.read_namespaced_job(name, self.namespace, _request_timeout=REQUEST_TIMEOUT_S)
        except self._errors as exc:
            if getattr(exc, "status", None) == 404:  # deleted (ttlSecondsAfterFinished, or by hand)
                log.warning("retraining Job %s/%s is gone; its outcome is unknown", self.namespace, name)
                return JobEnd(None, "unknown", "NotFound")
            log.warning("reading retraining Job %s/%s failed: %s", self.namespace, name, _api_error(exc))
            return None
        end = self._end(name, found)
        if end is None:
            return None
        if end.outcome != "failed" or not self.keep_failed:
            self.cleanup(job)
        return end

    def _end(self, name: str, found: Any) -> JobEnd | None:
        status = found.status
        conditions = {c.type: c for c in (status.conditions or []) if c.status == "True"} if status else {}
        if "Failed" in conditions:
            exit_code, _ = self._termination(name)
            return JobEnd(exit_code, "failed", conditions["Failed"].reason or "Failed")
        if "Complete" in conditions:
            exit_code, message = self._termination(name)
            exit_code = 0 if exit_code is None else exit_code
            return JobEnd(exit_code, decision_outcome(exit_code, message))
        deadline = found.spec.active_deadline_seconds if found.spec else None
        started = status.start_time if status else None
        if deadline and isinstance(started, datetime):
            over = self.clock() - started.astimezone(UTC).timestamp() - deadline
            if over > DEADLINE_GRACE_S:
                log.warning(
                    "retraining Job %s/%s is still active %.0fs past its activeDeadlineSeconds (%ds): failed",
                    self.namespace,
                    name,
                    over,
                    deadline,
                )
                self._delete(name)  # stops its pods: a stuck job must not outlive the next launch
                return JobEnd(None, "failed", "DeadlineExceeded")
        return None

    def _termination(self, name: str) -> tuple[int | None, str]:
        """The exit code and termination message of the Job's container that terminated last."""
        try:
            pods = self.core.list_namespaced_pod(
                self.namespace, label_selector=f"job-name={name}", _request_timeout=REQUEST_TIMEOUT_S
            )
        except self._errors as exc:
            log.warning("listing the pods of Job %s/%s failed: %s", self.namespace, name, _api_error(exc))
            return None, ""
        ended = []
        for pod in pods.items or []:
            for status in (pod.status.container_statuses if pod.status else None) or []:
                terminated = status.state.terminated if status.state else None
                if terminated is not None:
                    at = terminated.finished_at
                    ended.append((at.timestamp() if isinstance(at, datetime) else 0.0, terminated))
        if not ended:
            return None, ""
        _, last = max(ended, key=lambda pair: pair[0])
        return last.exit_code, last.message or ""

    def cleanup(self, job: RunningJob) -> None:
        """Delete the Job and, in the background, its pods; a Job already gone is fine."""
        self._delete(self._name(job.handle))

    def _delete(self, name: str) -> None:
        try:
            self.batch.delete_namespaced_job(
                name, self.namespace, propagation_policy="Background", _request_timeout=REQUEST_TIMEOUT_S
            )
        except self._errors as exc:
            if getattr(exc, "status", None) != 404:
                log.warning(
                    "deleting retraining Job %s/%s failed (ttlSecondsAfterFinished removes it later): %s",
                    self.namespace,
                    name,
                    _api_error(exc),
                )
            return
        log.info("retraining Job %s/%s deleted", self.namespace, name)
