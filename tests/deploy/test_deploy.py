"""The deployment files agree with the code: compose, Kubernetes, Prometheus, Grafana, image.

Nothing here needs Docker: the files are parsed (PyYAML, json) and checked against
``stream.settings.Settings`` (every ``CHURN_*`` variable is a real setting) and against
the metrics ``StreamMetrics.create`` and ``LauncherMetrics.create`` register (every metric
the dashboard queries is exported, each filtered on its own scrape job's variable).
Third-party images must be pinned to a full version.
"""

from __future__ import annotations

import doctest
import importlib.util
import json
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream.metrics import StreamMetrics
from stream.settings import Settings, load_settings
from training.launcher.metrics import LauncherMetrics

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
GRAFANA = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# The manifests, and the retraining Job template the launcher renders (shipped in the package).
RETRAIN_JOB = ROOT / "training" / "launcher" / "retrain-job.yaml"
K8S = [*sorted((DEPLOY / "k8s").glob("*.yaml")), RETRAIN_JOB]

SETTING_VARS = {f"CHURN_{name.upper()}" for name in Settings.model_fields}
CHURN_TOKEN = re.compile(r"\bCHURN_[A-Z0-9_]+")
FULL_VERSION = re.compile(r"^v?\d+\.\d+\.\d+")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL", re.IGNORECASE)
# Sample names prometheus_client writes for each metric type (a labelled metric has no
# samples until a label value is used, so its names come from its type).
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}
# The metrics the dashboard must show (the deploy issue's list).
REQUIRED_QUERIES = {
    "churn_events_in_total",
    "churn_event_to_score_latency_ms_bucket",
    "churn_scores_out_total",
    "churn_dlq_writes_total",
    "churn_feature_psi",
    "churn_drift_alerts_total",
    "churn_retrains_total",
    "churn_consumer_lag",
    "churn_model_registered_timestamp_seconds",
}
# What a panel or query names as its datasource: the dashboard's variable, never a fixed uid.
DATASOURCE_VARIABLE = {"type": "prometheus", "uid": "${datasource}"}
# A metric (or ``up``) in a query, with its selector when it has one.
SELECTOR = re.compile(r"(?<![\w:$])(churn_[A-Za-z0-9_:]*|up)\b(\{[^}]*\})?")


# --- helpers ------------------------------------------------------------------------------


def _load_checker():
    """deploy/check_image_lock.py, a script outside the packages, loaded by path."""
    name = "deploy_check_image_lock"
    spec = importlib.util.spec_from_file_location(name, DEPLOY / "check_image_lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


checker = _load_checker()


def _default(value: object) -> str:
    """A compose value with ``${VAR:-default}`` replaced by its default (as compose does when VAR is unset)."""
    text = str(value)
    text = re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", text)
    text = re.sub(r"\$\{\w+(:?\?[^}]*)?\}", "", text)
    return text.replace("$$", "$")


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _image_tag(image: str) -> str | None:
    """The tag of an image reference (``None`` without one); a digest counts as pinned."""
    if "@sha256:" in image:
        return image.split("@", 1)[1]
    name = image.rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else None


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for node in _walk(doc):
        if isinstance(node, dict):
            for key in ("containers", "initContainers"):
                if isinstance(node.get(key), list):
                    found.extend(c for c in node[key] if isinstance(c, dict) and "image" in c)
    return found


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in K8S:
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


@pytest.fixture(scope="module")
def dockerfile():
    return checker.parse(DOCKERFILE.read_text())


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind} in deploy/k8s, found {len(matches)}"
    return matches[0]


def _config_maps(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}


def _container_env(container: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, str]:
    """A container's literal environment: ConfigMaps it loads, then its own ``env`` values."""
    maps = _config_maps(docs)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(maps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
    return env


def _worker_port(services: dict[str, dict[str, Any]]) -> int:
    return int(_default(_env(services["worker"])["CHURN_WEB_PORT"]))


# --- compose ---------------------------------------------------------------------------------


def test_compose_third_party_images_pinned_to_a_full_version(services):
    for name, service in services.items():
        image = _default(service.get("image", ""))
        if "build" in service:
            assert _image_tag(image) not in (None, "latest"), f"{name}: name the built image with a tag"
            continue
        tag = _image_tag(image)
        assert tag and tag != "latest", f"{name}: image {image!r} is not pinned"
        assert tag.startswith("sha256:") or FULL_VERSION.match(tag), f"{name}: {image!r} needs a full version tag"


def test_mlflow_server_matches_the_locked_client_version(services):
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    client = next(p["version"] for p in lock["package"] if p["name"] == "mlflow")
    server = _image_tag(services["mlflow"]["image"]).lstrip("v")
    assert server.split(".")[:2] == client.split(".")[:2], f"mlflow server {server} vs client {client} in uv.lock"


def test_worker_dependencies_are_healthy_before_it_starts(services):
    depends = services["worker"]["depends_on"]
    assert isinstance(depends, dict), "worker depends_on needs conditions, not a list"
    for dependency in ("kafka", "mlflow"):
        assert depends[dependency]["condition"] == "service_healthy"
        check = services[dependency].get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{dependency} needs a healthcheck"


def test_every_dependency_waits_for_the_right_condition(services, dockerfile):
    image_has_healthcheck = any(i.keyword == "HEALTHCHECK" for i in dockerfile[-1].instructions)
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec["condition"]
            dep = services[target]
            check = dep.get("healthcheck", {})
            if check.get("test") and not check.get("disable"):
                assert condition == "service_healthy", f"{name} should wait for {target} to be healthy"
            if str(dep.get("restart", "no")) == "no":
                assert condition == "service_completed_successfully", f"{name} should wait for one-shot {target}"
            if condition == "service_healthy":
                inherited = "build" in dep and image_has_healthcheck and not check
                assert (check.get("test") and not check.get("disable")) or inherited, f"{target} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert str(dep.get("restart", "no")) == "no", f"{target} is waited for to exit but restarts"
            else:
                assert condition == "service_started"


def test_workers_scale_without_collisions(services):
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker, "workers publish no host port; Prometheus scrapes them on the network"
    env = _env(worker)
    assert env["CHURN_WEB_HOST"] == "0.0.0.0"
    assert str(_worker_port(services)) in [str(p) for p in worker.get("expose", [])]
    assert _default(env["CHURN_STORE"]).startswith("rocksdb://")


def _published(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(host_ip, container_port)`` of every published port."""
    for port in service.get("ports", []):
        if isinstance(port, dict):
            yield str(port.get("host_ip", "")), str(port["target"])
            continue
        parts = _default(port).split(":")
        yield (parts[0] if len(parts) == 3 else ""), parts[-1]


def test_mlflow_is_published_on_loopback_only(services):
    published = list(_published(services["mlflow"]))
    assert published, "MLflow should be reachable from the host"
    assert all(host == "127.0.0.1" for host, _ in published), published


def test_no_service_publishes_on_all_interfaces(services):
    for name, service in services.items():
        for host, port in _published(service):
            assert host == "127.0.0.1", f"{name} publishes {port} on {host or 'all interfaces'}"


def test_mlflow_keeps_database_and_artifacts_on_volumes(compose, services):
    mlflow = services["mlflow"]
    command = " ".join(mlflow["command"])
    assert "--serve-artifacts" in command
    backend = re.search(r"--backend-store-uri[= ](\S+)", command).group(1)
    artifacts = re.search(r"--artifacts-destination[= ](\S+)", command).group(1)
    mounts = {v.split(":")[1]: v.split(":")[0] for v in mlflow["volumes"]}
    for path in (backend.replace("sqlite:///", ""), artifacts):
        mount = next((m for m in mounts if path.startswith(m.rstrip("/") + "/") or path == m), None)
        assert mount and mounts[mount] in compose["volumes"], f"{path} is not on a named volume"


def test_no_secret_values_in_compose(services):
    for name, service in services.items():
        for key, value in _env(service).items():
            if SECRET_NAME.search(key):
                assert value.startswith("${"), f"{name}: {key} must come from the environment, not the file"


def test_prometheus_scrapes_every_worker_on_its_metrics_port(services):
    config = yaml.safe_load(PROMETHEUS.read_text())
    port = _worker_port(services)
    jobs = [
        job
        for job in config["scrape_configs"]
        if any("worker" in sd.get("names", []) for sd in job.get("dns_sd_configs", []))
    ]
    assert jobs, "no scrape job discovers the worker service by DNS"
    for job in jobs:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for sd in job["dns_sd_configs"]:
            assert sd.get("type", "A") == "A" and sd["port"] == port
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            assert set(sd["names"]) <= set(services), f"{job['job_name']} discovers unknown services"


def test_compose_mounts_the_files_it_names(services):
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file()


# --- settings ----------------------------------------------------------------------------------


def _k8s_churn_vars(docs: list[dict[str, Any]]) -> set[str]:
    names = set()
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            names |= set(doc.get("data", {}))
        for container in _containers(doc):
            for item in container.get("env", []):
                names.add(item["name"])
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    names.add(ref["key"])
    return {n for n in names if n.startswith("CHURN_")}


def test_every_churn_variable_is_a_setting(services, k8s_docs, dockerfile):
    used: dict[str, set[str]] = {}
    for name, service in services.items():
        for var in _env(service):
            used.setdefault(var, set()).add(f"compose:{name}")
    for var in _k8s_churn_vars(k8s_docs):
        used.setdefault(var, set()).add("k8s")
    for stage in dockerfile:
        for ins in stage.instructions:
            if ins.keyword == "ENV":
                for var in CHURN_TOKEN.findall(ins.args):
                    used.setdefault(var, set()).add("Dockerfile")
    # Also anything spelled CHURN_* anywhere in these files (comments, interpolations).
    for path in (COMPOSE, DOCKERFILE, PROMETHEUS, *K8S):
        for var in CHURN_TOKEN.findall(path.read_text()):
            used.setdefault(var, set()).add(path.name)
    assert {"CHURN_BOOTSTRAP_SERVERS", "CHURN_MLFLOW_TRACKING_URI", "CHURN_WEB_PORT"} <= set(used)
    unknown = {
        var: sorted(where) for var, where in used.items() if var.startswith("CHURN_") and var not in SETTING_VARS
    }
    assert not unknown, f"not fields of stream.settings.Settings: {unknown}"


def test_compose_settings_are_valid_values(services, monkeypatch):
    for service in services.values():
        env = {k: _default(v) for k, v in _env(service).items() if k.startswith("CHURN_")}
        if not env:
            continue
        with monkeypatch.context() as m:
            for key, value in env.items():
                m.setenv(key, value)
            load_settings()  # raises ConfigError naming a bad variable


# Stand-ins for the values Kubernetes fills in at run time: a Secret's key, a pod field.
RUNTIME_VALUES = {"secretKeyRef": "from-the-secret", "fieldRef": "10.0.0.7"}


def _runtime_env(container: dict[str, Any]) -> dict[str, str]:
    """Stand-in values for a container's ``valueFrom`` variables (Secrets, pod fields)."""
    env = {}
    for item in container.get("env", []):
        for source, value in RUNTIME_VALUES.items():
            if source in item.get("valueFrom", {}):
                env[item["name"]] = value
    return env


def test_k8s_settings_are_valid_values(k8s_docs, monkeypatch):
    for doc in k8s_docs:
        for container in _containers(doc):
            env = {**_container_env(container, k8s_docs), **_runtime_env(container)}
            env = {k: v for k, v in env.items() if k.startswith("CHURN_")}
            with monkeypatch.context() as m:
                for key, value in env.items():
                    m.setenv(key, value)
                load_settings()


# The Kafka Secret of each workload: its own role's user (deploy/kafka/acls.yaml), the super user only for ACLs.
KAFKA_SECRET_OF = {
    "churn-worker": "churn-kafka-worker",
    "churn-launcher": "churn-kafka-launcher",
    "churn-bootstrap-train": "churn-kafka-retrain",
    "churn-retrain-": "churn-kafka-retrain",  # generateName of the launcher's Job template
    "churn-kafka-acls": "churn-kafka-admin",
}


def test_k8s_sasl_credentials_come_from_each_roles_own_secret(k8s_docs):
    """The ConfigMap turns SASL on; every container that loads it gets its role's user and password from a Secret."""
    seen = set()
    for doc in k8s_docs:
        for container in _containers(doc):
            env = _container_env(container, k8s_docs)
            if env.get("CHURN_SECURITY_PROTOCOL", "PLAINTEXT").upper().startswith("SASL"):
                refs = {
                    i["name"]: i["valueFrom"]["secretKeyRef"]["name"]
                    for i in container.get("env", [])
                    if "secretKeyRef" in i.get("valueFrom", {})
                }
                name = doc["metadata"].get("name") or doc["metadata"]["generateName"]
                where = f"{doc['kind']}/{name}/{container['name']}"
                assert {"CHURN_SASL_USERNAME", "CHURN_SASL_PASSWORD"} <= set(refs), where
                wanted = KAFKA_SECRET_OF[name]
                assert refs["CHURN_SASL_USERNAME"] == refs["CHURN_SASL_PASSWORD"] == wanted, (where, refs)
                seen.add(name)
    assert seen == set(KAFKA_SECRET_OF), set(KAFKA_SECRET_OF) - seen


def test_k8s_registry_credentials_come_from_the_secret(k8s_docs):
    """Every container that talks to a remote registry (the ConfigMap's) gets its MLflow user and password from
    the Secret, the retraining Job the launcher creates included; none is a literal value."""
    checked = set()
    for doc in k8s_docs:
        for container in _containers(doc):
            env = _container_env(container, k8s_docs)
            assert not {"CHURN_MLFLOW_PASSWORD", "CHURN_MLFLOW_TOKEN"} & set(env), f"{doc['kind']}: a literal secret"
            kafka_only = (container.get("args") or [""])[0] in ("topics", "acls")  # never reads the registry
            if env.get("CHURN_MLFLOW_TRACKING_URI", "").startswith(("http://", "https://")) and not kafka_only:
                refs = {i["name"] for i in container.get("env", []) if "secretKeyRef" in i.get("valueFrom", {})}
                assert {"CHURN_MLFLOW_USERNAME", "CHURN_MLFLOW_PASSWORD"} <= refs, f"{doc['kind']}/{container['name']}"
                checked.add(container["name"])
    assert {"worker", "launcher", "retrain"} <= checked, checked


# --- worker web address --------------------------------------------------------------------------


def test_wildcard_bind_advertises_the_host_name(monkeypatch):
    import socket

    assert Settings(web_host="0.0.0.0").advertised_web_host() == socket.gethostname()
    assert Settings(web_host="::").advertised_web_host() == socket.gethostname()
    assert Settings(web_host="127.0.0.1").advertised_web_host() == "127.0.0.1"
    assert Settings(web_host="0.0.0.0", web_advertised_host="worker-2.churn").advertised_web_host() == "worker-2.churn"
    monkeypatch.setenv("CHURN_WEB_ADVERTISED_HOST", " 10.1.2.3 ")
    assert load_settings(web_host="0.0.0.0").advertised_web_host() == "10.1.2.3"


@pytest.mark.parametrize("bad", ["0.0.0.0", "::", "http://worker-1", "worker-1:6066", "worker-1/x", "two words"])
def test_unreachable_advertised_host_names_the_variable(bad, monkeypatch):
    from stream.errors import ConfigError

    monkeypatch.setenv("CHURN_WEB_ADVERTISED_HOST", bad)
    with pytest.raises(ConfigError, match="CHURN_WEB_ADVERTISED_HOST"):
        load_settings()


def test_canonical_url_is_the_advertised_host_while_binding_the_web_host(tmp_path):
    from stream.app.build import create_app

    settings = Settings(
        bootstrap_servers="127.0.0.1:9",
        data_dir=tmp_path,
        web_host="0.0.0.0",
        web_port=6070,
        web_advertised_host="worker-1.churn",
    )
    conf = create_app(settings).app.conf
    assert (conf.web_bind, str(conf.canonical_url)) == ("0.0.0.0", "http://worker-1.churn:6070")


def test_compose_workers_each_advertise_their_own_host_name(services):
    """Replicas of one service share its environment, so none may pin one advertised host for all."""
    env = {k: _default(v) for k, v in _env(services["worker"]).items()}
    assert env["CHURN_WEB_HOST"] in ("0.0.0.0", "::"), "workers bind every interface (Prometheus, lookups)"
    assert "CHURN_WEB_ADVERTISED_HOST" not in env, "an advertised host in the service env is the same for every replica"


# --- Grafana ---------------------------------------------------------------------------------------


def _metric_names(create) -> set[str]:
    """The sample names a metrics bundle's ``create`` registers."""
    registry = CollectorRegistry()
    create(registry)
    names: set[str] = set()
    for family in registry.collect():
        samples = {s.name for s in family.samples}
        names |= samples or {family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type]}
    return names


def _worker_metric_names() -> set[str]:
    return _metric_names(StreamMetrics.create)


def _launcher_metric_names() -> set[str]:
    return _metric_names(LauncherMetrics.create)


def _exported_metric_names() -> set[str]:
    return _worker_metric_names() | _launcher_metric_names()


def _dashboard() -> dict[str, Any]:
    return json.loads((GRAFANA / "dashboards" / "churn-stream.json").read_text())


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [n["expr"] for n in _walk(dashboard) if isinstance(n, dict) and isinstance(n.get("expr"), str)]


def _variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def _queried_metric_names(dashboard: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for node in _walk(dashboard):
        if isinstance(node, dict) and isinstance(node.get("expr"), str):
            expr = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', node["expr"])  # drop label values
            names |= set(re.findall(r"(?<![\w:])churn_[A-Za-z0-9_:]*", expr))
    return names


@pytest.mark.parametrize("create", [StreamMetrics.create, LauncherMetrics.create], ids=["worker", "launcher"])
def test_sample_suffixes_match_what_the_registry_writes(create):
    registry = CollectorRegistry()
    create(registry)
    families = list(registry.collect())
    assert families and all(f.name.startswith("churn_") for f in families)
    for family in families:
        if family.samples:
            expected = {family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type]}
            assert {s.name for s in family.samples} <= expected, family.name


def test_the_worker_and_the_launcher_export_no_metric_of_the_same_name():
    """A name both exported would be summed across both jobs, or show the one that never moves."""
    assert not _worker_metric_names() & _launcher_metric_names()
    assert "churn_retrains_total" in _launcher_metric_names()
    assert {"churn_consumer_lag", "churn_model_registered_timestamp_seconds"} <= _worker_metric_names()


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_only_exported_metrics(path):
    dashboard = json.loads(path.read_text())
    queried = _queried_metric_names(dashboard)
    missing = queried - _exported_metric_names()
    assert not missing, f"{path.name} queries metrics the workers do not export: {sorted(missing)}"


def test_dashboard_shows_the_stream_metrics():
    dashboard = json.loads((GRAFANA / "dashboards" / "churn-stream.json").read_text())
    queried = _queried_metric_names(dashboard)
    assert REQUIRED_QUERIES <= queried, sorted(REQUIRED_QUERIES - queried)
    exprs = [n["expr"] for n in _walk(dashboard) if isinstance(n, dict) and isinstance(n.get("expr"), str)]
    for q in ("0.5", "0.99"):
        assert any(f"histogram_quantile({q}" in e and "churn_event_to_score_latency_ms_bucket" in e for e in exprs)
    assert any("by (model_version)" in e and "churn_scores_out_total" in e for e in exprs)
    assert any("by (outcome)" in e and "churn_retrains_total" in e for e in exprs)
    assert any("by (feature)" in e and "churn_feature_psi" in e for e in exprs)


def test_dashboard_has_a_consumer_lag_panel():
    lag = [
        p
        for p in _dashboard()["panels"]
        if any("churn_consumer_lag" in t.get("expr", "") for t in p.get("targets", []))
    ]
    assert [p["title"] for p in lag] == ["Consumer lag"]
    (target,) = lag[0]["targets"]
    expr = re.sub(r"\s+", " ", target["expr"])
    assert expr.startswith("sum by (topic, partition) (churn_consumer_lag{") and 'job=~"$job"' in expr, expr


def test_every_query_filters_on_its_jobs_variable():
    """Worker metrics (and ``up``) on ``$job``, the launcher's on ``$launcher_job``: the dashboard shows the
    selected deployment's workers whatever else the Prometheus scrapes."""
    worker, launcher = _worker_metric_names(), _launcher_metric_names()
    for path in DASHBOARDS:
        for expr in _exprs(json.loads(path.read_text())):
            found = SELECTOR.findall(expr)
            assert found, f"{path.name}: a query of no churn metric: {expr}"
            for name, selector in found:
                if name in launcher:
                    wanted = 'job=~"$launcher_job"'
                else:
                    assert name in worker or name == "up", f"{path.name}: {name} is exported by neither"
                    wanted = 'job=~"$job"'
                assert wanted in selector, f"{path.name}: {name} without {wanted}: {expr}"
                assert 'job="' not in selector, f"{path.name}: {name} names a fixed job: {expr}"


def test_every_panel_uses_the_datasource_variable():
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            assert panel.get("datasource") == DATASOURCE_VARIABLE, f"{path.name}: {panel['title']}"
            for target in panel.get("targets", []):
                assert target.get("datasource") == DATASOURCE_VARIABLE, f"{path.name}: {panel['title']}"
        for node in _walk(dashboard):  # nowhere a fixed uid: annotations use Grafana's own
            if isinstance(node, dict) and isinstance(node.get("datasource"), dict):
                ds = node["datasource"]
                assert ds == DATASOURCE_VARIABLE or ds.get("type") == "grafana", f"{path.name}: fixed datasource {ds}"


def test_dashboard_variables_pick_the_datasource_and_default_to_the_scrape_jobs():
    jobs = {job["job_name"] for job in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]}
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        variables = _variables(dashboard)
        source = variables["datasource"]
        assert (source["type"], source["query"]) == ("datasource", "prometheus")
        for name, default in (("job", "churn-worker"), ("launcher_job", "churn-launcher")):
            job = variables[name]
            assert job["type"] == "query" and job["datasource"] == DATASOURCE_VARIABLE, name
            query = job["query"]["query"] if isinstance(job["query"], dict) else job["query"]
            assert re.sub(r"\s+", "", query) == "label_values(up,job)", name
            assert job["current"]["value"] == default and default in jobs, f"{path.name}: {name} default {default}"
        namespace = variables.get("namespace")
        if namespace is not None:
            assert namespace["includeAll"] and namespace["allValue"] == ".*", "All must match series without the label"
        for expr in _exprs(dashboard):
            for job in re.findall(r'job="([^"]+)"', expr):
                assert job in jobs, f"{path.name} filters on job {job!r}, which Prometheus does not scrape"


def test_the_provisioned_datasource_is_the_default_the_variable_picks(services):
    """The dashboards name no datasource uid; in compose their variable resolves to the provisioned Prometheus."""
    datasources = [
        ds
        for path in sorted((GRAFANA / "provisioning" / "datasources").glob("*.yaml"))
        for ds in yaml.safe_load(path.read_text())["datasources"]
    ]
    prometheus = [ds for ds in datasources if ds["type"] == "prometheus"]
    assert len(prometheus) == 1 and prometheus[0].get("isDefault") is True
    assert re.match(r"^http://prometheus:9090/?$", prometheus[0]["url"]) and "prometheus" in services
    for path in DASHBOARDS:
        text = path.read_text()
        for ds in datasources:
            assert ds["uid"] not in text, f"{path.name} refers to the provisioned uid {ds['uid']}"
        assert _variables(json.loads(text))["datasource"].get("current", {}).get("value") in (None, "", "default")


def test_grafana_loads_dashboards_from_where_compose_mounts_them(services):
    mounts = {v.split(":")[0]: v.split(":")[1] for v in services["grafana"]["volumes"]}
    target = mounts["./deploy/grafana/dashboards"]
    for path in sorted((GRAFANA / "provisioning" / "dashboards").glob("*.yaml")):
        for provider in yaml.safe_load(path.read_text())["providers"]:
            assert provider["options"]["path"] == target
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


# --- image -------------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_with_healthcheck(dockerfile):
    assert len(dockerfile) >= 2 and dockerfile[0].name, "a named builder stage and a runtime stage"
    for stage in dockerfile:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", stage.image), f"unpinned base image {stage.image}"
    runtime = dockerfile[-1]
    users = [i.args.split(":")[0] for i in runtime.instructions if i.keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), "the runtime stage must end as a non-root user"
    checks = [i.args for i in runtime.instructions if i.keyword == "HEALTHCHECK"]
    # Healthy means ready: /ready, which answers 503 until a model is loaded and the tables are recovered.
    assert len(checks) == 1 and "/ready" in checks[0] and "CHURN_WEB_PORT" in checks[0] and "urllib" in checks[0]
    entry = {i.keyword: json.loads(i.args) for i in runtime.instructions if i.keyword in ("ENTRYPOINT", "CMD")}
    assert entry == {"ENTRYPOINT": ["churn"], "CMD": ["worker"]}


def test_image_installs_from_the_lock():
    assert checker.check(DOCKERFILE) == []


@pytest.mark.parametrize(
    ("dockerfile", "problem"),
    [
        ("FROM python:3.11.13-slim\nCOPY uv.lock .\nRUN uv sync --no-dev", "without --frozen"),
        ("FROM python:3.11.13-slim\nRUN uv sync --frozen --no-dev\nCOPY uv.lock .", "before uv.lock is copied"),
        (
            "FROM python:3.11.13-slim\nCOPY . .\nRUN uv sync --frozen --no-dev && pip install faust-streaming",
            "pinned uv",
        ),
        ("FROM python:3.11.13-slim\nRUN pip install uv\nCOPY . .\nRUN uv sync --frozen --no-dev", "pinned uv"),
        ("FROM python:3.11.13-slim\nCOPY . .\nRUN pip install -r requirements.txt", "requirements file"),
        (
            "FROM python:3.11.13-slim\nCOPY . .\nRUN uv sync --frozen --no-dev \\\n && uv pip install mlflow",
            "uv pip install",
        ),
        (
            "FROM python:3.11.13-slim AS b\nCOPY . .\nRUN uv sync --frozen --no-dev\nFROM python:3.11.13-slim\n",
            "does not copy the virtualenv",
        ),
    ],
)
def test_image_lock_check_refuses_installs_around_the_lock(dockerfile, problem):
    problems = checker.check_text(dockerfile)
    assert any(problem in p for p in problems), problems


def test_image_lock_checker_doctests():
    result = doctest.testmod(checker, optionflags=doctest.ELLIPSIS)
    assert result.attempted and not result.failed


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".churn", ".git"} <= ignored
    assert not ignored & {"uv.lock", "pyproject.toml", "README.md", "stream", "training", "schemas", "producers"}


# --- Kubernetes ------------------------------------------------------------------------------------------


def test_k8s_manifests_parse_and_images_are_pinned(k8s_docs):
    assert {d["kind"] for d in k8s_docs} >= {"StatefulSet", "Service", "ConfigMap", "Job"}
    for doc in k8s_docs:
        assert doc.get("apiVersion") and doc.get("metadata"), doc.get("kind")
        for container in _containers(doc):
            tag = _image_tag(container["image"])
            assert tag and tag != "latest", f"{doc['kind']}/{container['name']}: unpinned {container['image']}"


def test_k8s_secrets_are_referenced_never_inlined(k8s_docs):
    assert not [d for d in k8s_docs if d["kind"] == "Secret"], "create Secrets out of band; reference them"
    for doc in k8s_docs:
        if doc["kind"] == "ConfigMap":
            assert not [k for k in doc.get("data", {}) if SECRET_NAME.search(k)], "secret in a ConfigMap"
        for container in _containers(doc):
            for item in container.get("env", []):
                if SECRET_NAME.search(item["name"]):
                    assert "secretKeyRef" in item.get("valueFrom", {}), f"{item['name']} must come from a Secret"


def test_statefulset_replicas_do_not_exceed_partitions(k8s_docs):
    sts = _one(k8s_docs, "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    env = _container_env(container, k8s_docs)
    assert sts["spec"]["replicas"] <= int(env["CHURN_TOPIC_PARTITIONS"])


def test_statefulset_keeps_rocksdb_state_on_claims(k8s_docs, dockerfile):
    sts = _one(k8s_docs, "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    env = _container_env(container, k8s_docs)
    assert env["CHURN_STORE"].startswith("rocksdb://")
    image_env = checker.stage_env(dockerfile[-1])
    data_dir = env.get("CHURN_DATA_DIR", image_env.get("CHURN_DATA_DIR"))
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts.get(data_dir) in claims, f"CHURN_DATA_DIR {data_dir} is not on a volumeClaimTemplate"


def test_statefulset_probes_and_metrics_service(k8s_docs):
    sts = _one(k8s_docs, "StatefulSet")
    pod = sts["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    port = int(_container_env(container, k8s_docs)["CHURN_WEB_PORT"])
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    # Readiness waits for the model and the tables; liveness (and startup) only for the event loop, so that
    # a long table recovery holds traffic back without getting the worker restarted.
    paths = {"readinessProbe": "/ready", "livenessProbe": "/live", "startupProbe": "/live"}
    for probe in ("readinessProbe", "livenessProbe"):
        assert probe in container, probe
    for probe, path in paths.items():
        if probe not in container:
            continue
        get = container[probe]["httpGet"]
        assert get["path"] == path and named.get(get["port"], get["port"]) == port, probe
    services = {d["metadata"]["name"]: d for d in k8s_docs if d["kind"] == "Service"}
    headless = services[sts["spec"]["serviceName"]]
    assert headless["spec"].get("clusterIP") == "None"
    assert headless["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    annotations = headless["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == port
    assert annotations.get("prometheus.io/path", "/metrics") == "/metrics"


def _job(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    (job,) = [
        d for d in docs if d["kind"] == "Job" and d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return job


@pytest.mark.parametrize(("component", "command"), [("retrain", "retrain"), ("bootstrap-train", "train")])
def test_jobs_run_their_churn_command(k8s_docs, component, command):
    job = _job(k8s_docs, component)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert "command" not in container, "keep the image's ENTRYPOINT (churn); put the subcommand in args"
    assert container["args"][0] == command
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    (worker,) = _one(k8s_docs, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == worker["image"], "one image for every role"


def test_retrain_job_reports_its_decision_in_the_termination_message(k8s_docs):
    (container,) = _job(k8s_docs, "retrain")["spec"]["template"]["spec"]["containers"]
    path = container["terminationMessagePath"]
    assert container["args"][container["args"].index("--termination-log") + 1] == path
    assert container["terminationMessagePolicy"] == "File"


def test_launcher_runs_the_kubernetes_backend_with_its_state_on_a_claim(k8s_docs):
    deployment = _one(k8s_docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["launcher", "--backend", "kubernetes"]
    data_dir = _container_env(container, k8s_docs)["CHURN_DATA_DIR"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == data_dir]
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert claim in {d["metadata"]["name"] for d in k8s_docs if d["kind"] == "PersistentVolumeClaim"}


def _secure_override() -> dict[str, Any]:
    text = (ROOT / "deploy" / "README.md").read_text()
    block = re.search(r"```yaml\n(# docker-compose\.secure\.yaml:.*?)```", text, re.S)
    assert block is not None, "deploy/README.md has no docker-compose.secure.yaml example"
    return yaml.safe_load(block.group(1))


def test_the_secure_compose_override_gives_each_service_its_roles_kafka_user(services):
    """The documented override merges onto the compose file, names real settings, and one user per role."""
    from stream.kafka.acls import load_roles

    users = {name: role.user for name, role in load_roles().items()}
    expected = {
        "topics": "admin",
        "worker": users["worker"],
        "producer": users["producer"],
        "launcher": users["launcher"],
        "train": users["retrain"],
    }
    override = _secure_override()["services"]
    assert set(override) <= set(services), set(override) - set(services)
    known = {f"CHURN_{name.upper()}" for name in Settings.model_fields}
    for name, service in override.items():
        env = service["environment"]
        assert set(env) <= known, (name, set(env) - known)
        assert env["CHURN_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["CHURN_SASL_USERNAME"] == expected[name], name
        assert env["CHURN_SASL_PASSWORD"].startswith("${"), f"{name}: a password must come from the shell"
    assert override["launcher"]["environment"]["CHURN_LAUNCHER_JOB_SASL_USERNAME"] == users["retrain"]
