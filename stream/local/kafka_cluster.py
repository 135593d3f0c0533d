"""Apache Kafka from Maven Central on loopback: one KRaft node or three, for tests and benches.

The "kafka" runtime profile. :func:`ensure_kafka_jars` copies the broker's jars from
Maven Central into ``build/kafka/<version>/lib`` once (``deploy/kafka/pom.xml`` names
them; Maven keeps its own cache in ``~/.m2``; a marker file makes later calls a no-op).
:class:`KafkaCluster` formats a data directory per node and runs each node as a combined
KRaft broker and controller (``java -cp 'lib/*' kafka.Kafka server.properties``), with
its own client and controller port on 127.0.0.1, and gives fault tests per-node control:
``kill9``, ``stop_node``, ``start_node`` and ``leader_of``. Every process it starts is a
child it reaps; it never signals a process it did not start.

Broker settings the compose file's ``kafka`` service shares live in
:data:`SHARED_BROKER_CONFIG` (``tests/stream/local/test_kafka_cluster_config.py`` holds the two
together); replication settings follow the node count (:func:`replication_config`).

Kafka 3.x logs through slf4j to reload4j, 4.x to log4j2: the pom has a profile for
each, and the launcher writes the matching logging config. Each node's output goes to
``kafka-node-<n>.log`` in ``log_dir``, never to the terminal.

>>> sorted(replication_config(3).items())[:2]
[('default.replication.factor', '3'), ('min.insync.replicas', '2')]
>>> KafkaCluster(nodes=3, log_dir="/tmp/churn-logs").node_ids
[1, 2, 3]
"""

from __future__ import annotations

import base64
import concurrent.futures
import fcntl
import functools
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import weakref
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from stream.errors import BrokerError, ConfigError
from stream.local.broker import LOOPBACK, free_port
from stream.local.kafka_security import SECURE_LISTENER, BrokerSecurity

log = logging.getLogger(__name__)

DEFAULT_KAFKA_VERSION = "3.9.1"  # the compose file's apache/kafka image tag
ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "deploy" / "kafka" / "pom.xml"
DEFAULT_CACHE_DIR = ROOT / "build" / "kafka"

BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
# Main classes of the console clients; the first one the jars hold is used (run_kafka_tool).
CONSOLE_PRODUCER = ("org.apache.kafka.tools.ConsoleProducer", "kafka.tools.ConsoleProducer")  # 4.x, 3.x
CONSOLE_CONSUMER = ("org.apache.kafka.tools.consumer.ConsoleConsumer", "kafka.tools.ConsoleConsumer")

# Settings shared with the compose file's kafka service (KAFKA_FOO_BAR <-> foo.bar).
SHARED_BROKER_CONFIG: dict[str, str] = {
    "process.roles": "broker,controller",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    # A new group's first rebalance starts at once instead of after 3 s.
    "group.initial.rebalance.delay.ms": "0",
    # Every topic is created explicitly (stream/kafka/topics.py, Faust); a typo must not make one.
    "auto.create.topics.enable": "false",
}

# Set per node by the launcher (addresses, identity, storage), so they differ from compose's.
NODE_KEYS = frozenset(
    {
        "node.id",
        "listeners",
        "advertised.listeners",
        "listener.security.protocol.map",
        "controller.quorum.voters",
        "log.dirs",
    }
)

# Launcher-only tuning: small JVMs on a 2-core machine, several clusters per test run.
LAUNCHER_CONFIG: dict[str, str] = {
    # The log cleaner allocates this buffer from the heap when it starts (default 128 MiB).
    "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
    "num.network.threads": "2",
    "num.io.threads": "4",
    "num.recovery.threads.per.data.dir": "1",
    # A dead node is fenced (and its partitions get new leaders) after 6 s, not 9 s.
    "broker.session.timeout.ms": "6000",
    "broker.heartbeat.interval.ms": "1000",
}

_JVM_OPTS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
)
_HEAP_MB = {1: 512, 3: 384}
# For test clusters: the client-tier compiler only (measured: a 3-node start ~3 s shorter on
# 2 cores). Not the default, because it slows a broker under load (churn bench).
QUICK_START_JVM_OPTS = ("-XX:TieredStopAtLevel=1",)
_LOG_TAIL_LINES = 25
# How long stop() lets a node without a controller quorum try to finish (KRaft waits up to
# 5 s for its peers when it resigns) before it is killed.
_NO_QUORUM_GRACE = 6.0
_MVN_TIMEOUT = 900.0
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:[-.][0-9A-Za-z]+)*$")


def replication_config(nodes: int) -> dict[str, str]:
    """Replication settings for a cluster of ``nodes``: 3 copies and 2 in sync, or 1 and 1."""
    factor, min_isr = ("3", "2") if nodes >= 3 else ("1", "1")
    return {
        "default.replication.factor": factor,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": factor,
        "transaction.state.log.replication.factor": factor,
        "transaction.state.log.min.isr": min_isr,
        # Kafka 4.x share groups (unused by 3.x, which only logs it as unknown).
        "share.coordinator.state.topic.replication.factor": factor,
        "share.coordinator.state.topic.min.isr": min_isr,
    }


# --- Java, Maven and the jars ---------------------------------------------------------------


def _major(version: str) -> int:
    return int(version.split(".", 1)[0])


def _check_version(version: str) -> str:
    if not _VERSION_RE.match(version):
        raise ConfigError(f"Kafka version {version!r} is not a Maven version like {DEFAULT_KAFKA_VERSION}")
    return version


def _logging_backend(version: str) -> str:
    """Which logging the broker of ``version`` is built for: ``reload4j`` (3.x) or ``log4j2`` (4.x)."""
    return "log4j2" if _major(version) >= 4 else "reload4j"


@functools.lru_cache(maxsize=8)
def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def find_java() -> str:
    """The ``java`` on PATH, checked to be Java 17 or newer; :class:`BrokerError` otherwise."""
    java = shutil.which("java")
    if java is None:
        raise BrokerError("Apache Kafka needs Java 17+ (java not found on PATH); install openjdk-17-jre-headless")
    major = _java_major(java)
    if major is None or major < 17:
        found = f"Java {major}" if major else "a java that does not report its version"
        raise BrokerError(f"Apache Kafka needs Java 17+ ({found} at {java}); install openjdk-17-jre-headless")
    return java


def find_mvn() -> str:
    """The ``mvn`` on PATH; :class:`BrokerError` naming the package otherwise."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("fetching Apache Kafka from Maven Central needs Maven (mvn not found on PATH); install maven")
    return mvn


def _fingerprint(pom: Path, version: str) -> str:
    digest = hashlib.sha256(pom.read_bytes())
    digest.update(f"\0{version}\0{_logging_backend(version)}".encode())
    return digest.hexdigest()


def _first_error(log_path: Path) -> str:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line.removeprefix("[ERROR]").strip() for line in lines if line.startswith("[ERROR]")]
    first = next((e for e in errors if e), "")
    return first[:300]


def ensure_kafka_jars(
    version: str = DEFAULT_KAFKA_VERSION,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    pom: str | os.PathLike[str] | None = None,
) -> Path:
    """The folder of Apache Kafka ``version``'s jars, fetched with Maven on first use.

    Later calls return at once while the marker file matches the pom and version. Maven's
    output goes to ``<cache_dir>/<version>/mvn.log``. Raises :class:`BrokerError` when Java
    or Maven is missing or Maven fails (the message names the log).
    """
    _check_version(version)
    find_java()
    pom_path = Path(pom) if pom is not None else POM
    if not pom_path.is_file():
        raise BrokerError(f"the Kafka dependency list {pom_path} is missing; run from a churn-stream checkout")
    home = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    version_dir = home / version
    lib, marker = version_dir / "lib", version_dir / ".jars-complete"
    fingerprint = _fingerprint(pom_path, version)
    if _marker_matches(marker, fingerprint, lib):
        return lib
    version_dir.mkdir(parents=True, exist_ok=True)
    with open(version_dir / ".lock", "w") as lock:  # one fetch at a time per version
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _marker_matches(marker, fingerprint, lib):
            return lib
        _fetch_jars(find_mvn(), pom_path, version, version_dir, lib)
        marker.write_text(fingerprint + "\n")
    return lib


def _marker_matches(marker: Path, fingerprint: str, lib: Path) -> bool:
    try:
        return marker.read_text().strip() == fingerprint and any(lib.glob("kafka_2.13-*.jar"))
    except OSError:
        return False


def _fetch_jars(mvn: str, pom: Path, version: str, version_dir: Path, lib: Path) -> None:
    partial = version_dir / "lib.partial"
    shutil.rmtree(partial, ignore_errors=True)
    mvn_log = version_dir / "mvn.log"
    command = [
        mvn,
        "-B",
        "-f",
        str(pom),
        f"-Dkafka.version={version}",
        f"-Dkafka.logging={_logging_backend(version)}",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={partial}",
    ]
    log.info("fetching Apache Kafka %s jars with Maven (log %s)", version, mvn_log)
    started = time.monotonic()
    with open(mvn_log, "wb") as out:
        try:
            code = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=_MVN_TIMEOUT
            ).returncode
        except subprocess.TimeoutExpired:
            code = None
        except OSError as exc:
            raise BrokerError(f"cannot run Maven {mvn!r}: {exc}") from exc
    if code != 0:
        shutil.rmtree(partial, ignore_errors=True)
        what = "timed out" if code is None else f"failed (exit {code})"
        detail = _first_error(mvn_log)
        raise BrokerError(
            f"mvn {what} fetching Apache Kafka {version}; see {mvn_log}" + (f": {detail}" if detail else "")
        )
    shutil.rmtree(lib, ignore_errors=True)
    os.replace(partial, lib)
    log.info("Apache Kafka %s jars in %s (%.1fs)", version, lib, time.monotonic() - started)


def _logging_args(lib: Path, *, to_stderr: bool, level: str) -> list[str]:
    """JVM flags pointing the jars' logging backend at a config written next to ``lib``."""
    uses_log4j2 = any(lib.glob("log4j-core-*.jar"))
    target = "err" if to_stderr else "out"
    config_dir = lib.parent / "config"
    if uses_log4j2:
        path = config_dir / f"log4j2-{target}-{level.lower()}.properties"
        text = (
            "status = warn\n"
            # Kafka logs its own shutdown from a JVM hook: log4j2 must not stop first.
            "shutdownHook = disable\n"
            "appender.out.type = Console\n"
            "appender.out.name = OUT\n"
            f"appender.out.target = SYSTEM_{target.upper()}\n"
            "appender.out.layout.type = PatternLayout\n"
            "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
            f"rootLogger.level = {level}\n"
            "rootLogger.appenderRef.out.ref = OUT\n"
            "logger.request.name = kafka.request.logger\n"
            "logger.request.level = WARN\n"
        )
        flag = f"-Dlog4j2.configurationFile={path}"
    else:
        path = config_dir / f"log4j-{target}-{level.lower()}.properties"
        text = (
            f"log4j.rootLogger={level}, out\n"
            "log4j.appender.out=org.apache.log4j.ConsoleAppender\n"
            f"log4j.appender.out.Target=System.{target}\n"
            "log4j.appender.out.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.out.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.request.logger=WARN\n"
        )
        flag = f"-Dlog4j.configuration=file:{path}"
    _write_if_changed(path, text)
    return [flag]


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)


def _classpath(lib: Path) -> str:
    return str(lib / "*")


@functools.lru_cache(maxsize=32)
def _classes_in(lib: Path, marker_mtime: float) -> frozenset[str]:
    names: set[str] = set()
    for jar in lib.glob("kafka*.jar"):
        with zipfile.ZipFile(jar) as archive:
            names.update(n[:-6].replace("/", ".") for n in archive.namelist() if n.endswith(".class"))
    return frozenset(names)


def resolve_main_class(lib: Path, candidates: str | Sequence[str]) -> str:
    """The first of ``candidates`` that Kafka's jars in ``lib`` hold (classes move between versions)."""
    if isinstance(candidates, str):
        return candidates
    classes = _classes_in(lib, lib.stat().st_mtime)
    for name in candidates:
        if name in classes:
            return name
    raise BrokerError(f"none of {', '.join(candidates)} is in the Kafka jars of {lib}")


def java_command(
    main: str | Sequence[str],
    *,
    version: str = DEFAULT_KAFKA_VERSION,
    heap_mb: int = 256,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[str]:
    """The command that runs ``main`` with Kafka ``version``'s jars on the class path.

    ``main`` is a class name, a tuple of candidates such as :data:`CONSOLE_PRODUCER` (the
    first one the jars hold), or a ``.java`` source file (Java runs it as a program). Kafka's
    own log lines go to stderr at WARN.
    """
    lib = ensure_kafka_jars(version, cache_dir=cache_dir)
    return [
        find_java(),
        f"-Xmx{heap_mb}m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",  # short-lived: start fast, skip the optimizing compiler
        "-XX:-UsePerfData",
        *_logging_args(lib, to_stderr=True, level="WARN"),
        "-cp",
        _classpath(lib),
        resolve_main_class(lib, main),
    ]


def run_kafka_tool(
    main_class: str | Sequence[str],
    args: Sequence[str],
    *,
    version: str = DEFAULT_KAFKA_VERSION,
    input: str | None = None,  # noqa: A002 - the name subprocess.run uses
    timeout: float = 60.0,
    heap_mb: int = 256,
    cache_dir: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a Java class from Kafka ``version``'s jars (a console client, a command-line tool).

    Returns the completed process (text, stdout and stderr captured). Raises
    ``subprocess.TimeoutExpired`` after ``timeout`` seconds (the process is killed).
    """
    command = [*java_command(main_class, version=version, heap_mb=heap_mb, cache_dir=cache_dir), *args]
    return subprocess.run(
        command,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- the cluster ---------------------------------------------------------------------------


def _java_failure(output: str) -> str:
    """The line of a Java program's output that says what went wrong (an exception message if any)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if not line.startswith("at ") and ("Exception" in line or "Error" in line):
            return line.removeprefix('Exception in thread "main" ')[:400]
    return lines[-1][:400] if lines else "no output"


def _new_cluster_id() -> str:
    """A random 16-byte id in Kafka's form (URL-safe base64, no padding), like ``kafka-storage random-uuid``."""
    # Kafka's own tool (kafka-storage random-uuid) never starts an id with "-": its command
    # line would read such an id as an option.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _read_properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


def _terminate(proc: subprocess.Popen[bytes], grace: float, *, signalled: bool = False) -> None:
    """SIGTERM (unless already ``signalled``), then SIGKILL after ``grace`` seconds; always reaps the child."""
    if proc.poll() is not None:
        return
    try:
        if not signalled:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log.warning("kafka pid %d ignored SIGTERM for %.1fs; sending SIGKILL", proc.pid, grace)
        proc.kill()
        proc.wait()


class _ClientLog:
    """A librdkafka ``logger`` sending its lines to DEBUG (refused connections are expected here)."""

    def log(self, level: int, fmt: str, *args: object) -> None:
        log.debug("librdkafka: " + fmt, *args)


def _admin_client(bootstrap: str) -> AdminClient:
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": _ClientLog(), "socket.timeout.ms": 5000}
    return AdminClient(config)


@dataclass
class _Node:
    index: int
    node_id: int
    port: int
    controller_port: int
    home: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None
    finalizer: weakref.finalize | None = None
    admin: AdminClient | None = field(default=None, repr=False)
    secure_port: int = 0  # the SASL_SSL listener's, when the cluster has one

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def config_path(self) -> Path:
        return self.home / "server.properties"

    @property
    def formatted(self) -> bool:
        return (self.data_dir / "meta.properties").is_file()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close_log(self) -> None:
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


class KafkaCluster:
    """Apache Kafka on loopback: ``nodes`` (1 or 3) KRaft nodes, each broker and controller.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. ``data_dir``
    None means a temporary folder removed by :meth:`stop`; a given folder is kept, and a
    cluster started on it again keeps its topics and records. ``log_dir`` (default: the
    data folder's ``logs``) receives each node's output. Nodes still running when the
    interpreter exits are stopped then.
    """

    def __init__(
        self,
        nodes: int = 1,
        *,
        version: str = DEFAULT_KAFKA_VERSION,
        data_dir: str | os.PathLike[str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        host: str = LOOPBACK,
        heap_mb: int | None = None,
        start_timeout: float = 90.0,
        stop_grace: float = 15.0,
        config: Mapping[str, str] | None = None,
        jvm_opts: Sequence[str] = (),
        cache_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        security: BrokerSecurity | None = None,
    ) -> None:
        """``port`` is the first node's client port (default: one the OS picks, as for every other port).

        ``security`` adds a ``SASL_SSL`` listener per node (:attr:`secure_bootstrap`), creates its
        SCRAM users when a node is formatted and, when it says so, enforces ACLs.
        """
        if nodes not in (1, 3):
            raise ConfigError(f"a Kafka test cluster has 1 or 3 nodes, not {nodes}")
        if not host.startswith("127."):
            raise ConfigError(f"the Kafka test cluster listens on loopback only, not {host!r}")
        self.nodes = nodes
        self.version = _check_version(version)
        self.host = host
        self.heap_mb = heap_mb or _HEAP_MB[nodes]
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.extra_config = dict(config or {})
        self.jvm_opts = tuple(jvm_opts)
        self._cache_dir = cache_dir
        self._given_data_dir = Path(data_dir) if data_dir is not None else None
        self._given_log_dir = Path(log_dir) if log_dir is not None else None
        self._temp_dir: Path | None = None
        self._temp_finalizer: weakref.finalize | None = None
        self._lib: Path | None = None
        self.cluster_id: str | None = None
        self.startup_seconds: float | None = None
        self._metadata_admin: tuple[str, AdminClient] | None = None
        self.security = security
        per_node = 3 if security is not None else 2
        ports = _distinct_free_ports(host, per_node * nodes)
        if port is not None:
            ports = [port] + [p for p in ports if p != port][: per_node * nodes - 1]
        self._nodes = [
            _Node(i, i + 1, ports[per_node * i], ports[per_node * i + 1], Path(), Path()) for i in range(nodes)
        ]
        if security is not None:
            for i, node in enumerate(self._nodes):
                node.secure_port = ports[per_node * i + 2]

    # --- addresses and state -----------------------------------------------------------

    @property
    def node_ids(self) -> list[int]:
        """The KRaft node id (= broker id) of each node, by index: 1, 2, 3."""
        return [node.node_id for node in self._nodes]

    @property
    def bootstrap(self) -> str:
        """``host:port,...`` of every node's client listener."""
        return ",".join(self.node_bootstrap(i) for i in range(self.nodes))

    def node_bootstrap(self, index: int) -> str:
        """``host:port`` of node ``index``'s client listener."""
        return f"{self.host}:{self._node(index).port}"

    @property
    def secure_bootstrap(self) -> str:
        """``host:port,...`` of every node's ``SASL_SSL`` listener (a cluster started with ``security``)."""
        if self.security is None:
            raise ConfigError("this Kafka cluster has no SASL_SSL listener: start it with security=BrokerSecurity(...)")
        return ",".join(f"{self.host}:{node.secure_port}" for node in self._nodes)

    @property
    def data_dir(self) -> Path | None:
        """The folder holding each node's ``node-<n>`` folder (None before :meth:`start` with a temporary one)."""
        return self._given_data_dir or self._temp_dir

    @property
    def log_dir(self) -> Path | None:
        if self._given_log_dir is not None:
            return self._given_log_dir
        return self.data_dir / "logs" if self.data_dir is not None else None

    @property
    def pid(self) -> int | None:
        """Node 0's process id (None when it is not running)."""
        return self.node_pids[0]

    @property
    def node_pids(self) -> list[int | None]:
        """Each node's process id, None for a node that is not running."""
        return [node.proc.pid if node.running and node.proc else None for node in self._nodes]

    @property
    def log_path(self) -> Path | None:
        """Node 0's log file (None before :meth:`start` when the data dir is temporary and no log_dir given)."""
        return self.node_log_path(0)

    def node_log_path(self, index: int) -> Path | None:
        """Node ``index``'s log file: its stdout and stderr, and the storage tool's output."""
        node = self._node(index)
        return self.log_dir / f"kafka-node-{node.node_id}.log" if self.log_dir is not None else None

    @property
    def running(self) -> bool:
        """True while every node's process runs."""
        return all(node.running for node in self._nodes)

    def _node(self, index: int) -> _Node:
        if not 0 <= index < self.nodes:
            raise IndexError(f"node index {index} out of range for a {self.nodes}-node cluster")
        return self._nodes[index]

    def node_of_broker_id(self, broker_id: int) -> int:
        """The index of the node whose broker id is ``broker_id``."""
        for node in self._nodes:
            if node.node_id == broker_id:
                return node.index
        raise BrokerError(f"broker id {broker_id} is not a node of this cluster ({self.node_ids})")

    # --- configuration -------------------------------------------------------------------

    def broker_config(self, index: int) -> dict[str, str]:
        """The ``server.properties`` of node ``index``."""
        node = self._node(index)
        voters = ",".join(f"{n.node_id}@{self.host}:{n.controller_port}" for n in self._nodes)
        per_node = {
            "node.id": str(node.node_id),
            "listeners": f"PLAINTEXT://{self.host}:{node.port},CONTROLLER://{self.host}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{node.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.voters": voters,
            "log.dirs": str(node.data_dir),
        }
        assert per_node.keys() == NODE_KEYS
        if self.security is not None:
            secure = f"{SECURE_LISTENER}://{self.host}:{node.secure_port}"
            per_node["listeners"] += f",{secure}"
            per_node["advertised.listeners"] += f",{secure}"
            per_node["listener.security.protocol.map"] += f",{SECURE_LISTENER}:{SECURE_LISTENER}"
        return {
            **SHARED_BROKER_CONFIG,
            **replication_config(self.nodes),
            **LAUNCHER_CONFIG,
            **(self.security.listener_config() if self.security is not None else {}),
            **per_node,
            **self.extra_config,
        }

    def _write_config(self, node: _Node) -> None:
        lines = [f"{key}={value}" for key, value in self.broker_config(node.index).items()]
        _write_if_changed(node.config_path, "# written by stream/local/kafka_cluster.py\n" + "\n".join(lines) + "\n")

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Fetch the jars if needed, format new storage, start every node and wait until all are ready.

        Raises :class:`BrokerError` when Java or Maven is missing, a port is taken, a
        node exits, or the nodes are not ready within ``start_timeout`` seconds.
        """
        if self.running:
            return self
        started = time.monotonic()
        self._lib = ensure_kafka_jars(self.version, cache_dir=self._cache_dir)
        try:
            if self.data_dir is None:
                self._temp_dir = Path(tempfile.mkdtemp(prefix="churn-kafka-"))
                # Created before any node's finalizer, so at exit it runs after them.
                self._temp_finalizer = weakref.finalize(self, shutil.rmtree, self._temp_dir, ignore_errors=True)
            assert self.data_dir is not None and self.log_dir is not None
            self.log_dir.mkdir(parents=True, exist_ok=True)
            for node in self._nodes:
                node.home = self.data_dir / f"node-{node.node_id}"
                node.log_path = self.log_dir / f"kafka-node-{node.node_id}.log"
                node.home.mkdir(parents=True, exist_ok=True)
            self.cluster_id = self._existing_cluster_id() or _new_cluster_id()
            for node in self._nodes:
                self._write_config(node)
            self._format([node for node in self._nodes if not node.formatted])
            for node in self._nodes:
                if not node.running:
                    self._launch(node)
            self.wait_ready(max(1.0, started + self.start_timeout - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        log.info(
            "Apache Kafka %s, %d node(s), ready on %s in %.1fs (pids %s, logs in %s)",
            self.version,
            self.nodes,
            self.bootstrap,
            self.startup_seconds,
            self.node_pids,
            self.log_dir,
        )
        return self

    def _existing_cluster_id(self) -> str | None:
        found = (_read_properties(node.data_dir / "meta.properties").get("cluster.id") for node in self._nodes
                 if node.formatted)  # fmt: skip
        ids = {cluster_id for cluster_id in found if cluster_id}
        if len(ids) > 1:
            raise BrokerError(f"the nodes under {self.data_dir} belong to different clusters {sorted(ids)}; "
                              "use a new data_dir")  # fmt: skip
        return ids.pop() if ids else None

    def _java_base(self, heap_mb: int) -> list[str]:
        assert self._lib is not None
        return [find_java(), f"-Xms{min(heap_mb, 256)}m", f"-Xmx{heap_mb}m", *_JVM_OPTS]

    def _format(self, nodes: list[_Node]) -> None:
        """``kafka-storage format`` for each of ``nodes`` (in parallel: each is a JVM start)."""
        if not nodes:
            return
        assert self._lib is not None and self.cluster_id is not None
        lib, cluster_id = self._lib, self.cluster_id

        def run(node: _Node) -> tuple[_Node, subprocess.CompletedProcess[str]]:
            command = [
                *self._java_base(256),
                *_logging_args(lib, to_stderr=True, level="WARN"),
                "-cp",
                _classpath(lib),
                STORAGE_TOOL,
                "format",
                "-t",
                cluster_id,
                "-c",
                str(node.config_path),
                *(self.security.format_args() if self.security is not None else []),
            ]
            return node, subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            results = list(pool.map(run, nodes))
        for node, result in results:
            with open(node.log_path, "a") as out:
                out.write(result.stdout + result.stderr)
            if result.returncode != 0:
                raise BrokerError(
                    f"formatting Kafka storage {node.data_dir} failed: {_java_failure(result.stdout + result.stderr)}"
                    f" (log {node.log_path})"
                )
        log.info("formatted %d Kafka node(s) with cluster id %s", len(nodes), self.cluster_id)

    def _launch(self, node: _Node) -> None:
        assert self._lib is not None
        for port in (node.port, node.controller_port):
            if not _port_is_free(self.host, port):
                raise BrokerError(f"cannot start Kafka node {node.node_id}: {self.host}:{port} is already in use")
        node.log_file = open(node.log_path, "ab")  # noqa: SIM115 - closed when the node stops
        command = [
            *self._java_base(self.heap_mb),
            *self.jvm_opts,
            *_logging_args(self._lib, to_stderr=False, level="INFO"),
            "-cp",
            _classpath(self._lib),
            BROKER_MAIN,
            str(node.config_path),
        ]
        try:
            node.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=node.log_file,
                stderr=subprocess.STDOUT,
                cwd=node.home,
                # Own session: a terminal Ctrl-C reaches only us, and stop() decides how nodes end.
                start_new_session=True,
            )
        except OSError as exc:
            node.close_log()
            raise BrokerError(f"cannot run java for Kafka node {node.node_id}: {exc}") from exc
        node.finalizer = weakref.finalize(self, _terminate, node.proc, self.stop_grace)
        log.info("Kafka node %d pid %d on %s:%d", node.node_id, node.proc.pid, self.host, node.port)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until every started node answers a metadata request listing every started node.

        Raises :class:`BrokerError` with the failing node's log tail when a node exits, or
        when the deadline passes.
        """
        deadline = time.monotonic() + timeout
        started = [node for node in self._nodes if node.proc is not None]
        expected = {node.node_id for node in started}
        for node in started:
            last: object = "no answer"
            while True:
                self._check_alive(node)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._node_failure(node, f"not ready within {timeout:.0f}s (last: {last})")
                if not _accepts_connections(self.host, node.port):
                    last = "not listening"
                    time.sleep(0.1)
                    continue
                try:
                    metadata = self._admin(node).list_topics(timeout=min(2.0, remaining))
                except KafkaException as exc:
                    last = exc
                    time.sleep(0.1)
                    continue
                if metadata.cluster_id != self.cluster_id:
                    raise self._node_failure(node, f"answers with another cluster id {metadata.cluster_id!r}")
                registered = set(metadata.brokers)
                if expected <= registered:
                    break
                last = f"brokers {sorted(registered)} registered, waiting for {sorted(expected - registered)}"
                time.sleep(0.1)

    def _admin(self, node: _Node) -> AdminClient:
        if node.admin is None:
            node.admin = _admin_client(f"{self.host}:{node.port}")
        return node.admin

    def _check_alive(self, node: _Node) -> None:
        code = node.proc.poll() if node.proc is not None else None
        if code is not None:
            raise self._node_failure(node, f"exited with code {code}")

    def _node_failure(self, node: _Node, what: str) -> BrokerError:
        return BrokerError(
            f"Kafka {self.version} node {node.node_id} ({self.host}:{node.port}) {what}; "
            f"log {node.log_path}:\n{self.log_tail(node.index)}"
        )

    def log_tail(self, index: int = 0, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of node ``index``'s log ("" when there is none)."""
        node = self._node(index)
        if node.log_file is not None:
            node.log_file.flush()
        try:
            text = node.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # --- per-node control for fault tests --------------------------------------------------

    def kill9(self, index: int) -> None:
        """SIGKILL node ``index`` (no shutdown at all) and reap it."""
        node = self._node(index)
        proc = node.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._forget(node)
        log.info("Kafka node %d pid %d killed with SIGKILL", node.node_id, proc.pid)

    def stop_node(self, index: int, grace: float | None = None) -> None:
        """Stop node ``index`` gracefully (SIGTERM, controlled shutdown) and wait; SIGKILL after ``grace``."""
        node = self._node(index)
        proc = node.proc
        if proc is None:
            return
        _terminate(proc, self.stop_grace if grace is None else grace)
        self._forget(node)
        log.info("Kafka node %d pid %d stopped (exit code %s)", node.node_id, proc.pid, proc.returncode)

    def start_node(self, index: int, timeout: float = 60.0) -> None:
        """Start node ``index`` again on its ports and data, and wait until the cluster is ready."""
        node = self._node(index)
        if node.running:
            return
        if self._lib is None or self.cluster_id is None or self.data_dir is None:
            raise BrokerError("start the cluster before starting one of its nodes")
        self._forget(node)
        self._launch(node)
        self.wait_ready(timeout)

    def _forget(self, node: _Node) -> None:
        if node.finalizer is not None:
            node.finalizer.detach()
            node.finalizer = None
        node.proc = None
        node.admin = None
        node.close_log()

    def leader_of(self, topic: str, partition: int, timeout: float = 5.0) -> int | None:
        """Index of the node leading ``topic``/``partition`` per the metadata (None: no leader now)."""
        state = self.partition_state(topic, partition, timeout)
        return state[0] if state else None

    def isr_of(self, topic: str, partition: int, timeout: float = 5.0) -> list[int]:
        """Indices of the nodes in the in-sync replica set of ``topic``/``partition``."""
        state = self.partition_state(topic, partition, timeout)
        return state[1] if state else []

    def partition_state(self, topic: str, partition: int, timeout: float = 5.0) -> tuple[int | None, list[int]] | None:
        """``(leader index or None, ISR indices)`` of a partition from a running node's metadata."""
        live = [node for node in self._nodes if node.running]
        if not live:
            raise BrokerError("no Kafka node is running")
        bootstrap = ",".join(f"{self.host}:{node.port}" for node in live)
        if self._metadata_admin is None or self._metadata_admin[0] != bootstrap:
            self._metadata_admin = (bootstrap, _admin_client(bootstrap))
        admin = self._metadata_admin[1]
        try:
            metadata = admin.list_topics(topic=topic, timeout=timeout)
        except KafkaException as exc:
            log.debug("metadata of %s failed: %s", topic, exc)
            return None
        info = metadata.topics.get(topic)
        if info is None or info.error is not None or partition not in info.partitions:
            return None
        part = info.partitions[partition]
        leader = self.node_of_broker_id(part.leader) if part.leader >= 0 else None
        return leader, sorted(self.node_of_broker_id(b) for b in part.isrs)

    def run_tool(
        self,
        main_class: str | Sequence[str],
        args: Sequence[str],
        *,
        input: str | None = None,  # noqa: A002 - the name subprocess.run uses
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """:func:`run_kafka_tool` with this cluster's Kafka version."""
        return run_kafka_tool(
            main_class, args, version=self.version, input=input, timeout=timeout, cache_dir=self._cache_dir
        )

    def stop(self) -> None:
        """Stop every node (SIGTERM together, SIGKILL after ``stop_grace``), reap them, drop a temporary data dir.

        A combined node's broker needs the controller quorum to finish its controlled
        shutdown. When its peers have exited first it can no longer have one and would
        wait until SIGKILL, so a node left without a quorum gets :data:`_NO_QUORUM_GRACE`
        seconds (KRaft's own resign timeout) instead. Killing it loses nothing written:
        the data is in the OS page cache, and the next start recovers the log. Idempotent.
        """
        live = [node for node in self._nodes if node.proc is not None]
        for node in live:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        quorum_lost_at: float | None = None
        majority = self.nodes // 2 + 1
        pending = list(live)
        while pending:
            pending = [node for node in pending if node.proc is not None and node.proc.poll() is None]
            now = time.monotonic()
            if pending and quorum_lost_at is None and self.nodes > 1 and len(pending) < majority:
                quorum_lost_at = now
            no_quorum = quorum_lost_at is not None and now - quorum_lost_at >= _NO_QUORUM_GRACE
            if pending and (now >= deadline or no_quorum):
                for node in pending:
                    assert node.proc is not None
                    why = "has no controller quorum left" if no_quorum else f"ignored SIGTERM {self.stop_grace:.0f}s"
                    log.info("Kafka node %d pid %d %s; sending SIGKILL", node.node_id, node.proc.pid, why)
                    node.proc.kill()
                    node.proc.wait()
                break
            time.sleep(0.05)
        for node in live:
            assert node.proc is not None
            node.proc.wait()
            log.info("Kafka node %d pid %d stopped (exit code %s)", node.node_id, node.proc.pid, node.proc.returncode)
            self._forget(node)
        if self._temp_finalizer is not None:
            self._temp_finalizer()  # removes the temporary data dir
            self._temp_finalizer = None
            self._temp_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pids {self.node_pids}" if any(self.node_pids) else "stopped"
        return f"<KafkaCluster {self.version} x{self.nodes} {self.bootstrap} {state}>"


def _distinct_free_ports(host: str, count: int) -> list[int]:
    """``count`` different ports the OS calls free (it may hand out a just-released one twice)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port(host)
        if port not in ports:
            ports.append(port)
    return ports


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
