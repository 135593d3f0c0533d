"""Settings in scopes: each field in exactly one scope, the same variables as before the split,
scopes that build alone, the one-line error, and ``--help`` that lists a command's settings."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stream.cli.commands import COMMAND_SCOPES, app
from stream.errors import ConfigError
from stream.settings import (
    SCOPES,
    CommonSettings,
    DriftSettings,
    KafkaSettings,
    RegistrySettings,
    Scope,
    ServiceSettings,
    Settings,
    ShadowSettings,
    TrainingSettings,
    WorkerSettings,
    env_var,
    load_scope,
    load_settings,
    own_fields,
    scope_variables,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
VARIABLE = re.compile(r"CHURN_[A-Z0-9_]*[A-Z0-9]")

#: The variables of the one Settings class before it was split into scopes (commit f2c357c).
VARIABLES_BEFORE_THE_SPLIT = frozenset(
    """
    CHURN_APP_ID CHURN_BATCHES_IN_FLIGHT CHURN_BOOTSTRAP_SERVERS CHURN_BROKER_PORT CHURN_BROKER_QUIRKS
    CHURN_DATA_DIR CHURN_DRIFT_CONCEPT_CHECK_PAIRS CHURN_DRIFT_CONCEPT_LOSS_RISE CHURN_DRIFT_CONCEPT_WINDOW
    CHURN_DRIFT_COOLDOWN_DAYS CHURN_DRIFT_HARM_SHIFT CHURN_DRIFT_HARM_UNSEEN CHURN_DRIFT_HYSTERESIS
    CHURN_DRIFT_PSI_THRESHOLD CHURN_DRIFT_WARMUP_EVENTS CHURN_DRIFT_WINDOW_EVENTS CHURN_DRIFT_WINDOW_SECONDS
    CHURN_FETCH_MAX_WAIT_MS CHURN_HORIZON_DAYS CHURN_LOG_LEVEL CHURN_MAX_EVENT_BYTES CHURN_MLFLOW_EXPERIMENT
    CHURN_MLFLOW_PASSWORD CHURN_MLFLOW_TRACKING_URI CHURN_MLFLOW_USERNAME CHURN_MODEL_ALIAS CHURN_MODEL_NAME
    CHURN_MODEL_POLL_S CHURN_REGISTRY_RETRY_S CHURN_RISK_HIGH CHURN_RISK_MEDIUM CHURN_SASL_MECHANISM
    CHURN_SASL_PASSWORD CHURN_SASL_USERNAME CHURN_SCORE_BATCH_MS CHURN_SCORE_BATCH_SIZE CHURN_SECURITY_PROTOCOL
    CHURN_SILENCE_CHECK_S CHURN_SILENCE_DAYS CHURN_SSL_CAFILE CHURN_STORE CHURN_TOPIC_PARTITIONS
    CHURN_TOPIC_PREFIX CHURN_TOPIC_REPLICATION CHURN_WEB_ADVERTISED_HOST CHURN_WEB_HOST CHURN_WEB_PORT
    CHURN_WORKER_CPUS
    """.split()
)
#: The variables added since the split.
VARIABLES_ADDED_SINCE = frozenset(
    {
        "CHURN_TRAINING_RETENTION_DAYS",
        "CHURN_LAUNCHER_BACKEND",
        "CHURN_SCORE_REASONS",
        "CHURN_SHADOW_ALIAS",
        "CHURN_SHADOW_MIN_LABELS",
        "CHURN_SHADOW_MARGIN",
        "CHURN_SHADOW_DEADLINE_S",
        "CHURN_SHADOW_METRICS_URLS",
        "CHURN_LAUNCHER_STAGE",
        "CHURN_LAUNCHER_JUDGE_S",
        "CHURN_SSL_CERTFILE",
        "CHURN_SSL_KEYFILE",
        "CHURN_SSL_KEY_PASSWORD",
        "CHURN_LAUNCHER_JOB_SASL_USERNAME",
        "CHURN_LAUNCHER_JOB_SASL_PASSWORD",
        "CHURN_HTTP_MAX_BODY_BYTES",
        "CHURN_MLFLOW_TOKEN",
    }
)


@pytest.fixture(autouse=True)
def _no_churn_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("CHURN_"):
            monkeypatch.delenv(name)


def _variables(scope: type[Scope]) -> set[str]:
    return {env_var(name) for name in scope.model_fields}


# --- one field, one scope ------------------------------------------------------------------------


def test_every_field_belongs_to_exactly_one_scope():
    owners: dict[str, list[str]] = {}
    for name, scope in SCOPES.items():
        for field in own_fields(scope):
            owners.setdefault(field, []).append(name)
    assert set(owners) == set(Settings.model_fields)
    assert {field: scopes for field, scopes in owners.items() if len(scopes) != 1} == {}
    assert own_fields(Settings) == []  # the combined class declares nothing of its own
    assert all(issubclass(Settings, scope) for scope in SCOPES.values())


def test_scopes_by_concern():
    assert {"bootstrap_servers", "sasl_password", "topic_prefix", "broker_quirks"} <= set(own_fields(KafkaSettings))
    assert {"mlflow_tracking_uri", "model_name", "model_alias", "model_poll_s"} <= set(own_fields(RegistrySettings))
    assert {"app_id", "web_host", "web_port"} <= set(own_fields(ServiceSettings))
    assert {"store", "score_batch_size", "risk_high"} <= set(own_fields(WorkerSettings))
    assert {"drift_psi_threshold", "horizon_days"} <= set(own_fields(DriftSettings))
    assert own_fields(TrainingSettings) == ["mlflow_experiment"]
    assert own_fields(CommonSettings) == ["data_dir", "log_level"]


def test_variables_of_the_old_class_still_exist():
    assert VARIABLES_BEFORE_THE_SPLIT | VARIABLES_ADDED_SINCE == _variables(Settings)


def _committed_settings_source() -> str:
    try:
        return subprocess.run(
            ["git", "show", "HEAD:stream/settings.py"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("no git checkout with stream/settings.py at HEAD")


def test_variables_at_head_still_exist():
    source = _committed_settings_source()
    assert set(VARIABLE.findall(source)) - {"CHURN_NAME"} <= _variables(Settings)


def test_fields_as_committed_at_head(monkeypatch):
    """Same type, default, constraints and description for every field as the committed settings module."""
    source = _committed_settings_source()
    spec = importlib.util.spec_from_loader("committed_settings", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    exec(compile(source, "HEAD:stream/settings.py", "exec"), module.__dict__)  # noqa: S102
    before = module.Settings.model_fields
    assert set(before) <= set(Settings.model_fields)
    for name, was in before.items():
        now = Settings.model_fields[name]
        for attr in ("annotation", "default", "metadata", "description"):
            assert repr(getattr(now, attr)) == repr(getattr(was, attr)), (name, attr)
    assert module.Settings().model_dump() == {k: v for k, v in Settings().model_dump().items() if k in before}


# --- scopes built alone ---------------------------------------------------------------------------


def test_a_scope_builds_alone_from_its_own_variables(monkeypatch):
    monkeypatch.setenv("CHURN_BOOTSTRAP_SERVERS", "k1:9092")
    monkeypatch.setenv("CHURN_TOPIC_PREFIX", "run7-")
    monkeypatch.setenv("CHURN_DRIFT_HYSTERESIS", "0")  # invalid, but not a Kafka setting
    monkeypatch.setenv("CHURN_STORE", "redis://")  # likewise
    kafka = KafkaSettings()
    assert (kafka.resolved_bootstrap(), kafka.topic("churn-scores")) == ("k1:9092", "run7-churn-scores")
    assert set(KafkaSettings.model_fields) == set(own_fields(KafkaSettings))
    assert not hasattr(kafka, "drift_hysteresis")
    with pytest.raises(ConfigError, match="CHURN_DRIFT_HYSTERESIS"):
        load_settings()  # the combined object still checks every variable


def test_registry_scope_builds_on_common(tmp_path):
    registry = RegistrySettings(data_dir=tmp_path)
    assert registry.resolved_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert registry.artifact_root() == Settings(data_dir=tmp_path).artifact_root()


def test_sasl_check_runs_in_the_kafka_scope_and_the_combined_object():
    for scope in (KafkaSettings, Settings):
        with pytest.raises(ConfigError, match="CHURN_SASL_USERNAME: must not be empty"):
            load_scope(scope, security_protocol="sasl_ssl", sasl_password="x")


@pytest.mark.parametrize(
    ("scope", "variable", "value", "says"),
    [
        (CommonSettings, "CHURN_LOG_LEVEL", "loud", "Input should be"),
        (KafkaSettings, "CHURN_TOPIC_PARTITIONS", "0", "greater than or equal to 1"),
        (KafkaSettings, "CHURN_SECURITY_PROTOCOL", "carrier-pigeon", "Input should be"),
        (KafkaSettings, "CHURN_TRAINING_RETENTION_DAYS", "-3", "greater than or equal to 0"),
        (RegistrySettings, "CHURN_MODEL_POLL_S", "0", "greater than 0"),
        (ServiceSettings, "CHURN_WEB_ADVERTISED_HOST", "0.0.0.0", "bind-all address"),
        (WorkerSettings, "CHURN_STORE", "redis://", "must start with memory:// or rocksdb://"),
        (WorkerSettings, "CHURN_WORKER_CPUS", "3-1", "not a CPU list"),
        (DriftSettings, "CHURN_DRIFT_HYSTERESIS", "0", "greater than or equal to 1"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(monkeypatch, scope, variable, value, says):
    monkeypatch.setenv(variable, value)
    for cls in (scope, Settings):
        with pytest.raises(ConfigError) as caught:
            load_scope(cls)
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"invalid setting {variable}: ")
        assert says in message
    with pytest.raises(ConfigError, match=variable):
        load_settings()


# --- churn <command> --help ------------------------------------------------------------------------


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    return result.output


def _listed(*command: str) -> set[str]:
    text = _help(*command)
    assert "Settings it reads" in text
    return set(VARIABLE.findall(text.split("Settings it reads", 1)[1]))


def _expected(*scopes: type[Scope]) -> set[str]:
    return {var for variables in scope_variables(CommonSettings, *scopes).values() for var in variables}


def test_worker_help_lists_its_settings():
    listed = _listed("worker")
    assert listed == _expected(
        KafkaSettings, RegistrySettings, ServiceSettings, WorkerSettings, DriftSettings, ShadowSettings
    )
    assert "CHURN_SHADOW_ALIAS" in listed
    assert {"CHURN_BOOTSTRAP_SERVERS", "CHURN_STORE", "CHURN_DRIFT_PSI_THRESHOLD", "CHURN_DATA_DIR"} <= listed
    assert "CHURN_MLFLOW_EXPERIMENT" not in listed


def test_produce_help_lists_only_kafka_and_common():
    listed = _listed("produce")
    assert listed == _variables(KafkaSettings) | _variables(CommonSettings)
    assert "CHURN_MODEL_NAME" not in listed and "CHURN_STORE" not in listed


@pytest.mark.parametrize("command", sorted(COMMAND_SCOPES))
def test_every_command_lists_the_variables_of_its_scopes(command):
    assert _listed(*command.split()) == _expected(*COMMAND_SCOPES[command])


def test_every_command_that_reads_settings_declares_its_scopes():
    names = {(c.name or c.callback.__name__).replace("_", "-") for c in app.registered_commands}
    assert names - set(COMMAND_SCOPES) == set()
    assert set(COMMAND_SCOPES) - names == {"models", "models promote", "models rollback", "acls apply", "acls check"}
    assert "Settings it reads" not in _help("schemas", "export")  # reads no setting


def test_operations_doc_lists_each_scope_with_its_variables():
    doc = (ROOT / "docs" / "operations.md").read_text()
    for name, scope in SCOPES.items():
        rows = [line for line in doc.splitlines() if line.startswith(f"| {name} (`{scope.__name__}`")]
        assert len(rows) == 1, name
        assert set(VARIABLE.findall(rows[0].split("|")[2])) == {env_var(f) for f in own_fields(scope)}, name
