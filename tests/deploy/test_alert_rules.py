"""The alerting rules: valid for Prometheus, unit-tested by promtool, the same for compose and Kubernetes.

``deploy/prometheus/rules.yml`` is what compose loads (``rule_files`` of
``deploy/prometheus/prometheus.yml``); ``deploy/k8s/prometheus-rule.yaml`` carries the same
groups for the Prometheus Operator. ``tests/deploy/alert_rules_test.yml`` holds promtool's
unit cases: every rule fires when it should and stays quiet when it should not.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from support.tools import require_tool

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "prometheus-rule.yaml"
RULES_TEST = Path(__file__).with_name("alert_rules_test.yml")
COMPOSE = ROOT / "docker-compose.yaml"

ALERTS = {
    "ChurnNoScoresWhileEventsArrive",
    "ChurnConsumerLagGrowing",
    "ChurnDlqRateHigh",
    "ChurnWorkerDown",
    "ChurnDriftAlertRaised",
    "ChurnRetrainingFailing",
    "ChurnProductionModelStale",
    "ChurnScoreLatencyHigh",
    "ChurnModelArtifactRefused",
}


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require_tool("promtool"), *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_rules_are_valid_for_prometheus():
    done = promtool("check", "rules", str(RULES.relative_to(ROOT)))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_rule_passes_its_unit_cases():
    done = promtool("test", "rules", str(RULES_TEST.relative_to(ROOT)))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_rule_has_unit_cases_that_fire_and_that_stay_quiet():
    cases = yaml.safe_load(RULES_TEST.read_text())
    assert [RULES_TEST.parent / f for f in cases["rule_files"]] and all(
        (RULES_TEST.parent / f).resolve() == RULES for f in cases["rule_files"]
    )
    fired, quiet = set(), set()
    for group in cases["tests"]:
        for case in group.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert fired == ALERTS, f"no case where these fire: {ALERTS - fired}"
    assert quiet == ALERTS, f"no case where these stay quiet: {ALERTS - quiet}"


def test_rules_have_a_severity_summary_and_description():
    assert {rule["alert"] for rule in rules()} == ALERTS
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    assert {r["alert"]: r["labels"]["severity"] for r in rules()}["ChurnDriftAlertRaised"] == "info"


def test_kubernetes_prometheus_rule_carries_the_same_groups():
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_compose_prometheus_loads_the_rules():
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    prometheus = yaml.safe_load(COMPOSE.read_text())["services"]["prometheus"]
    mounts = dict(volume.split(":")[:2] for volume in prometheus["volumes"])
    config_in_container = Path(mounts["./deploy/prometheus/prometheus.yml"])
    for name in config["rule_files"]:
        in_container = config_in_container.parent / name
        assert str(in_container) in mounts.values(), f"compose does not mount {in_container}"
        source = next(src for src, dst in mounts.items() if dst == str(in_container))
        assert (ROOT / source).resolve() == RULES


def test_rules_use_the_metric_names_the_code_exports():
    """Every churn_* name in an expression is a sample the worker or the launcher writes (or one being added)."""
    import re

    from prometheus_client import CollectorRegistry

    from stream.metrics import StreamMetrics
    from training.launcher.metrics import LauncherMetrics

    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum"), "info": ("_info",)}
    exported = set()
    for metrics in (StreamMetrics.create(CollectorRegistry()), LauncherMetrics.create(CollectorRegistry())):
        for family in metrics.registry.collect():
            exported |= {family.name + s for s in suffixes.get(family.type, ("",))}
    # Gauges other changes add to the worker: the consumer lag and the serving version's registry time.
    exported |= {"churn_consumer_lag", "churn_model_registered_timestamp_seconds"}
    used = {name for rule in rules() for name in re.findall(r"\bchurn_[a-z0-9_]+", rule["expr"])}
    assert used <= exported, f"not exported: {sorted(used - exported)}"
