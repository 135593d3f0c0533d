"""The environment of a retraining job: how to run ``churn`` and which ``CHURN_*`` variables a child sees."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from stream.settings import ENV_PREFIX, Settings


def churn_executable() -> list[str]:
    """How to run ``churn`` from this interpreter's environment."""
    script = Path(sys.executable).parent / "churn"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from stream.cli.commands import main; main()"]


def child_env(churn_vars: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its ``CHURN_*`` variables, plus ``churn_vars``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update({k: str(v) for k, v in churn_vars.items()})
    return env


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as ``CHURN_*`` variables, so a child process sees exactly these settings."""
    env = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        env[f"{ENV_PREFIX}{name.upper()}"] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return env


def job_settings(settings: Settings) -> Settings:
    """The settings a retraining job runs with: the launcher's, as the job's own Kafka user when one is set
    (``CHURN_LAUNCHER_JOB_SASL_USERNAME``: least privilege, the retrain role rather than the launcher's).

    >>> job_settings(Settings(launcher_job_sasl_username="churn-retrain", launcher_job_sasl_password="p")).sasl_username
    'churn-retrain'
    """
    if not settings.launcher_job_sasl_username:
        return settings
    return settings.model_copy(
        update={
            "sasl_username": settings.launcher_job_sasl_username,
            "sasl_password": settings.launcher_job_sasl_password,
        }
    )
