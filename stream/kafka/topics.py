"""Topic names and specs of churn-stream, in one place.

Every topic of the architecture, prefixed with ``CHURN_TOPIC_PREFIX``. Data topics
(``account-events`` and everything keyed by customer) have ``CHURN_TOPIC_PARTITIONS``
partitions so they co-partition with the Faust tables; ``account-events-repartition``
carries the events a producer sent to another partition than their customer's home
(murmur2) back to it; ``drift-alerts`` has one
partition; ``model-events`` has one partition and is compacted. ``churn-features`` and
``churn-labels``, which retraining reads back, keep their records for
:func:`training_retention_ms`: the label horizon, the retraining window and a margin
(``CHURN_TRAINING_RETENTION_DAYS`` overrides it); the other topics get the broker's default.

:func:`ensure_topics` creates the missing ones idempotently and waits until the
broker's metadata shows them. A broker that rejects a topic config gets the topic
without it, and a warning says so. (Tansu accepts ``cleanup.policy=compact`` but its
memory storage does not compact.) :func:`describe_topics` reads what the broker has and
:func:`topic_differences` compares it with the specs (``churn topics --check``).

It is the first Kafka call of every process, so :func:`connect_admin` also checks the
connection there: a listener that refuses the client's SASL login or never completes a
TLS handshake is a setting to fix, not an outage to wait out, and fails at once with a
:class:`~stream.errors.ConfigError` naming ``CHURN_SECURITY_PROTOCOL`` and its companions
instead of retrying until the timeout. librdkafka's own log lines go to this module's
logger at DEBUG rather than straight to stderr.

>>> [t.name for t in topic_specs(Settings(topic_prefix="x-"))][:2]
['x-account-events', 'x-account-events-dlq']
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from stream.errors import BrokerError, ConfigError
from stream.kafka.config import ClientLog
from stream.settings import RETRAIN_WINDOW_DAYS, Settings

log = logging.getLogger(__name__)

ACCOUNT_EVENTS = "account-events"
ACCOUNT_EVENTS_DLQ = "account-events-dlq"
ACCOUNT_EVENTS_REPARTITION = "account-events-repartition"
CHURN_FEATURES = "churn-features"
CHURN_SCORES = "churn-scores"
#: The challenger's scores while it is in shadow: keyed and shaped like ``churn-scores``, never mixed into it.
CHURN_SCORES_SHADOW = "churn-scores-shadow"
CHURN_LABELS = "churn-labels"
DRIFT_ALERTS = "drift-alerts"
MODEL_EVENTS = "model-events"

DATA_TOPICS: tuple[str, ...] = (
    ACCOUNT_EVENTS,
    ACCOUNT_EVENTS_DLQ,
    ACCOUNT_EVENTS_REPARTITION,
    CHURN_FEATURES,
    CHURN_SCORES,
    CHURN_SCORES_SHADOW,
    CHURN_LABELS,
)
ALL_TOPICS: tuple[str, ...] = (*DATA_TOPICS, DRIFT_ALERTS, MODEL_EVENTS)
#: The topics retraining reads back from their start (``training/retrain.py``): the feature log and the labels.
TRAINING_TOPICS: tuple[str, ...] = (CHURN_FEATURES, CHURN_LABELS)

DAY_MS = 86_400_000
#: Days the training topics keep past the horizon and the retraining window: a retraining run that starts
#: late (a launcher cooldown, a ``--wait-labels`` wait, a stream that was down) still finds its whole window.
RETENTION_MARGIN_DAYS = 7.0
#: Topic configs whose wanted value is a floor: a larger value on the broker, or -1 (forever), meets it.
AT_LEAST: frozenset[str] = frozenset({"retention.ms"})

# Errors meaning "the broker did not like this topic config", answered by retrying without it.
_CONFIG_ERRORS = frozenset({KafkaError.INVALID_CONFIG, KafkaError.POLICY_VIOLATION, KafkaError.UNSUPPORTED_VERSION})
# The replication factor exceeds the brokers the controller counts: right after a cluster starts, for a moment.
_TOO_FEW_BROKERS = frozenset({KafkaError.INVALID_REPLICATION_FACTOR})
# Errors no retry can fix: the client's security settings and the listener disagree.
_AUTH_ERRORS = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED})
_TLS_ERRORS = frozenset({KafkaError._SSL})
# A TLS listener closes a plaintext client's connection on its first request; a broker that is
# restarting can do that once, so a setting is blamed only after this many in a row.
_CUT_BEFORE_ANSWER = 2
# TLS alerts of a listener that wants a client certificate it trusts (42 bad, 116 required, 48 unknown CA).
_CLIENT_CERT_ALERTS = ("alert bad certificate", "alert certificate required", "alert unknown ca")
# librdkafka's default of 30 s for connect + TLS + SASL would turn a listener that never
# answers the TLS handshake into a half-minute hang; a healthy handshake takes milliseconds.
CONNECTION_SETUP_MS = 5000
# What librdkafka puts before a connection message: ``[thrd:...]`` and ``proto://host:port/id``.
_CLIENT_PREFIX = re.compile(r"\[thrd:[^\]]*\]|(\w+://)?\S+:\d+/\S+")


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create: full name, partition count, replication and topic configs."""

    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)
    replication: int = 1

    def new_topic(self, with_config: bool = True) -> NewTopic:
        return NewTopic(
            self.name,
            num_partitions=self.partitions,
            replication_factor=self.replication,
            config=dict(self.config) if with_config else {},
        )


@dataclass(frozen=True)
class TopicNames:
    """The prefixed name of every topic, for code that reads or writes them."""

    account_events: str
    account_events_dlq: str
    account_events_repartition: str
    churn_features: str
    churn_scores: str
    churn_scores_shadow: str
    churn_labels: str
    drift_alerts: str
    model_events: str

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicNames:
        return cls(*(settings.topic(name) for name in ALL_TOPICS))


def training_retention_ms(settings: Settings) -> int:
    """``retention.ms`` of the topics retraining reads: ``CHURN_TRAINING_RETENTION_DAYS``, or when that is 0
    the label horizon + the retraining window + :data:`RETENTION_MARGIN_DAYS`.

    A retraining run learns from the snapshots of the window that ends one horizon before the stream's
    clock, so it needs records as old as horizon + window; records are stamped with their append time,
    so this is wall time, which is event time for a live stream.

    >>> training_retention_ms(Settings(horizon_days=30)) // DAY_MS
    97
    >>> training_retention_ms(Settings(training_retention_days=400)) // DAY_MS
    400
    """
    days = settings.training_retention_days or (settings.horizon_days + RETRAIN_WINDOW_DAYS + RETENTION_MARGIN_DAYS)
    return round(days * DAY_MS)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Specs of every churn-stream topic, named with the configured prefix."""
    replication = settings.topic_replication
    retention = {"retention.ms": str(training_retention_ms(settings))}
    specs = [
        TopicSpec(
            settings.topic(name),
            settings.topic_partitions,
            dict(retention) if name in TRAINING_TOPICS else {},
            replication,
        )
        for name in DATA_TOPICS
    ]
    specs.append(TopicSpec(settings.topic(DRIFT_ALERTS), 1, {}, replication))
    specs.append(TopicSpec(settings.topic(MODEL_EVENTS), 1, {"cleanup.policy": "compact"}, replication))
    return specs


@dataclass(frozen=True)
class TopicState:
    """What the broker reports of a topic: partitions, replication factor and the configs it describes."""

    partitions: int
    replication: int
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicDifference:
    """One way a topic on the broker differs from its spec: ``key`` is ``topic``, ``partitions``,
    ``replication`` or a topic config."""

    topic: str
    key: str
    wanted: str
    actual: str

    def line(self) -> str:
        """One line: topic, key, wanted, actual (``retention.ms`` also in days).

        >>> TopicDifference("churn-labels", "retention.ms", ">= 8380800000", "604800000").line()
        'churn-labels retention.ms: wanted >= 8380800000 (97 days), actual 604800000 (7 days)'
        """
        return (
            f"{self.topic} {self.key}: wanted {_shown(self.key, self.wanted)}, actual {_shown(self.key, self.actual)}"
        )


#: What a difference says of a value the broker does not report.
MISSING = "(no such topic)"
UNSET = "(not set)"


def _shown(key: str, value: str) -> str:
    number = value.removeprefix(">= ")
    if key != "retention.ms" or not number.lstrip("-").isdigit():
        return value
    return f"{value} (forever)" if number == "-1" else f"{value} ({int(number) / DAY_MS:g} days)"


def _meets(key: str, wanted: str, actual: str | None) -> bool:
    if actual is None:
        return False
    if key in AT_LEAST:
        try:
            return int(actual) == -1 or int(actual) >= int(wanted)
        except ValueError:
            pass
    return actual == wanted


def topic_differences(specs: Iterable[TopicSpec], actual: Mapping[str, TopicState]) -> list[TopicDifference]:
    """Every way the topics in ``actual`` (by name) differ from ``specs``, in spec order.

    A missing topic is one difference (key ``topic``); partitions and replication must match; each config
    the spec sets must have its value on the broker, except those in :data:`AT_LEAST` (``retention.ms``),
    which a larger value or -1 meets. Configs a spec does not set are not compared.

    >>> [d.line() for d in topic_differences([TopicSpec("a", 4, {"cleanup.policy": "compact"})], {"a": TopicState(4, 1)})]
    ['a cleanup.policy: wanted compact, actual (not set)']
    """
    differences = []
    for spec in specs:
        state = actual.get(spec.name)
        if state is None:
            differences.append(TopicDifference(spec.name, "topic", "exists", MISSING))
            continue
        if state.partitions != spec.partitions:
            differences.append(TopicDifference(spec.name, "partitions", str(spec.partitions), str(state.partitions)))
        if state.replication != spec.replication:
            differences.append(TopicDifference(spec.name, "replication", str(spec.replication), str(state.replication)))
        for key, wanted in spec.config.items():
            have = state.config.get(key)
            if not _meets(key, wanted, have):
                shown = f">= {wanted}" if key in AT_LEAST else wanted
                differences.append(TopicDifference(spec.name, key, shown, UNSET if have is None else have))
    return differences


def describe_topics(admin: AdminClient, names: Iterable[str], timeout: float = 10.0) -> dict[str, TopicState]:
    """The state of each of ``names`` the broker has (absent ones are left out), configs from ``describe_configs``.

    A broker may describe only the configs set on the topic (Tansu), not its defaults too (Apache Kafka).
    """
    names = list(names)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerError(f"cannot list topics: {exc}") from exc
    present = {
        name: t for name in names if (t := metadata.topics.get(name)) is not None and t.error is None and t.partitions
    }
    if not present:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in present]
    try:
        futures = admin.describe_configs(resources, request_timeout=timeout)
    except KafkaException as exc:
        raise BrokerError(f"cannot describe topic configs: {exc}") from exc
    states = {}
    for resource, future in futures.items():
        try:
            entries = future.result(timeout=timeout)
        except KafkaException as exc:
            raise BrokerError(f"cannot describe the configs of topic {resource.name}: {exc.args[0]}") from exc
        except concurrent.futures.TimeoutError as exc:
            raise BrokerError(f"describing topic {resource.name} did not finish within {timeout:.0f}s") from exc
        partitions = present[resource.name].partitions.values()
        states[resource.name] = TopicState(
            len(partitions),
            min(len(p.replicas) for p in partitions),
            {key: entry.value for key, entry in entries.items() if entry.value is not None},
        )
    return states


def check_topics(
    admin_or_config: AdminClient | Mapping[str, str], specs: Iterable[TopicSpec], timeout: float = 15.0
) -> list[TopicDifference]:
    """How the broker's topics differ from ``specs`` (:func:`topic_differences` of :func:`describe_topics`)."""
    specs = list(specs)
    admin = _admin(admin_or_config, timeout)
    return topic_differences(specs, describe_topics(admin, [s.name for s in specs], timeout))


def _security(config: Mapping[str, str]) -> str:
    """The client's security settings as the ``CHURN_*`` variables they came from (no secrets)."""
    protocol = config.get("security.protocol", "PLAINTEXT")
    parts = [f"CHURN_SECURITY_PROTOCOL={protocol}"]
    if "SASL" in protocol:
        parts.append(f"CHURN_SASL_MECHANISM={config.get('sasl.mechanism', '')}")
        parts.append(f"CHURN_SASL_USERNAME={config.get('sasl.username', '')}")
    if "SSL" in protocol:
        parts.append(f"CHURN_SSL_CAFILE={config.get('ssl.ca.location') or '(system CAs)'}")
        parts.append(f"CHURN_SSL_CERTFILE={config.get('ssl.certificate.location') or '(none)'}")
    return ", ".join(parts)


def _detail(text: str) -> str:
    """librdkafka's message on one line, without its ``[thrd:...]: proto://host:port/id: `` prefixes."""
    while True:
        head, sep, rest = text.partition(": ")
        if not (sep and _CLIENT_PREFIX.fullmatch(head)):
            return " ".join(text.split())
        text = rest


def _mismatch(config: Mapping[str, str], errors: list[KafkaError], failures: list[str]) -> ConfigError | None:
    """A ``ConfigError`` when the connection failed in a way only a setting can fix, else ``None``."""
    where = f"the Kafka broker at {config.get('bootstrap.servers', '?')}"
    auth = [e.str() for e in errors if e.code() in _AUTH_ERRORS] + [f for f in failures if "in state AUTH" in f]
    if auth:
        return ConfigError(
            f"{where} refused the SASL login ({_security(config)}): {_detail(auth[-1])}; "
            "set CHURN_SASL_USERNAME and CHURN_SASL_PASSWORD to a user the broker knows "
            "(and CHURN_SECURITY_PROTOCOL, CHURN_SASL_MECHANISM to what the listener expects)"
        )
    refused_cert = [f for f in failures if any(alert in f for alert in _CLIENT_CERT_ALERTS)]
    if refused_cert:
        return ConfigError(
            f"{where} refused this client's certificate ({_security(config)}): {_detail(refused_cert[-1])}; "
            "the listener requires mutual TLS: set CHURN_SSL_CERTFILE and CHURN_SSL_KEYFILE to a certificate "
            "signed by a CA it trusts"
        )
    tls = [e.str() for e in errors if e.code() in _TLS_ERRORS] + [f for f in failures if "SSL_HANDSHAKE" in f]
    if tls:
        detail = _detail(tls[-1])
        hint = (
            "set CHURN_SSL_CAFILE to the CA that signed the broker's certificate"
            if "certificate" in detail
            else "is it a plaintext listener? set CHURN_SECURITY_PROTOCOL to what the listener speaks"
        )
        return ConfigError(f"no TLS session with {where} ({_security(config)}): {detail}; {hint}")
    plain = config.get("security.protocol", "PLAINTEXT") in ("PLAINTEXT", "SASL_PLAINTEXT")
    cut = [f for f in failures if "closed by peer" in f and "in state APIVERSION_QUERY" in f]
    if plain and len(cut) >= _CUT_BEFORE_ANSWER:
        return ConfigError(
            f"{where} closed every connection before answering its first request ({_security(config)}): "
            f"{_detail(cut[-1])}; is it a TLS listener? set CHURN_SECURITY_PROTOCOL to what the listener speaks"
        )
    return None


def connect_admin(config: Mapping[str, str], timeout: float = 15.0, refused_s: float | None = None) -> AdminClient:
    """An admin client for ``config`` whose broker has answered a metadata request.

    Fails fast, with a :class:`ConfigError` naming the settings, when the broker refuses
    the SASL login or the TLS handshake fails or never completes (a plaintext listener
    for a TLS client); raises :class:`BrokerError` when no broker answers within
    ``timeout`` seconds (unreachable, or still starting), or, with ``refused_s``, once
    every connection has been refused for that long (nothing listens: a command need not
    wait for a broker that may still be starting, as a worker does).
    """
    client_log = ClientLog()
    errors: list[KafkaError] = []
    admin = AdminClient(
        {
            "socket.connection.setup.timeout.ms": CONNECTION_SETUP_MS,
            **config,
            "error_cb": errors.append,
            "logger": client_log,
        }
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=min(0.5, max(0.05, deadline - time.monotonic())))
            return admin
        except KafkaException as exc:
            last = exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
        admin.poll(0)  # serves error_cb and the log lines
        mismatch = _mismatch(config, errors, client_log.failures)
        if mismatch is not None:
            raise mismatch
        refused = (
            refused_s is not None
            and client_log.failures
            and all("Connection refused" in f for f in client_log.failures)
            and time.monotonic() >= deadline - timeout + refused_s
        )
        if time.monotonic() >= deadline or refused:
            reason = _detail(client_log.failures[-1]) if client_log.failures else last
            raise BrokerError(
                f"no answer from the Kafka broker at {config.get('bootstrap.servers', '?')} "
                f"{f'(every connection refused for {refused_s:.0f}s)' if refused else f'within {timeout:.0f}s'} "
                f"(CHURN_BOOTSTRAP_SERVERS; {_security(config)}): {reason}"
            )


#: Seconds a command waits for the broker to answer before it gives up.
BROKER_WAIT_S = 8.0


def require_broker(
    config: Mapping[str, str], topics: Iterable[str] = (), timeout: float = BROKER_WAIT_S
) -> AdminClient:
    """An admin client whose broker answered within ``timeout`` and has ``topics``; else one-line errors
    (within 3 seconds when every connection is refused)."""
    admin = connect_admin(config, timeout, refused_s=3.0)
    require_topics(admin, topics)
    return admin


def require_topics(admin: AdminClient, names: Iterable[str], timeout: float = 10.0) -> None:
    """Raise :class:`BrokerError` naming the first of ``names`` the broker does not have, or
    :class:`ConfigError` when the principal may not see it (ACLs hide a topic from a principal
    without Describe on it)."""
    existing = _existing(admin, timeout)
    for name in names:
        if name not in existing:
            if _hidden(admin, name, timeout):
                raise ConfigError(
                    f"the Kafka principal (CHURN_SASL_USERNAME) is not allowed to describe topic {name}; "
                    "grant its role's ACLs with `churn acls apply`"
                )
            raise BrokerError(
                f"topic {name} does not exist on the Kafka broker (CHURN_BOOTSTRAP_SERVERS, "
                "CHURN_TOPIC_PREFIX); create the topics with `churn topics`"
            )


def _hidden(admin: AdminClient, name: str, timeout: float) -> bool:
    """Whether the broker refuses to describe topic ``name`` to this principal."""
    try:
        admin.describe_topics(TopicCollection([name]), request_timeout=timeout)[name].result(timeout=timeout)
    except KafkaException as exc:
        return bool(exc.args) and exc.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    except concurrent.futures.TimeoutError:
        return False
    return False


def _admin(admin_or_config: AdminClient | Mapping[str, str], timeout: float) -> AdminClient:
    if isinstance(admin_or_config, Mapping):
        return connect_admin(admin_or_config, timeout)
    return admin_or_config


def _existing(admin: AdminClient, timeout: float) -> dict[str, int]:
    """Topic name -> partition count of the topics the broker reports without error."""
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerError(f"cannot list topics: {exc}") from exc
    return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None and t.partitions}


def _create(admin: AdminClient, specs: list[TopicSpec], timeout: float, with_config: bool) -> dict[str, KafkaError]:
    """Create ``specs``; the error of each topic that was not created (already existing ones included)."""
    if not specs:
        return {}
    try:
        futures = admin.create_topics(
            [s.new_topic(with_config) for s in specs], operation_timeout=timeout, request_timeout=timeout
        )
    except KafkaException as exc:
        raise BrokerError(f"cannot create topics: {exc}") from exc
    failures: dict[str, KafkaError] = {}
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            failures[name] = exc.args[0]
        except concurrent.futures.TimeoutError as exc:
            raise BrokerError(f"creating topic {name} did not finish within {timeout:.0f}s") from exc
    return failures


def _pop_already_existing(failures: dict[str, KafkaError]) -> set[str]:
    """Remove and return the topics that failed only because they exist (created concurrently)."""
    raced = {name for name, err in failures.items() if err.code() == KafkaError.TOPIC_ALREADY_EXISTS}
    for name in raced:
        del failures[name]
    return raced


def ensure_topics(
    admin_or_config: AdminClient | Mapping[str, str], specs: Iterable[TopicSpec], timeout: float = 15.0
) -> list[str]:
    """Create the topics of ``specs`` that do not exist yet; the names created.

    Idempotent: a topic that exists already (also one created concurrently) is fine;
    one that exists with another partition count is logged as a warning. Waits until
    the metadata shows every topic, and raises :class:`BrokerError` on real failures
    or when ``timeout`` seconds pass. Given a config rather than a client, it connects
    with :func:`connect_admin`, so security settings the broker refuses raise
    :class:`ConfigError` at once.
    """
    admin = _admin(admin_or_config, timeout)
    specs = list(specs)
    deadline = time.monotonic() + timeout
    existing = _existing(admin, timeout)
    missing = [s for s in specs if s.name not in existing]
    failures = _create(admin, missing, timeout, with_config=True)
    # A cluster that has just started may not count all its brokers yet: wait for them, within the deadline.
    while (
        short := [s for s in missing if s.name in failures and failures[s.name].code() in _TOO_FEW_BROKERS]
    ) and time.monotonic() < deadline:
        time.sleep(0.25)
        for spec in short:
            del failures[spec.name]
        failures.update(_create(admin, short, timeout, with_config=True))
    raced = _pop_already_existing(failures)

    rejected = [s for s in missing if s.name in failures and failures[s.name].code() in _CONFIG_ERRORS and s.config]
    for spec in rejected:
        log.warning(
            "broker rejected config %s of topic %s (%s); creating it without",
            dict(spec.config),
            spec.name,
            failures.pop(spec.name).str(),
        )
    failures.update(_create(admin, rejected, timeout, with_config=False))
    raced |= _pop_already_existing(failures)
    if failures:
        detail = "; ".join(f"{name}: {err.str()}" for name, err in sorted(failures.items()))
        raise BrokerError(f"cannot create topics: {detail}")

    wanted = {s.name: s.partitions for s in specs}
    while True:
        existing = _existing(admin, max(0.1, deadline - time.monotonic()))
        absent = sorted(set(wanted) - set(existing))
        if not absent:
            break
        if time.monotonic() >= deadline:
            raise BrokerError(f"topics {absent} did not appear in the broker metadata within {timeout:.0f}s")
        time.sleep(0.05)
    for name, partitions in wanted.items():
        if existing[name] != partitions:
            log.warning("topic %s has %d partitions, expected %d", name, existing[name], partitions)
    created = [s.name for s in missing if s.name not in raced]
    if created:
        log.info("created topics %s", created)
    return created
