"""Every Kubernetes manifest in ``deploy/k8s/`` and the packaged retraining Job template, checked against the
Kubernetes API schemas, without a cluster.

* ``kubernetes-validate`` (a dev dependency): each document against the OpenAPI-derived JSON schema of its
  kind, in strict mode (unknown fields are errors), for the oldest and the newest Kubernetes version checked.
* ``kubectl apply --dry-run=client -f``: validates against the OpenAPI schema that kubectl *downloads from the
  API server*, and maps kinds to resources by the server's discovery, so it needs a reachable cluster even with
  ``--validate=false``. With one (the current kubeconfig), that is what runs; without one kubectl refuses
  ("failed to download openapi", "connection refused"), and the test falls back to
  ``kubectl annotate --local --dry-run=client -o name -f``, which makes kubectl decode every document offline
  (YAML, apiVersion, kind, metadata) but checks no schema; the schema check is then kubernetes-validate's.

A missing tool fails the test under ``CI=true`` with one line saying what to install, and skips it elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = [*sorted((ROOT / "deploy" / "k8s").glob("*.yaml")), ROOT / "training" / "launcher" / "retrain-job.yaml"]
#: The Kubernetes versions the manifests are checked against (Job's podReplacementPolicy etc. are not used).
VERSIONS = ("1.28", "latest")
#: Custom resources have no schema in Kubernetes' own; the PrometheusRule is checked against rules.yml and by
#: promtool (tests/deploy/test_alert_rules.py).
CUSTOM_GROUPS = ("monitoring.coreos.com/",)
NO_SERVER = ("failed to download openapi", "connection refused", "unable to recognize", "no such host",
             "couldn't get current server API group list", "the server could not find", "i/o timeout",
             "Unable to connect to the server")  # fmt: skip


def _missing(what: str, install: str) -> None:
    message = f"{what} is not installed: {install}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_there_are_manifests():
    names = {p.name for p in MANIFESTS}
    assert {"launcher.yaml", "launcher-state.yaml", "bootstrap-train-job.yaml", "retrain-job.yaml"} <= names


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_matches_the_kubernetes_schemas(path):
    try:
        import kubernetes_validate
        from kubernetes_validate.utils import latest_version
    except ImportError:
        _missing("kubernetes-validate", "uv sync (it is a dev dependency: `uv add --dev kubernetes-validate`)")
    for version in VERSIONS:
        wanted = latest_version() if version == "latest" else version
        for doc in _docs(path):
            if doc["apiVersion"].startswith(CUSTOM_GROUPS):
                continue
            try:
                kubernetes_validate.validate(doc, wanted, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(str(p) for p in exc.path)
                pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata']}: {where}: {exc.message} (k8s {wanted})")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kubectl_accepts_the_manifest(path):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        _missing("kubectl", "apt-get install kubernetes-client (Debian), or `make test-tools`")
    applied = subprocess.run(
        [kubectl, "apply", "--dry-run=client", "--request-timeout=5s", "-o", "name", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if applied.returncode == 0:
        assert len(applied.stdout.split()) == len(_docs(path))
        return
    assert any(s in applied.stderr for s in NO_SERVER), applied.stderr  # a real refusal, not a missing cluster
    decoded = subprocess.run(
        [kubectl, "annotate", "--local", "--dry-run=client", "-o", "name", "-f", str(path), "churn-stream/check=1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert decoded.returncode == 0, decoded.stderr
    kinds = [f"{d['kind'].lower()}" for d in _docs(path)]
    assert [line.split("/")[0].split(".")[0] for line in decoded.stdout.split()] == kinds
