"""The registry with authentication: a real ``mlflow server --app-name basic-auth``, users made with MLflow's
own auth API, and ``churn`` commands and a worker that log in with ``CHURN_MLFLOW_USERNAME`` and
``CHURN_MLFLOW_PASSWORD``.

Credentials the registry refuses (a wrong password, an unknown user, none at all) stop a command or a worker
within seconds in one line that names the settings; a user who may only read cannot move an alias; no
password appears in any output. One server for the module: it takes tens of seconds to start.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time

import pytest
import yaml
from integration.conftest import SMALL_MODEL
from support import CHURN, free_port, wait_for
from support.mlflow_server import ADMIN, MlflowServer

from stream.errors import RegistryAuthError
from stream.serving.registry import MLFLOW_CREDENTIAL_VARIABLES
from stream.settings import Settings
from training import registry
from training.config import SimulationConfig

# The first test also waits for the server to start (up to minutes on a loaded machine) and for a training run.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("mlflow-auth"), pytest.mark.timeout(600)]

# Random per run, so finding one in an output can only mean it leaked.
PASSWORDS = {
    ADMIN: secrets.token_urlsafe(18),
    "trainer": secrets.token_urlsafe(18),
    "scorer": secrets.token_urlsafe(18),
}
MODEL = "churn-auth-model"
# Seconds a refused command may take, its interpreter's start and imports included: 10-31 s measured on a
# loaded 2-core machine, where a worker that waited for the registry instead would not exit at all.
FAIL_FAST_S = 60.0
# The suite's small model, a little smaller: this module trains it through `churn train`.
TINY_MODEL = SMALL_MODEL.model_copy(update={"seed": 5, "simulation": SimulationConfig(n_customers=200, days=90)})


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """The server, with ``trainer`` (a retraining job's or the launcher's user: it creates the model and so
    manages it) and ``scorer`` (a worker's: the server's default permission, READ)."""
    from mlflow.server.auth.client import AuthServiceClient

    server = MlflowServer(tmp_path_factory.mktemp("mlflow-auth"), admin_password=PASSWORDS[ADMIN]).start()
    try:
        wait_for(server.answers, 300, 1.0, "the MLflow server's /health")
        with pytest.MonkeyPatch.context() as m:  # AuthServiceClient reads MLflow's variables
            m.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
            m.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS[ADMIN])
            users = AuthServiceClient(server.url)
            for user in ("trainer", "scorer"):
                users.create_user(user, PASSWORDS[user])
        yield server
    finally:
        server.stop()


def churn(server: MlflowServer, tmp_path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    """``churn *args`` against ``server`` with only ``env``'s credentials; the process and its seconds."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("CHURN_") and k not in MLFLOW_CREDENTIAL_VARIABLES
    }
    environment.update(
        CHURN_DATA_DIR=str(tmp_path),
        CHURN_MLFLOW_TRACKING_URI=server.url,
        CHURN_MODEL_NAME=MODEL,
        CHURN_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",  # nothing there: the registry is asked first
        **env,
    )
    started = time.monotonic()
    proc = subprocess.run([CHURN, *args], capture_output=True, text=True, env=environment, timeout=300)
    return proc, time.monotonic() - started


def login(user: str, password: str | None = None) -> dict[str, str]:
    return {"CHURN_MLFLOW_USERNAME": user, "CHURN_MLFLOW_PASSWORD": password or PASSWORDS[user]}


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for password in PASSWORDS.values():
            assert password not in text


@pytest.fixture(scope="module")
def trained(auth_server, tmp_path_factory):
    """``churn train`` as ``trainer``: version 1 of the model, under @production."""
    work = tmp_path_factory.mktemp("train")
    config = work / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_MODEL.model_dump(mode="json")))
    proc, _ = churn(auth_server, work, "train", "--config", str(config), **login("trainer"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_no_secret(proc.stdout, proc.stderr)
    return proc


def test_a_training_run_registers_a_model_that_a_reader_lists(auth_server, trained, tmp_path):
    proc, _ = churn(auth_server, tmp_path, "models", COLUMNS="200", **login("scorer"))
    assert proc.returncode == 0, proc.stderr
    assert "production" in proc.stdout and MODEL in proc.stdout
    assert_no_secret(proc.stdout, proc.stderr)
    assert_no_secret(auth_server.log_path.read_text(errors="replace"))


@pytest.mark.parametrize(
    ("credentials", "says"),
    [
        (login("trainer", "not-" + PASSWORDS["trainer"]), "refused the login of user 'trainer' (HTTP 401)"),
        (login("nobody", PASSWORDS["scorer"]), "refused the login of user 'nobody' (HTTP 401)"),
        ({}, "needs credentials (HTTP 401): set CHURN_MLFLOW_USERNAME and CHURN_MLFLOW_PASSWORD"),
    ],
    ids=["wrong-password", "unknown-user", "no-credentials"],
)
@pytest.mark.parametrize("command", [("models",), ("worker",)])
def test_refused_credentials_stop_a_command_in_one_line(auth_server, tmp_path, credentials, says, command):
    """The worker too: a refusal is a configuration error, not an outage to wait out."""
    proc, seconds = churn(auth_server, tmp_path, *command, CHURN_WEB_PORT=str(free_port()), **credentials)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert says in lines[0] and "CHURN_MLFLOW_USERNAME" in lines[0]
    assert "Traceback" not in proc.stderr
    assert seconds < FAIL_FAST_S, f"{' '.join(command)} took {seconds:.1f}s to fail"
    assert_no_secret(proc.stdout, proc.stderr)


def test_a_reader_cannot_move_an_alias(auth_server, trained, monkeypatch):
    for name in MLFLOW_CREDENTIAL_VARIABLES:  # restored after the test: connect() sets them
        monkeypatch.delenv(name, raising=False)
    settings = Settings(
        mlflow_tracking_uri=auth_server.url,
        model_name=MODEL,
        mlflow_username="scorer",
        mlflow_password=PASSWORDS["scorer"],
    )
    client = registry.connect(settings)
    assert registry.version_for_alias(client, MODEL, registry.PRODUCTION) == "1"  # it may read
    with pytest.raises(RegistryAuthError) as caught:
        registry.register_shadow(client, MODEL, "1", "challenger", time.time())
    message = str(caught.value)
    assert "refused user 'scorer' permission to set registered model alias (HTTP 403)" in message
    assert "CHURN_MLFLOW_USERNAME" in message and "\n" not in message
    assert_no_secret(message, repr(caught.value))
    assert registry.version_for_alias(client, MODEL, "challenger") is None  # nothing moved
