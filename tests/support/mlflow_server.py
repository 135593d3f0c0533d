"""An MLflow tracking server in a child process on a free loopback port, as compose runs it (no job runner,
one worker), optionally with MLflow's basic authentication (``--app-name basic-auth``)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Self

from stream.errors import RegistryError
from stream.local.broker import free_port
from stream.serving.registry import MLFLOW_CREDENTIAL_VARIABLES, check_reachable
from stream.settings import Settings

ADMIN = "admin"


class MlflowServer:
    """``mlflow server`` on ``127.0.0.1:<port>``: sqlite ``backend_store_uri`` (default: a file in ``work_dir``),
    artifacts and its log in ``work_dir``. With ``admin_password`` it runs with authentication, its users in
    ``work_dir/basic_auth.db``, the first of them ``admin`` with that password."""

    def __init__(self, work_dir: Path, backend_store_uri: str | None = None, admin_password: str | None = None) -> None:
        self.work_dir = Path(work_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.work_dir / "mlflow.log"
        self.backend_store_uri = backend_store_uri or f"sqlite:///{self.work_dir / 'mlflow.db'}"
        self.admin_password = admin_password
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--backend-store-uri", self.backend_store_uri, "--workers", "1"]
        argv += ["--artifacts-destination", str(self.work_dir / "artifacts")]
        env = {k: v for k, v in os.environ.items() if k not in MLFLOW_CREDENTIAL_VARIABLES}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # as compose runs it
        if self.admin_password is not None:
            config = self.work_dir / "basic_auth.ini"
            config.write_text(
                "[mlflow]\ndefault_permission = READ\n"
                f"database_uri = sqlite:///{self.work_dir / 'basic_auth.db'}\nadmin_username = {ADMIN}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            )
            argv += ["--app-name", "basic-auth"]
            env.update(
                MLFLOW_AUTH_CONFIG_PATH=str(config),
                MLFLOW_AUTH_ADMIN_PASSWORD=self.admin_password,  # the environment, not the command line
                MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),
            )
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.work_dir)
        return self

    def answers(self) -> bool:
        """True once the server answers ``/health``; an error when it has exited."""
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"the MLflow server is not running; see {self.log_path}")
        try:
            check_reachable(Settings(mlflow_tracking_uri=self.url), 2.0)
        except RegistryError:
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
