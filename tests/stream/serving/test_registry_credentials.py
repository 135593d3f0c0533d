"""Registry credentials: checked at start, handed to MLflow in one place, refusals in one line, never printed.

The server side (a real ``mlflow server --app-name basic-auth``) is ``tests/integration/test_registry_auth.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED, RESOURCE_DOES_NOT_EXIST, UNAUTHENTICATED

from stream.errors import ConfigError, RegistryAuthError
from stream.serving.registry import MLFLOW_CREDENTIAL_VARIABLES, refusal, use_credentials
from stream.settings import RegistrySettings, Settings, load_scope, load_settings

pytestmark = pytest.mark.unit

SECRET = "s3cret-Pa55-word"
CHURN = str(Path(sys.executable).parent / "churn")


@pytest.fixture(autouse=True)
def _no_credentials_in_the_environment(monkeypatch):
    for name in [*MLFLOW_CREDENTIAL_VARIABLES, *(n for n in os.environ if n.startswith("CHURN_"))]:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"mlflow_password": SECRET}, "CHURN_MLFLOW_USERNAME: must not be empty when CHURN_MLFLOW_PASSWORD is set"),
        ({"mlflow_username": "worker"}, "CHURN_MLFLOW_PASSWORD: must not be empty when CHURN_MLFLOW_USERNAME is set"),
        ({"mlflow_username": "worker", "mlflow_password": SECRET, "mlflow_token": SECRET}, "CHURN_MLFLOW_TOKEN: "),
        ({"mlflow_username": "worker", "mlflow_token": SECRET}, "CHURN_MLFLOW_TOKEN: "),
    ],
)
def test_incomplete_or_conflicting_credentials_fail_naming_the_variable(values, variable):
    for scope in (RegistrySettings, Settings):
        with pytest.raises(ConfigError) as caught:
            load_scope(scope, **values)
        message = str(caught.value)
        assert variable in message and "\n" not in message
        assert SECRET not in message


def test_either_a_user_and_password_or_a_token(monkeypatch):
    monkeypatch.setenv("CHURN_MLFLOW_USERNAME", "worker")
    monkeypatch.setenv("CHURN_MLFLOW_PASSWORD", SECRET)
    assert load_settings().mlflow_password.get_secret_value() == SECRET
    monkeypatch.delenv("CHURN_MLFLOW_USERNAME")
    monkeypatch.delenv("CHURN_MLFLOW_PASSWORD")
    monkeypatch.setenv("CHURN_MLFLOW_TOKEN", SECRET)
    assert load_settings().mlflow_token.get_secret_value() == SECRET


def test_secrets_are_hidden_in_every_rendering_of_the_settings():
    basic = Settings(mlflow_username="worker", mlflow_password=SECRET)
    token = Settings(mlflow_token=SECRET)
    for settings in (basic, token):
        for text in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
            assert SECRET not in text


def test_credentials_reach_mlflow_through_its_variables_and_replace_stale_ones(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "left-over")
    use_credentials(Settings(mlflow_username="worker", mlflow_password=SECRET))
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("worker", SECRET)
    assert "MLFLOW_TRACKING_TOKEN" not in os.environ

    use_credentials(Settings(mlflow_token=SECRET))
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == SECRET
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ and "MLFLOW_TRACKING_PASSWORD" not in os.environ

    use_credentials(Settings())
    assert not set(MLFLOW_CREDENTIAL_VARIABLES) & set(os.environ)


@pytest.mark.parametrize(
    ("settings", "code", "says"),
    [
        (Settings(mlflow_username="worker", mlflow_password=SECRET), UNAUTHENTICATED, "CHURN_MLFLOW_PASSWORD"),
        (Settings(mlflow_token=SECRET), UNAUTHENTICATED, "refused CHURN_MLFLOW_TOKEN"),
        (Settings(), UNAUTHENTICATED, "set CHURN_MLFLOW_USERNAME and CHURN_MLFLOW_PASSWORD"),
        (Settings(mlflow_username="worker", mlflow_password=SECRET), PERMISSION_DENIED, "user 'worker' permission"),
    ],
)
def test_a_refusal_is_one_line_naming_the_settings(settings, code, says):
    # The server's answer may echo what was sent: the message is built without it.
    error = MlflowException(f"refused; the request carried {SECRET}", error_code=code)
    refused = refusal(error, settings, "set registered model alias")
    assert isinstance(refused, RegistryAuthError)
    message = str(refused)
    assert says in message and "\n" not in message and SECRET not in message
    assert ("HTTP 403" if code == PERMISSION_DENIED else "HTTP 401") in message


def test_other_registry_errors_are_not_refusals():
    assert refusal(MlflowException("no such model", error_code=RESOURCE_DOES_NOT_EXIST), Settings()) is None
    assert refusal(ValueError("bad"), Settings()) is None


def test_a_password_without_its_user_stops_a_command_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "MLFLOW_TRACKING_"))}
    env.update(CHURN_DATA_DIR=str(tmp_path), CHURN_MLFLOW_PASSWORD=SECRET)
    proc = subprocess.run([CHURN, "models"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "CHURN_MLFLOW_USERNAME" in lines[0], proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
