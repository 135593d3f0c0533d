"""Child ``churn`` processes: a stream worker with its own environment, log file and metrics.

Used by ``churn demo`` and ``churn bench``: a worker runs as its own process (as it
would in production), is watched through its ``/metrics`` page, and is stopped by its
pid: SIGTERM first (Faust commits and closes), SIGKILL after a grace period.
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from stream.errors import ChurnError
from training.launcher import child_env, churn_executable


def scrape(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> dict[str, float]:
    """A Prometheus page as ``{'name{label="v"}': value}`` (labels sorted; no labels: the bare name).

    Raises ``OSError`` when nothing answers.
    """
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def metric_sum(samples: Mapping[str, float], name: str) -> float:
    """The sum of every sample of ``name``, over all its labels.

    >>> metric_sum({'events_total{type="a"}': 2.0, 'events_total{type="b"}': 3.0, 'events_total_x': 9.0},
    ...            "events_total")
    5.0
    """
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def labelled(samples: Mapping[str, float], name: str, label: str) -> dict[str, float]:
    """The samples of ``name`` by the value of ``label``.

    >>> labelled({'psi{feature="plan"}': 0.4, 'psi{feature="tenure"}': 0.1, 'other': 1.0}, "psi", "feature")
    {'plan': 0.4, 'tenure': 0.1}
    """
    prefix, key = name + "{", f'{label}="'
    out = {}
    for sample, value in samples.items():
        if sample.startswith(prefix) and key in sample:
            out[sample.split(key, 1)[1].split('"', 1)[0]] = value
    return out


@dataclass
class WorkerProcess:
    """A ``churn worker`` child process; ``env`` holds its ``CHURN_*`` settings."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None
    _log: object = field(default=None, repr=False)

    @property
    def web_port(self) -> int:
        return int(self.env["CHURN_WEB_PORT"])

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop
        self.proc = subprocess.Popen(
            [*churn_executable(), "worker"],
            env=child_env(self.env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return self

    def metrics(self) -> dict[str, float]:
        """The worker's metrics now; empty while it does not answer."""
        try:
            return scrape(self.web_port)
        except OSError:
            return {}

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise ChurnError(
                f"the worker exited with code {code}; its log {self.log_path} ends with:\n{self.log_tail(15)}"
            )

    def wait_serving(self, timeout: float = 120.0, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Until the worker answers on /metrics with a model loaded; ``ChurnError`` if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not should_stop():
            self.check_alive()
            if self.metrics().get("churn_model_version", 0) > 0:
                return
            time.sleep(0.5)
        if not should_stop():
            raise ChurnError(f"the worker did not serve a model within {timeout:.0f}s; see {self.log_path}")

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
        try:
            if self.proc is None:
                return None
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            return self.proc.returncode
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def kill9(self) -> None:
        """SIGKILL now (a crash, for recovery tests)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM raise ``KeyboardInterrupt`` here, even where SIGINT was ignored
    (a background job), so a command's cleanup stops every process it started."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
