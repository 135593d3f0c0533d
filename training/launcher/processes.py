"""The local backend: ``churn retrain`` as a child process, and a job from before a restart waited on by pid."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import IO

from stream.errors import ChurnError
from stream.settings import Settings
from training.launcher.environment import churn_executable, job_settings, settings_env
from training.launcher.jobs import LaunchRequest, result_outcome
from training.launcher.state import JobEnd, RunningJob, state_dir

log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    """True while ``pid`` is a live (not zombie) ``churn retrain`` process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False
            return b"retrain" in (proc / "cmdline").read_bytes()  # else the pid was reused
        except OSError:
            return False
    return True


class SubprocessLauncher:
    """Runs ``churn retrain`` as a child process with the launcher's settings.

    The child gets its own session (a launcher stopped with Ctrl-C leaves it running,
    and the restarted launcher waits for it), a log file and a result file in
    ``work_dir``.
    """

    def __init__(
        self, work_dir: Path, env: Mapping[str, str] | None = None, command: Sequence[str] | None = None
    ) -> None:
        self.work_dir = Path(work_dir)
        self.env = dict(os.environ if env is None else env)
        self.command = list(command or churn_executable())
        self._children: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}

    @classmethod
    def for_settings(cls, settings: Settings) -> SubprocessLauncher:
        return cls(state_dir(settings), {**os.environ, **settings_env(job_settings(settings))})

    def launch(self, request: LaunchRequest) -> RunningJob:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        result = self.work_dir / f"retrain-{request.run}.result.json"
        result.unlink(missing_ok=True)
        log_path = self.work_dir / f"retrain-{request.run}.log"
        argv = [*self.command, "retrain", *request.options(), "--result-file", str(result)]
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed when the job ends
        try:
            proc = subprocess.Popen(
                argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            log_file.close()
            raise ChurnError(f"cannot start the retraining job {argv[0]}: {exc}") from exc
        self._children[str(proc.pid)] = (proc, log_file)
        log.info("retraining job pid %d started: %s (log %s)", proc.pid, " ".join(argv), log_path)
        return RunningJob(str(proc.pid), request.run, request.trigger, request.alert_id, request.now, str(result))

    def poll(self, job: RunningJob) -> JobEnd | None:
        child = self._children.get(job.handle)
        if child is not None:
            proc, log_file = child
            code = proc.poll()
            if code is None:
                return None
            del self._children[job.handle]
            log_file.close()
            return JobEnd(code, result_outcome(code, job.result_file))
        if _alive(int(job.handle)):  # launched by an earlier launcher process
            return None
        return JobEnd(None, result_outcome(None, job.result_file))

    def stop_all(self, grace_s: float = 10.0) -> list[int]:
        """Stop the jobs this launcher started (SIGTERM to each job's session, SIGKILL after
        ``grace_s``); their pids. A launcher that is stopped for good calls it; a restart
        does not (the restarted launcher waits for the job instead)."""
        stopped = []
        for handle, (proc, log_file) in list(self._children.items()):
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(grace_s)
                except subprocess.TimeoutExpired:
                    with suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
                stopped.append(proc.pid)
            log_file.close()
            del self._children[handle]
        return stopped
