"""Apache Kafka over SASL_SSL with ACLs: each role works as its own principal and only within its rights.

One secure cluster per module (``kafka_secure``: TLS from a throwaway CA, SCRAM-SHA-512 users,
the standard authorizer denying what no ACL allows). Each test creates its topics as the super
user, under its own prefix, and applies the ACLs of ``deploy/kafka/acls.yaml`` with ``churn acls
apply``. Every process runs as the user of its role, with its password from the environment.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicCollection
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from support import CHURN, WorkerProcess, free_port, worker_env
from support.tiers import SECURE, missing_tier

from schemas.outputs import DriftAlert
from stream.errors import BrokerError
from stream.kafka.acls import load_roles
from stream.kafka.topics import ALL_TOPICS, CONNECTION_SETUP_MS, ensure_topics, topic_specs
from stream.local.kafka_security import ADMIN_USER
from stream.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("embedded")]

ROLES = load_roles()
USER = {name: role.user for name, role in ROLES.items()}
# A command that fails on its connection: its start-up (seconds on a loaded machine) plus the
# connection setup timeout; one that retried would take the subprocess timeout.
FAIL_FAST_S = 30.0 + CONNECTION_SETUP_MS / 1000


class Run:
    """One test's topics, group and data folder on the secure cluster."""

    def __init__(self, cluster, registry_dir: Path, tmp_path: Path) -> None:
        self.cluster = cluster
        self.security = cluster.security
        self.bootstrap = cluster.secure_bootstrap
        tag = uuid.uuid4().hex[:8]
        self.prefix, self.app_id = f"s{tag}-", f"churn-secure-{tag}"
        self.registry_dir, self.tmp_path = registry_dir, tmp_path
        self.settings = Settings(topic_prefix=self.prefix, app_id=self.app_id)

    def env(self, user: str, password: str | None = None, **over: str) -> dict[str, str]:
        return worker_env(
            {
                **self.security.client_env(self.bootstrap, user, password),
                "CHURN_TOPIC_PREFIX": self.prefix,
                "CHURN_APP_ID": self.app_id,
                "CHURN_DATA_DIR": str(self.registry_dir),
                "CHURN_WEB_PORT": str(free_port()),
                "CHURN_LAUNCHER_PORT": "0",
                "CHURN_LOG_LEVEL": "INFO",
            },
            **over,
        )

    def role_env(self, role: str, **over: str) -> dict[str, str]:
        return self.env(USER[role], **over)

    def client(self, role_or_user: str) -> dict[str, str]:
        return self.security.client_config(self.bootstrap, USER.get(role_or_user, role_or_user))

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def provision(self) -> None:
        """Topics created and every role's ACLs applied, as the super user."""
        ensure_topics(AdminClient(self.client(ADMIN_USER)), topic_specs(self.settings))
        done = churn(["acls", "apply"], self.env(ADMIN_USER))
        assert done.returncode == 0, done.stderr
        assert "applied" in done.stdout, done.stdout

    def secrets(self) -> list[str]:
        return list(self.security.users.values())


def churn(args: list[str], env: dict[str, str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHURN, *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout
    )


def assert_no_secret(text: str, run: Run, where: str) -> None:
    for secret in run.secrets():
        assert secret not in text, f"a password appears in {where}"


@pytest.fixture
def run(kafka_secure, registry_dir, tmp_path) -> Run:
    return Run(kafka_secure, registry_dir, tmp_path)


def test_the_stream_runs_over_sasl_ssl_with_a_principal_per_role(run: Run) -> None:
    """Producer, worker, scores consumer, launcher and retraining job, each as its own user, over TLS."""
    run.provision()
    worker = WorkerProcess(run.role_env("worker", CHURN_SCORE_BATCH_MS="20"), run.tmp_path / "worker.log").start()
    try:
        worker.wait_serving(timeout=180)
        produced = churn(
            ["produce", "--customers", "120", "--days", "40", "--max-events", "1200", "--seed", "5"],
            run.role_env("producer"),
        )
        assert produced.returncode == 0, produced.stderr
        assert "failed 0" in produced.stdout, produced.stdout
        tail = churn(["tail", "--json", "--from-beginning", "--max", "1200"], run.role_env("scores-consumer"), 180)
        assert tail.returncode == 0, tail.stderr
        scores = [json.loads(line) for line in tail.stdout.splitlines() if line.startswith("{")]
        assert len(scores) == 1200
        assert {s["model_version"] for s in scores} == {"1"}
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=10) as page:
            metrics_page = page.read().decode()
        assert "churn_events_in_total" in metrics_page

        # A drift alert, published as the super user, makes the launcher start a job as the retrain user.
        alert = DriftAlert(
            alert_id=uuid.uuid4().hex, detector="feature_psi", kind="data", features={"usage_30d": 0.4},
            window_start=datetime(2026, 1, 1, tzinfo=UTC), window_end=datetime(2026, 1, 8, tzinfo=UTC),
            model_version="1", severity="high", created_at=datetime.now(UTC), harm=True,
        )  # fmt: skip
        producer = Producer(run.client(ADMIN_USER))
        producer.produce(run.topic("drift-alerts"), alert.model_dump_json().encode(), b"feature_psi")
        assert producer.flush(30) == 0
        launcher = churn(
            ["launcher", "--once", "--cooldown", "0"],
            run.role_env(
                "launcher",
                CHURN_LAUNCHER_JOB_SASL_USERNAME=USER["retrain"],
                CHURN_LAUNCHER_JOB_SASL_PASSWORD=run.security.users[USER["retrain"]],
            ),
            300,
        )
        assert "launched retraining run 1" in launcher.stdout + launcher.stderr, launcher.stderr[-2000:]
        job_logs = sorted((run.registry_dir / "launcher").glob("retrain-*.log"), key=lambda p: p.stat().st_mtime)
        job_log = job_logs[-1].read_text()
        # The job read the whole feature log as the retrain user (it then finds too few labels to train on).
        read = re.search(r"feature log: ([\d,]+) records", job_log)
        assert read is not None and int(read.group(1).replace(",", "")) >= 1200, job_log[-2000:]
        assert "authoriz" not in job_log.lower(), job_log[-2000:]
    finally:
        worker.stop()
    everything = "\n".join(
        [worker.log_path.read_text(), produced.stdout, produced.stderr, tail.stderr, launcher.stdout,
         launcher.stderr, job_log, metrics_page]
    )  # fmt: skip
    assert_no_secret(everything, run, "the logs, the commands' output or /metrics")
    assert "authoriz" not in worker.log_path.read_text().lower()


BAD = {
    # case: (environment changes, the variable the one line must name)
    "wrong password": (lambda run, role: run.env(USER[role], "not-" + uuid.uuid4().hex), "CHURN_SASL_PASSWORD"),
    "unknown user": (lambda run, role: run.env("nobody-" + uuid.uuid4().hex[:6], uuid.uuid4().hex), "CHURN_SASL_USERNAME"),
    "untrusted certificate": (
        lambda run, role: run.role_env(role, CHURN_SSL_CAFILE=str(run.security.pki.other_ca_cert)),
        "CHURN_SSL_CAFILE",
    ),
    "plaintext client": (lambda run, role: run.role_env(role, CHURN_SECURITY_PROTOCOL="PLAINTEXT"), "CHURN_SECURITY_PROTOCOL"),
}  # fmt: skip
COMMANDS = {
    "worker": ["worker"],
    "producer": ["produce", "--customers", "5", "--days", "5", "--max-events", "10"],
    "scores-consumer": ["tail", "--json", "--max", "1"],
    "launcher": ["launcher", "--once"],
    "retrain": ["retrain"],
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_credentials_fail_fast_in_one_line_without_secrets(run: Run, case: str) -> None:
    """Each bad case against every role's command: non-zero within seconds, one line naming the setting."""
    run.provision()
    make_env, variable = BAD[case]
    for role, args in COMMANDS.items():
        env = make_env(run, role)
        began = time.monotonic()
        done = churn(args, env, timeout=90)
        seconds = time.monotonic() - began
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode != 0, f"{role}: exited 0"
        assert "Traceback" not in done.stderr + done.stdout, f"{role}:\n{done.stderr[-3000:]}"
        errors = [line for line in lines if line.startswith("error:")]
        assert len(errors) == 1, f"{role}: expected one error line:\n{done.stderr[-3000:]}"
        assert variable in errors[0], f"{role}: {errors[0]}"
        assert seconds < FAIL_FAST_S, f"{role} took {seconds:.1f}s to fail: {errors[0]}"
        assert_no_secret(done.stdout + done.stderr, run, f"{role}'s output")
        assert env["CHURN_SASL_PASSWORD"] not in done.stdout + done.stderr
        print(f"{case} / {role}: exit {done.returncode} in {seconds:.1f}s: {errors[0][:160]}")


def _allowed(run: Run, role: str) -> dict[str, set[str]]:
    """Topic -> operations the ACL file grants ``role`` (Describe implied by Read and Write)."""
    granted: dict[str, set[str]] = {}
    for grant in ROLES[role].render(run.settings):
        if grant.kind == "TOPIC" and grant.pattern == "LITERAL":
            granted.setdefault(grant.name, set()).update(grant.operations)
    return granted


def _operations(admin: AdminClient, topic: str) -> set[str] | None:
    """What the connected principal may do on ``topic``; None when the broker hides it."""
    try:
        described = admin.describe_topics(TopicCollection([topic]), include_authorized_operations=True)[topic].result(
            10
        )
    except KafkaException as exc:
        assert exc.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, exc
        return None
    return {op.name for op in described.authorized_operations}


def _create_error(admin: AdminClient, topic: str) -> str | None:
    """The error that refuses creating ``topic``, or None when it was created."""
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(20)
    except KafkaException as exc:
        return exc.args[0].name()
    return None


def _produce_error(config: dict[str, str], topic: str) -> str | None:
    errors: list[str] = []
    producer = Producer({**config, "message.timeout.ms": 10000})
    producer.produce(topic, b"{}", b"k", on_delivery=lambda err, msg: errors.append(err.name()) if err else None)
    producer.flush(20)
    return errors[0] if errors else None


def _consume_error(config: dict[str, str], topic: str, group: str) -> str | None:
    """The error that refuses reading ``topic`` in ``group``, or None when it can be read."""
    consumer = Consumer({**config, "group.id": group, "auto.offset.reset": "earliest", "enable.partition.eof": True})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() and msg.error().code() != KafkaError._PARTITION_EOF:
                return msg.error().name()
            return None  # a record, or the end of a partition: reading is allowed
        raise AssertionError(f"neither a record, the end of {topic} nor an error within 20 s")
    finally:
        consumer.close()


def test_every_role_has_exactly_its_acls_and_is_refused_outside_them(run: Run) -> None:
    """The ACL matrix: per role and topic, what the broker allows is what the file grants; real requests agree."""
    run.provision()
    topics = [run.topic(name) for name in ALL_TOPICS]
    for role in ROLES:
        admin = AdminClient(run.client(role))
        granted = _allowed(run, role)
        for topic in topics:
            have = _operations(admin, topic)
            if topic not in granted:
                assert have is None, f"{role} can see {topic}: {have}"
                continue
            assert have is not None, f"{role} cannot see {topic}"
            assert have == granted[topic] | {"DESCRIBE"}, (
                f"{role} on {topic}: {sorted(have)} vs {sorted(granted[topic])}"
            )
        # No role may create a topic outside its grants.
        assert _create_error(admin, f"rogue-{uuid.uuid4().hex[:6]}") == "TOPIC_AUTHORIZATION_FAILED", role

    # Real requests, allowed and refused.
    events = run.topic("account-events")
    assert _produce_error(run.client("producer"), events) is None
    # A producer has no group to read with and no right on the scores: refused either way.
    refused = {"GROUP_AUTHORIZATION_FAILED", "TOPIC_AUTHORIZATION_FAILED"}
    assert _consume_error(run.client("producer"), run.topic("churn-scores"), "scores-x") in refused
    # A scores consumer, in a group it may use, is refused the events topic itself.
    assert _consume_error(run.client("scores-consumer"), events, "scores-app") == "TOPIC_AUTHORIZATION_FAILED"
    assert _produce_error(run.client("scores-consumer"), run.topic("model-events")) == "TOPIC_AUTHORIZATION_FAILED"
    assert _produce_error(run.client("scores-consumer"), events) == "TOPIC_AUTHORIZATION_FAILED"
    assert _produce_error(run.client("retrain"), run.topic("model-events")) is None
    assert _produce_error(run.client("retrain"), run.topic("churn-scores")) == "TOPIC_AUTHORIZATION_FAILED"
    assert _produce_error(run.client("launcher"), run.topic("churn-scores")) == "TOPIC_AUTHORIZATION_FAILED"
    assert _produce_error(run.client("worker"), run.topic("model-events")) == "TOPIC_AUTHORIZATION_FAILED"
    assert _consume_error(run.client("scores-consumer"), run.topic("churn-scores"), "scores-app") is None
    # A scores consumer's group outside its prefixes is refused.
    assert _consume_error(run.client("scores-consumer"), run.topic("churn-scores"), "other-app") == (
        "GROUP_AUTHORIZATION_FAILED"
    )
    # Only the super user may change ACLs.
    denied = churn(["acls", "apply"], run.role_env("worker"))
    assert denied.returncode != 0 and "super user" in denied.stderr, denied.stderr


def test_a_worker_missing_one_right_stops_in_one_line(run: Run) -> None:
    """Without Write on churn-scores the worker stops at start, naming the right, instead of retrying."""
    run.provision()
    admin = AdminClient(run.client(ADMIN_USER))
    scores = run.topic("churn-scores")
    match = AclBindingFilter(
        ResourceType.TOPIC, scores, ResourcePatternType.LITERAL, f"User:{USER['worker']}", None,
        AclOperation.WRITE, AclPermissionType.ALLOW,
    )  # fmt: skip
    deleted = admin.delete_acls([match])[match].result(10)
    assert len(deleted) == 1
    env = run.role_env("worker")
    began = time.monotonic()
    done = churn(["worker"], env, timeout=90)
    seconds = time.monotonic() - began
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode != 0
    assert len(errors) == 1, done.stderr[-3000:]
    assert f"WRITE on topic {scores}" in errors[0] and "CHURN_SASL_USERNAME" in errors[0], errors[0]
    assert "churn acls apply" in errors[0]
    assert seconds < FAIL_FAST_S, f"took {seconds:.1f}s"
    assert_no_secret(done.stdout + done.stderr, run, "the worker's output")


@pytest.fixture(scope="module")
def kafka_mtls(tmp_path_factory):
    """Apache Kafka whose SASL_SSL listener also requires a client certificate signed by its CA (no ACLs)."""
    from stream.local.kafka_cluster import QUICK_START_JVM_OPTS, KafkaCluster
    from stream.local.kafka_security import BrokerSecurity, make_pki

    home = tmp_path_factory.mktemp("kafka-mtls")
    try:
        security = BrokerSecurity(
            make_pki(home / "pki"), users={ADMIN_USER: uuid.uuid4().hex}, acls=False, client_auth="required"
        )
        cluster = KafkaCluster(1, log_dir=home / "logs", jvm_opts=QUICK_START_JVM_OPTS, security=security).start()
    except BrokerError as exc:
        missing_tier(SECURE, f"mutual TLS: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


def test_mutual_tls_the_worker_serves_with_a_certificate_and_a_client_without_one_is_named(
    kafka_mtls, kafka_secure, registry_dir, tmp_path
) -> None:
    """Both client libraries present CHURN_SSL_CERTFILE; without it the command stops in one line naming it."""
    run = Run(kafka_mtls, registry_dir, tmp_path)
    ensure_topics(AdminClient(run.client(ADMIN_USER)), topic_specs(run.settings))
    env = run.env(ADMIN_USER)
    assert env["CHURN_SSL_CERTFILE"] and env["CHURN_SSL_KEYFILE"]
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_serving(timeout=180)  # Faust's consumer and producer (aiokafka) over mutual TLS
    finally:
        worker.stop()
    served = churn(["tail", "--json", "--max", "0"], env)  # librdkafka over mutual TLS
    assert served.returncode == 0, served.stderr
    bare = {k: v for k, v in env.items() if k not in ("CHURN_SSL_CERTFILE", "CHURN_SSL_KEYFILE")}
    began = time.monotonic()
    done = churn(["tail", "--json", "--max", "0"], bare)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-3000:]
    assert "CHURN_SSL_CERTFILE" in errors[0] and "mutual TLS" in errors[0], errors[0]
    assert time.monotonic() - began < FAIL_FAST_S
    assert_no_secret(done.stdout + done.stderr + worker.log_path.read_text(), run, "the output")
