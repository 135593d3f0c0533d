"""Kafka client configuration built from :class:`~stream.settings.Settings`.

One place maps the ``CHURN_`` Kafka settings onto both client libraries:
:func:`confluent_config` for confluent-kafka producers, consumers and admin clients,
:func:`faust_broker_kwargs` for ``faust.App``. Secrets stay ``SecretStr`` in the
settings and are revealed only in the dictionaries built here.

``CHURN_BOOTSTRAP_SERVERS`` empty means "the embedded broker": the caller starts it and
passes its address as ``bootstrap``; an explicit ``bootstrap`` always wins.

librdkafka writes its own log lines to stderr unless a client has a ``logger``: a
client with no broker to talk to printed several lines a second. Every confluent-kafka
config built here has :data:`CLIENT_LOG`, which hands them to this package's logging
at DEBUG; commands that need to know why a connection fails ask the broker
(:func:`stream.topics.connect_admin`) and say so in one line.

>>> s = Settings(bootstrap_servers="k1:9092, k2:9092")
>>> {k: v for k, v in confluent_config(s).items() if k != "logger"}
{'bootstrap.servers': 'k1:9092,k2:9092', 'security.protocol': 'PLAINTEXT'}
>>> faust_broker_kwargs(s)
{'broker': 'kafka://k1:9092;k2:9092'}
"""

from __future__ import annotations

import logging
import re
import ssl

from stream.errors import ConfigError
from stream.settings import SASL_PROTOCOLS as _SASL_PROTOCOLS
from stream.settings import Settings

_TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})


class ClientLog:
    """A librdkafka ``logger`` that keeps its lines in ``logging`` (DEBUG), off the terminal.

    Lines whose facility is ``FAIL`` (a connection that failed) are also kept, the last
    ``keep`` of them, for an error message to quote.
    """

    def __init__(self, name: str = "stream.librdkafka", keep: int = 20) -> None:
        self._log = logging.getLogger(name)
        self._keep = keep
        self.failures: list[str] = []

    def log(self, level: int, fmt: str, *args: object) -> None:
        self._log.debug("librdkafka: " + fmt, *args)
        if args and args[0] == "FAIL":
            self.failures.append(str(args[-1]))
            del self.failures[: -self._keep]


#: The logger of every client config built here.
CLIENT_LOG = ClientLog()


def bootstrap_hosts(settings: Settings, bootstrap: str | None = None) -> list[str]:
    """The ``host:port`` list to connect to: ``bootstrap`` if given, else the setting.

    Accepts comma- or semicolon-separated lists, with or without a ``kafka://`` scheme.
    Raises :class:`ConfigError` when neither names a broker.
    """
    raw = bootstrap if bootstrap is not None else settings.bootstrap_servers
    hosts = [re.sub(r"^[a-z]+://", "", part.strip()) for part in re.split(r"[,;]", raw)]
    hosts = [h for h in hosts if h]
    if not hosts:
        raise ConfigError(
            "no Kafka bootstrap address: CHURN_BOOTSTRAP_SERVERS is empty and no embedded broker address was passed"
        )
    for host in hosts:
        if not re.fullmatch(r"[^\s:/]+:\d{1,5}", host):
            raise ConfigError(f"CHURN_BOOTSTRAP_SERVERS: {host!r} is not host:port")
    return hosts


def _check_sasl(settings: Settings) -> None:
    """Settings validation refuses SASL without credentials; this also covers unvalidated copies."""
    if settings.security_protocol not in _SASL_PROTOCOLS:
        return
    for var, value in (
        ("CHURN_SASL_USERNAME", settings.sasl_username),
        ("CHURN_SASL_PASSWORD", settings.sasl_password.get_secret_value()),
    ):
        if not value:
            raise ConfigError(f"{var} is empty but CHURN_SECURITY_PROTOCOL={settings.security_protocol} needs it")


def confluent_config(settings: Settings, bootstrap: str | None = None) -> dict:
    """Connection settings for any confluent-kafka client (librdkafka property names), with :data:`CLIENT_LOG`.

    ``ssl.ca.location`` is set only when the protocol uses TLS and ``CHURN_SSL_CAFILE``
    is set, the client certificate likewise with ``CHURN_SSL_CERTFILE``; ``sasl.*`` only when
    the protocol uses SASL.
    """
    _check_sasl(settings)
    config: dict = {
        "bootstrap.servers": ",".join(bootstrap_hosts(settings, bootstrap)),
        "security.protocol": settings.security_protocol,
        "logger": CLIENT_LOG,
    }
    if settings.security_protocol in _SASL_PROTOCOLS:
        config["sasl.mechanism"] = settings.sasl_mechanism
        config["sasl.username"] = settings.sasl_username
        config["sasl.password"] = settings.sasl_password.get_secret_value()
    if settings.security_protocol in _TLS_PROTOCOLS and settings.ssl_cafile:
        config["ssl.ca.location"] = settings.ssl_cafile
    if settings.security_protocol in _TLS_PROTOCOLS and settings.ssl_certfile:
        config["ssl.certificate.location"] = settings.ssl_certfile
        config["ssl.key.location"] = settings.ssl_keyfile
        if settings.ssl_key_password.get_secret_value():
            config["ssl.key.password"] = settings.ssl_key_password.get_secret_value()
    return config


def faust_broker_url(settings: Settings, bootstrap: str | None = None) -> str:
    """Faust's broker URL, ``kafka://host1:port;host2:port``."""
    return "kafka://" + ";".join(bootstrap_hosts(settings, bootstrap))


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context verifying the server, with ``CHURN_SSL_CAFILE`` and the client certificate when set."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ssl_cafile or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"CHURN_SSL_CAFILE: cannot load {settings.ssl_cafile!r}: {exc}") from exc
    if settings.ssl_certfile:
        password = settings.ssl_key_password.get_secret_value() or None
        try:
            context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile or None, password)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"CHURN_SSL_CERTFILE / CHURN_SSL_KEYFILE: cannot load {settings.ssl_certfile!r}: {exc}"
            ) from exc
    return context


def faust_broker_kwargs(settings: Settings, bootstrap: str | None = None) -> dict[str, object]:
    """Keyword arguments for ``faust.App``: ``broker`` and, with SASL or TLS, ``broker_credentials``."""
    import faust  # deferred: only the worker needs Faust

    _check_sasl(settings)
    kwargs: dict[str, object] = {"broker": faust_broker_url(settings, bootstrap)}
    protocol = settings.security_protocol
    context = ssl_context(settings) if protocol in _TLS_PROTOCOLS else None
    if protocol in _SASL_PROTOCOLS:
        kwargs["broker_credentials"] = faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value(),
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    elif protocol == "SSL":
        kwargs["broker_credentials"] = faust.SSLCredentials(context)
    return kwargs
