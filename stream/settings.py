"""The one settings object of churn-stream, in scopes by concern.

Every value comes from an environment variable with the ``CHURN_`` prefix (named in
each field's description) or from an explicit keyword argument; nothing else in the
code reads the environment. Build it with :func:`load_settings`, which turns a bad
value into a :class:`~stream.errors.ConfigError` naming the variable.

The fields live in scope classes (:data:`SCOPES`): common, kafka, registry, service,
worker, drift, training, launcher and shadow. Each builds alone (``KafkaSettings()`` reads only the Kafka
variables; :func:`load_scope` for the one-line error); :class:`Settings` inherits them
all, so ``settings.<field>`` reaches every field. ``churn <command> --help`` lists the
variables of the scopes that command reads (``stream.cli.commands.COMMAND_SCOPES``).

>>> s = Settings(data_dir="/tmp/churn-doc")
>>> s.resolved_tracking_uri()
'sqlite:////tmp/churn-doc/mlflow.db'
>>> Settings(web_host="10.0.0.7").advertised_web_host()
'10.0.0.7'
>>> Settings(web_host="0.0.0.0", web_advertised_host="worker-1.churn").advertised_web_host()
'worker-1.churn'
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Literal, Self, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.features import FEATURE_NAMES
from stream.errors import ConfigError, register_secret

ENV_PREFIX = "CHURN_"

#: How the cluster id of every embedded broker churn starts begins (``stream.local.broker``).
EMBEDDED_CLUSTER_PREFIX = "churn-embedded-"
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
#: Days of labelled feature-log snapshots a retraining run learns from by default (``dataset.window_days`` of
#: ``training/config.py``); the topics it reads keep their records this long past the horizon.
RETRAIN_WINDOW_DAYS = 60.0
# Addresses a server binds to that no client can connect to.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})
# One item of a CPU list: a CPU or a range of them.
_CPU_ITEM = re.compile(r"(\d+)(?:-(\d+))?")


def parse_cpus(text: str) -> set[int]:
    """A CPU list as ``taskset -c`` takes it (``0``, ``0-2,5``); ``ValueError`` when malformed, or when a CPU
    is past this machine's (a process's own affinity, which its parent's narrows, is not the bound).

    >>> sorted(parse_cpus("0"))
    [0]
    >>> parse_cpus("1-0")
    Traceback (most recent call last):
    ...
    ValueError: '1-0' is not a CPU list such as 0 or 0-2,5
    """
    cpus: set[int] = set()
    for item in text.split(","):
        match = _CPU_ITEM.fullmatch(item.strip())
        if match is None or (match[2] is not None and int(match[2]) < int(match[1])):
            raise ValueError(f"{text!r} is not a CPU list such as 0 or 0-2,5")
        first = int(match[1])
        cpus.update(range(first, int(match[2] or first) + 1))
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError("CPU affinity is not supported on this platform; leave it empty")
    count = os.cpu_count() or 1
    if max(cpus) >= count:
        raise ValueError(
            f"CPU(s) {', '.join(str(c) for c in sorted(cpus) if c >= count)} not available here "
            f"(this machine has CPUs 0-{count - 1})"
        )
    return cpus


def split_userinfo(uri: str) -> tuple[str, str, str | None]:
    """``uri`` without its ``user[:password]@`` part, the user and the password (None without one).

    >>> split_userinfo("http://reader:pw@10.0.0.5:5000/x")
    ('http://10.0.0.5:5000/x', 'reader', 'pw')
    >>> split_userinfo("sqlite:////tmp/m.db")
    ('sqlite:////tmp/m.db', '', None)
    """
    scheme, sep, rest = uri.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not sep or not at:
        return uri, "", None
    user, colon, password = userinfo.partition(":")
    return f"{scheme}://{host}{slash}{path}", user, password if colon else None


def redact_userinfo(uri: str) -> str:
    """``uri`` with the password of its ``user:password@`` part shown as ``***``.

    >>> redact_userinfo("http://reader:pw@10.0.0.5:5000"), redact_userinfo("http://reader@10.0.0.5:5000")
    ('http://reader:***@10.0.0.5:5000', 'http://reader@10.0.0.5:5000')
    """
    bare, user, password = split_userinfo(uri)
    if password is None:
        return uri
    scheme, _, rest = bare.partition("://")
    return f"{scheme}://{user}:***@{rest}"


# A DNS name, an IPv4 address or a bracketed IPv6 address: no scheme, port or path.
_HOST = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\]")


class Scope(BaseSettings):
    """A group of settings of one concern; each field is the environment variable ``CHURN_<NAME>``.

    A scope can be built alone (``KafkaSettings()`` reads only its own variables); :class:`Settings`
    combines them all. Validator names are unique across scopes: a combined class inherits them all.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    def model_post_init(self, context: object, /) -> None:
        """Register every password and token (and a password in the tracking URI) as never shown in an error."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                register_secret(value.get_secret_value())
        password = split_userinfo(str(getattr(self, "mlflow_tracking_uri", "")))[2]
        if password:
            register_secret(password)


class CommonSettings(Scope):
    """What every command reads: the local data folder and the log level."""

    data_dir: Path = Field(Path(".churn"), description="CHURN_DATA_DIR: folder for the local registry, state and logs.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="CHURN_LOG_LEVEL: log level.")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class KafkaSettings(Scope):
    """The broker: where it is, how to authenticate, the topics' shape, its quirks and the fetch wait.

    >>> KafkaSettings(topic_prefix="run7-").topic("churn-scores")
    'run7-churn-scores'
    """

    bootstrap_servers: str = Field(
        "", description="CHURN_BOOTSTRAP_SERVERS: host:port list; empty means the embedded broker."
    )
    broker_port: int = Field(19092, ge=1, le=65535, description="CHURN_BROKER_PORT: embedded broker port on loopback.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="CHURN_SECURITY_PROTOCOL: Kafka security protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="CHURN_SASL_MECHANISM: SASL mechanism when the protocol uses SASL."
    )
    sasl_username: str = Field("", description="CHURN_SASL_USERNAME: SASL user.")
    sasl_password: SecretStr = Field(SecretStr(""), description="CHURN_SASL_PASSWORD: SASL password.")
    ssl_cafile: str = Field("", description="CHURN_SSL_CAFILE: CA bundle for TLS.")
    ssl_certfile: str = Field(
        "", description="CHURN_SSL_CERTFILE: the client's certificate (PEM) for mutual TLS; empty: none."
    )
    ssl_keyfile: str = Field("", description="CHURN_SSL_KEYFILE: the private key (PEM) of CHURN_SSL_CERTFILE.")
    ssl_key_password: SecretStr = Field(
        SecretStr(""), description="CHURN_SSL_KEY_PASSWORD: the password of CHURN_SSL_KEYFILE when it is encrypted."
    )
    broker_quirks: Literal["auto", "tansu", "none"] = Field(
        "auto",
        description="CHURN_BROKER_QUIRKS: which broker's bugs the worker works around. tansu: the embedded broker "
        "(table recovery reads changelogs to their real end, whose offset Tansu reports wrong; "
        "CHURN_FETCH_MAX_WAIT_MS sets the fetch wait, which Tansu holds for half its length). none: "
        "Apache Kafka and brokers like it, with Faust's and aiokafka's own behaviour. auto: tansu when "
        "the broker is one churn started (its cluster id begins with churn-embedded-), else none.",
    )
    topic_partitions: int = Field(4, ge=1, le=1024, description="CHURN_TOPIC_PARTITIONS: partitions of data topics.")
    topic_replication: int = Field(1, ge=1, le=16, description="CHURN_TOPIC_REPLICATION: replication factor.")
    topic_prefix: str = Field("", description="CHURN_TOPIC_PREFIX: prefix for every topic name (isolates runs).")
    training_retention_days: float = Field(
        0.0,
        ge=0,
        le=36_500,
        description="CHURN_TRAINING_RETENTION_DAYS: days churn-features and churn-labels keep their records "
        "(their retention.ms), which retraining reads back; 0 derives it: CHURN_HORIZON_DAYS + the "
        "retraining window (60 days) + a 7-day margin. Applies when churn topics creates them; "
        "churn topics --check reports an existing topic that keeps less.",
    )
    fetch_max_wait_ms: int = Field(
        1500,
        ge=1,
        le=60_000,
        description="CHURN_FETCH_MAX_WAIT_MS: on the embedded broker (CHURN_BROKER_QUIRKS), the longest a fetch may "
        "wait for data (Faust's own value is 1500). That broker holds every fetch for about half of it, "
        "so it is a latency floor there: 10 gives tens of milliseconds from event to score, but the "
        "worker then scores in small batches and spends more CPU per event. Apache Kafka answers as soon "
        "as data arrives; there the worker keeps Faust's own fetch wait.",
    )

    @field_validator("security_protocol", mode="before")
    @classmethod
    def _upper_security_protocol(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _sasl_credentials(self) -> Self:
        if self.security_protocol in SASL_PROTOCOLS:
            missing = [
                var
                for var, value in (
                    ("CHURN_SASL_USERNAME", self.sasl_username),
                    ("CHURN_SASL_PASSWORD", self.sasl_password.get_secret_value()),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    "; ".join(
                        f"{var}: must not be empty when CHURN_SECURITY_PROTOCOL={self.security_protocol}"
                        for var in missing
                    )
                )
        return self

    @model_validator(mode="after")
    def _client_certificate(self) -> Self:
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            given, missing = (
                ("CHURN_SSL_CERTFILE", "CHURN_SSL_KEYFILE")
                if self.ssl_certfile
                else ("CHURN_SSL_KEYFILE", "CHURN_SSL_CERTFILE")
            )
            raise ValueError(f"{missing}: must be set together with {given} (mutual TLS needs both)")
        return self

    def tansu_quirks(self, cluster_id: str | None) -> bool:
        """Whether to work around the embedded broker's bugs, for a broker reporting ``cluster_id``.

        >>> Settings().tansu_quirks("churn-embedded-1a2b"), Settings().tansu_quirks("MkU3OEVBNTcwNTJENDM2Qk")
        (True, False)
        >>> Settings(broker_quirks="tansu").tansu_quirks(None)
        True
        """
        if self.broker_quirks != "auto":
            return self.broker_quirks == "tansu"
        return bool(cluster_id) and cluster_id.startswith(EMBEDDED_CLUSTER_PREFIX)

    def resolved_bootstrap(self) -> str:
        """The Kafka bootstrap servers, defaulting to the embedded broker's loopback port."""
        return self.bootstrap_servers or f"127.0.0.1:{self.broker_port}"

    def topic(self, name: str) -> str:
        """A topic name with the configured prefix."""
        return f"{self.topic_prefix}{name}"


class RegistrySettings(CommonSettings):
    """The MLflow registry: where it is, its credentials, the model the scorers serve and how they poll it.

    Built on :class:`CommonSettings`: an empty tracking URI means sqlite under ``CHURN_DATA_DIR``.
    """

    mlflow_tracking_uri: str = Field(
        "", description="CHURN_MLFLOW_TRACKING_URI: any MLflow tracking URI; empty means sqlite under CHURN_DATA_DIR."
    )
    mlflow_username: str = Field("", description="CHURN_MLFLOW_USERNAME: basic-auth user for a remote MLflow.")
    mlflow_password: SecretStr = Field(SecretStr(""), description="CHURN_MLFLOW_PASSWORD: basic-auth password.")
    mlflow_token: SecretStr = Field(
        SecretStr(""),
        description="CHURN_MLFLOW_TOKEN: a bearer token for a remote MLflow behind a token-checking proxy, "
        "instead of CHURN_MLFLOW_USERNAME and CHURN_MLFLOW_PASSWORD. Never printed.",
    )
    model_name: str = Field("churn-model", min_length=1, description="CHURN_MODEL_NAME: registered model name.")
    model_alias: str = Field("production", min_length=1, description="CHURN_MODEL_ALIAS: alias the scorers serve.")
    model_poll_s: float = Field(30.0, gt=0, description="CHURN_MODEL_POLL_S: alias poll interval (swap fallback).")
    registry_retry_s: float = Field(2.0, gt=0, description="CHURN_REGISTRY_RETRY_S: wait between registry retries.")

    @model_validator(mode="after")
    def _mlflow_credentials(self) -> Self:
        password = bool(self.mlflow_password.get_secret_value())
        token = bool(self.mlflow_token.get_secret_value())
        if password and not self.mlflow_username:
            raise ValueError("CHURN_MLFLOW_USERNAME: must not be empty when CHURN_MLFLOW_PASSWORD is set")
        if self.mlflow_username and not password and not token:
            raise ValueError("CHURN_MLFLOW_PASSWORD: must not be empty when CHURN_MLFLOW_USERNAME is set")
        if token and (password or self.mlflow_username):
            raise ValueError(
                "CHURN_MLFLOW_TOKEN: set either it or CHURN_MLFLOW_USERNAME and CHURN_MLFLOW_PASSWORD, not both"
            )
        return self

    def resolved_tracking_uri(self) -> str:
        """The MLflow tracking URI, defaulting to sqlite under ``data_dir``."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.data_dir.resolve() / 'mlflow.db'}"

    def shown_tracking_uri(self) -> str:
        """The tracking URI for logs and messages: a password in it is shown as ``***``.

        >>> RegistrySettings(mlflow_tracking_uri="https://ci:s3cret@mlflow.example:5000/").shown_tracking_uri()
        'https://ci:***@mlflow.example:5000/'
        """
        return redact_userinfo(self.resolved_tracking_uri())

    def artifact_root(self) -> str:
        """Where a local registry keeps artifacts."""
        return (self.data_dir.resolve() / "mlartifacts").as_uri()


class ServiceSettings(Scope):
    """A long-running process's identity and HTTP endpoint: the worker's and the launcher's."""

    app_id: str = Field("churn-stream", min_length=1, description="CHURN_APP_ID: Faust app id (consumer group).")
    web_port: int = Field(6066, ge=1, le=65535, description="CHURN_WEB_PORT: worker HTTP port (/metrics, lookups).")
    web_host: str = Field("127.0.0.1", description="CHURN_WEB_HOST: worker HTTP bind address.")
    web_advertised_host: str = Field(
        "",
        description="CHURN_WEB_ADVERTISED_HOST: host name or address other workers reach this worker's HTTP port at "
        "(Faust's canonical URL, where /customers lookups are forwarded to the key's owner); empty means "
        "CHURN_WEB_HOST, or this machine's host name when CHURN_WEB_HOST is a wildcard such as 0.0.0.0.",
    )
    http_max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        le=64 * 1_048_576,
        description="CHURN_HTTP_MAX_BODY_BYTES: largest request body the worker's HTTP endpoints read (declared or "
        "chunked); a larger one is refused with 413 before it is read.",
    )

    @field_validator("web_advertised_host")
    @classmethod
    def _reachable_host(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        if value in WILDCARD_HOSTS:
            raise ValueError(f"{value} is a bind-all address that no other worker can connect to")
        if not _HOST.fullmatch(value):
            raise ValueError(f"{value!r} is not a host name or address (no scheme, port or path)")
        return value

    def advertised_web_host(self) -> str:
        """The host other workers reach this one's HTTP port at (Faust's canonical URL).

        ``CHURN_WEB_ADVERTISED_HOST`` when set; else ``CHURN_WEB_HOST``, unless that is a
        wildcard bind address, in which case this machine's host name (a container's own
        host name under compose, which Docker's DNS resolves on the compose network).
        """
        if self.web_advertised_host:
            return self.web_advertised_host
        if self.web_host.strip() in WILDCARD_HOSTS:
            return socket.gethostname()
        return self.web_host


class WorkerSettings(Scope):
    """The stream worker's processing: table store, batching, CPUs, event size, risk bands, silence re-scores."""

    store: str = Field("memory://", description="CHURN_STORE: table store, memory:// or rocksdb://.")
    score_batch_size: int = Field(
        2000,
        ge=1,
        le=100_000,
        description="CHURN_SCORE_BATCH_SIZE: max events per batch "
        "(batches are as large as the backlog allows, up to this).",
    )
    score_batch_ms: int = Field(
        2,
        ge=1,
        le=60_000,
        description="CHURN_SCORE_BATCH_MS: longest the first event of a partial batch waits for more.",
    )
    worker_cpus: str = Field(
        "",
        description="CHURN_WORKER_CPUS: CPUs a worker process runs on, as taskset -c takes them (0 or 0-2,5; "
        "Linux), set before its threads start; empty leaves it to the OS.",
    )
    batches_in_flight: int = Field(
        2,
        ge=1,
        le=64,
        description="CHURN_BATCHES_IN_FLIGHT: processed batches whose outputs and state the broker has not yet "
        "acknowledged, while the next is processed; they finish in order and their events are acked only "
        "then. 1 still processes the next batch during the last one's round trips.",
    )
    max_event_bytes: int = Field(
        16_384, ge=256, le=10_000_000, description="CHURN_MAX_EVENT_BYTES: larger payloads go to the DLQ."
    )
    risk_medium: float = Field(0.3, ge=0, le=1, description="CHURN_RISK_MEDIUM: probability for the medium band.")
    risk_high: float = Field(0.6, ge=0, le=1, description="CHURN_RISK_HIGH: probability for the high band.")
    score_reasons: int = Field(
        3,
        ge=0,
        le=len(FEATURE_NAMES),
        description="CHURN_SCORE_REASONS: inputs named as reasons in each score, largest term of the log-odds"
        " first (0: none).",
    )
    silence_days: float = Field(
        7.0, ge=0, description="CHURN_SILENCE_DAYS: re-score customers quiet this long (event time; 0: off)."
    )
    silence_check_s: float = Field(5.0, gt=0, description="CHURN_SILENCE_CHECK_S: wall seconds between silence scans.")

    @field_validator("store")
    @classmethod
    def _store_scheme(cls, value: str) -> str:
        if not value.startswith(("memory://", "rocksdb://")):
            raise ValueError("must start with memory:// or rocksdb://")
        return value

    @field_validator("worker_cpus")
    @classmethod
    def _cpu_list(cls, value: str) -> str:
        value = value.strip()
        if value:
            parse_cpus(value)
        return value


class DriftSettings(Scope):
    """The drift monitor (``stream.drift.monitor.DriftConfig``): windows, thresholds, alerts, label horizon."""

    drift_window_events: int = Field(2000, ge=50, description="CHURN_DRIFT_WINDOW_EVENTS: vectors per drift window.")
    drift_window_seconds: float = Field(
        0.0, ge=0, description="CHURN_DRIFT_WINDOW_SECONDS: event-time drift windows instead (0: count windows)."
    )
    drift_psi_threshold: float = Field(0.25, gt=0, description="CHURN_DRIFT_PSI_THRESHOLD: PSI that counts as drift.")
    drift_hysteresis: int = Field(2, ge=1, description="CHURN_DRIFT_HYSTERESIS: breaching windows in a row to alert.")
    drift_cooldown_days: float = Field(
        14.0, ge=0, description="CHURN_DRIFT_COOLDOWN_DAYS: event-time days between alerts of one detector."
    )
    drift_warmup_events: int = Field(
        0, ge=0, description="CHURN_DRIFT_WARMUP_EVENTS: events a fresh stream needs before histories compare."
    )
    drift_concept_window: int = Field(
        5000,
        ge=100,
        description="CHURN_DRIFT_CONCEPT_WINDOW: matured score-label pairs the live performance is measured over.",
    )
    drift_concept_check_pairs: int = Field(
        1000, ge=1, description="CHURN_DRIFT_CONCEPT_CHECK_PAIRS: matured pairs between two concept checks."
    )
    drift_concept_loss_rise: float = Field(
        0.3,
        gt=0,
        description="CHURN_DRIFT_CONCEPT_LOSS_RISE: log loss this far above what the model's scores "
        "expect (0.3: 30 %) is concept drift.",
    )
    drift_harm_shift: float = Field(
        0.05,
        ge=0,
        description="CHURN_DRIFT_HARM_SHIFT: importance-weighted PSI from which a covariate shift "
        "that also moved the scores counts as harm.",
    )
    drift_harm_unseen: float = Field(
        0.05,
        gt=0,
        le=1,
        description="CHURN_DRIFT_HARM_UNSEEN: share of a window's values of a categorical "
        "feature unseen in training from which its shift counts as harm.",
    )
    horizon_days: float = Field(30.0, gt=0, description="CHURN_HORIZON_DAYS: the churn label horizon.")


class TrainingSettings(Scope):
    """Training and retraining runs (``churn train``, ``churn retrain``): where MLflow files them."""

    mlflow_experiment: str = Field("churn-stream", description="CHURN_MLFLOW_EXPERIMENT: experiment for training runs.")


class LauncherSettings(Scope):
    """The retrain launcher (``churn launcher``): where its retraining jobs run, and where their candidates go."""

    launcher_backend: Literal["subprocess", "kubernetes"] = Field(
        "subprocess",
        description="CHURN_LAUNCHER_BACKEND: where `churn launcher` runs retraining jobs: subprocess (a local "
        "`churn retrain` process) or kubernetes (a Job in the launcher's namespace); --backend overrides it.",
    )
    launcher_stage: Literal["promote", "shadow"] = Field(
        "promote",
        description="CHURN_LAUNCHER_STAGE: what a retraining job does with a candidate that passes its gate: "
        "promote (to @production at once) or shadow (to @CHURN_SHADOW_ALIAS, scored in shadow; the launcher then "
        "promotes or drops it on matured labels by the rule of CHURN_SHADOW_MIN_LABELS, CHURN_SHADOW_MARGIN and "
        "CHURN_SHADOW_DEADLINE_S); --stage overrides it.",
    )
    launcher_judge_s: float = Field(
        60.0,
        gt=0,
        description="CHURN_LAUNCHER_JUDGE_S: with CHURN_LAUNCHER_STAGE=shadow, seconds between two readings of "
        "the shadow evidence by the launcher.",
    )
    launcher_job_sasl_username: str = Field(
        "",
        description="CHURN_LAUNCHER_JOB_SASL_USERNAME: with the subprocess backend, the Kafka user its retraining "
        "jobs connect as (the retrain role of deploy/kafka/acls.yaml); empty: the launcher's own "
        "CHURN_SASL_USERNAME. A Kubernetes Job takes its credentials from its own Secret.",
    )
    launcher_job_sasl_password: SecretStr = Field(
        SecretStr(""),
        description="CHURN_LAUNCHER_JOB_SASL_PASSWORD: the password of CHURN_LAUNCHER_JOB_SASL_USERNAME.",
    )

    @model_validator(mode="after")
    def _job_credentials(self) -> Self:
        if bool(self.launcher_job_sasl_username) != bool(self.launcher_job_sasl_password.get_secret_value()):
            raise ValueError(
                "CHURN_LAUNCHER_JOB_SASL_USERNAME and CHURN_LAUNCHER_JOB_SASL_PASSWORD: set both or neither"
            )
        return self


class ShadowSettings(Scope):
    """Shadow scoring of a challenger: the alias scored beside production, and when it is promoted or dropped.

    A worker scores the version under ``CHURN_SHADOW_ALIAS`` (when one has it) on the same batches as
    production and writes those scores to ``churn-scores-shadow``; ``churn models promote --from-shadow``
    and the launcher judge the two on the same matured labels (``training.shadow``).
    """

    shadow_alias: str = Field(
        "challenger",
        description="CHURN_SHADOW_ALIAS: registry alias a worker scores in shadow beside production; empty turns "
        "shadow scoring off. With no version under it a worker does no shadow work.",
    )
    shadow_min_labels: int = Field(
        1000,
        ge=1,
        description="CHURN_SHADOW_MIN_LABELS: matured labels both aliases must have been measured on before the "
        "challenger can be promoted.",
    )
    shadow_margin: float = Field(
        0.01,
        ge=0,
        le=1,
        description="CHURN_SHADOW_MARGIN: ROC AUC by which the challenger must beat production on those labels "
        "(its log loss no worse) to be promoted.",
    )
    shadow_deadline_s: float = Field(
        7 * 86_400.0,
        gt=0,
        description="CHURN_SHADOW_DEADLINE_S: wall seconds a challenger may stay in shadow; one that has not "
        "won by then is dropped.",
    )
    shadow_metrics_urls: str = Field(
        "",
        description="CHURN_SHADOW_METRICS_URLS: the workers' /metrics URLs (comma-separated) the shadow evidence "
        "is read from; empty means http://127.0.0.1:CHURN_WEB_PORT/metrics.",
    )

    @field_validator("shadow_alias")
    @classmethod
    def _shadow_alias_not_production(cls, value: str) -> str:
        value = value.strip()
        if value in ("production", "previous"):
            raise ValueError(f"{value} is the alias of a serving model, not a shadow one")
        return value

    @field_validator("shadow_metrics_urls")
    @classmethod
    def _metrics_urls(cls, value: str) -> str:
        for url in (u.strip() for u in value.split(",") if u.strip()):
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return value.strip()

    def metrics_urls(self, web_port: int) -> list[str]:
        """The /metrics URLs of the workers whose shadow measurements are evidence."""
        urls = [u.strip() for u in self.shadow_metrics_urls.split(",") if u.strip()]
        return urls or [f"http://127.0.0.1:{web_port}/metrics"]


class Settings(
    # Last scope first: pydantic collects fields from the last base up, so they run in the order of
    # SCOPES (common, kafka, registry, ...). RegistrySettings builds on CommonSettings, which stays after it.
    ShadowSettings,
    LauncherSettings,
    TrainingSettings,
    DriftSettings,
    WorkerSettings,
    ServiceSettings,
    RegistrySettings,
    KafkaSettings,
    CommonSettings,
):
    """Runtime settings: every scope in one object; each field is the environment variable ``CHURN_<NAME>``.

    Fields, validators and helpers all come from the scope classes (multiple inheritance), so
    ``settings.<field>`` reaches every field of every scope; :data:`SCOPES` names the scopes.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)


#: Every scope by name, in the order the docs and ``--help`` list them.
SCOPES: dict[str, type[Scope]] = {
    "common": CommonSettings,
    "kafka": KafkaSettings,
    "registry": RegistrySettings,
    "service": ServiceSettings,
    "worker": WorkerSettings,
    "drift": DriftSettings,
    "training": TrainingSettings,
    "launcher": LauncherSettings,
    "shadow": ShadowSettings,
}


def env_var(field: str) -> str:
    """The environment variable of a field.

    >>> env_var("bootstrap_servers")
    'CHURN_BOOTSTRAP_SERVERS'
    """
    return f"{ENV_PREFIX}{field.upper()}"


def own_fields(scope: type[Scope]) -> list[str]:
    """The fields ``scope`` declares itself, not those it inherits from another scope.

    >>> own_fields(TrainingSettings)
    ['mlflow_experiment']
    >>> "data_dir" in own_fields(RegistrySettings), "data_dir" in RegistrySettings.model_fields
    (False, True)
    """
    inherited = {name for base in scope.__mro__[1:] if issubclass(base, Scope) for name in base.model_fields}
    return [name for name in scope.model_fields if name not in inherited]


def scope_variables(*scopes: type[Scope]) -> dict[str, list[str]]:
    """The variables the given scopes read, by scope name: each scope's own fields, plus those of
    the scopes it builds on (``RegistrySettings`` reads ``CHURN_DATA_DIR`` too), each variable once.

    >>> scope_variables(RegistrySettings)["common"]
    ['CHURN_DATA_DIR', 'CHURN_LOG_LEVEL']
    """
    wanted = {base for scope in scopes for base in scope.__mro__ if base in SCOPES.values()}
    return {name: [env_var(f) for f in own_fields(scope)] for name, scope in SCOPES.items() if scope in wanted}


S = TypeVar("S", bound=Scope)


def load_scope(scope: type[S], **overrides: object) -> S:
    """Build one scope (or :class:`Settings`); a bad value raises ``ConfigError`` naming the variable."""
    try:
        return scope(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            if not err["loc"]:  # a check across fields names its variables itself
                problems.append(err["msg"].removeprefix("Value error, "))
                continue
            name = ".".join(str(p) for p in err["loc"])
            problems.append(f"{env_var(name)}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError("invalid setting " + "; ".join(problems)) from exc


def load_settings(**overrides: object) -> Settings:
    """Build :class:`Settings`; a bad value raises ``ConfigError`` naming the variable."""
    return load_scope(Settings, **overrides)
