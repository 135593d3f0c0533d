"""The retrain launcher (``churn launcher``): launch policy, state, job backends (subprocess, Kubernetes), metrics, service.

May import ``schemas`` and ``stream`` below ``stream.app``; inside, imports go one way:
service > processes | kubernetes > jobs | policy > state | environment.
"""

from training.launcher.environment import child_env, churn_executable, settings_env
from training.launcher.jobs import Launcher, LaunchRequest, compact_result, decision_outcome, result_outcome
from training.launcher.kubernetes import DEFAULT_JOB_TEMPLATE, KubernetesJobLauncher, load_configuration
from training.launcher.metrics import LauncherMetrics
from training.launcher.policy import DEFAULT_COOLDOWN_S, Decision, LaunchPolicy
from training.launcher.processes import SubprocessLauncher
from training.launcher.service import BACKENDS, RetrainLauncher, build_launcher
from training.launcher.state import HANDLED_MEMORY, JobEnd, LauncherState, RunningJob, load_state, save_state, state_dir

__all__ = [
    "BACKENDS",
    "DEFAULT_COOLDOWN_S",
    "DEFAULT_JOB_TEMPLATE",
    "HANDLED_MEMORY",
    "Decision",
    "JobEnd",
    "KubernetesJobLauncher",
    "LaunchPolicy",
    "LaunchRequest",
    "Launcher",
    "LauncherMetrics",
    "LauncherState",
    "RetrainLauncher",
    "RunningJob",
    "SubprocessLauncher",
    "build_launcher",
    "child_env",
    "churn_executable",
    "compact_result",
    "decision_outcome",
    "load_configuration",
    "load_state",
    "result_outcome",
    "save_state",
    "settings_env",
    "state_dir",
]
