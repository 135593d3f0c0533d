"""Exceptions of churn-stream.

::

    ChurnError                      root: every error the product raises on purpose
    ├── ConfigError                 a setting, CLI argument or config file is wrong
    ├── BrokerError                 the Kafka broker cannot be reached or refused
    ├── RegistryError               the MLflow registry cannot be reached or refused
    │   ├── RegistryAuthError       it refused the credentials (401) or the user's permission (403)
    │   └── ModelLoadError          a model version cannot be loaded or is incompatible
    │       └── ArtifactRefused     its artifact's checksum is missing or does not match: never unpickled
    ├── GateRejected                a candidate model failed the validation gate
    └── RuntimeMismatch             the installed Faust, aiokafka, mode or river is not the one the worker is built for

The CLI turns a ``ChurnError`` into a one-line message and a non-zero exit;
anything else is a bug and keeps its traceback.
"""

#: Values never shown in an error's message (passwords, tokens): :func:`register_secret`.
_SECRETS: set[str] = set()
#: Shorter values are not redacted: replacing every "pw" in a message would garble it.
MIN_SECRET_CHARS = 3


def register_secret(value: str) -> None:
    """Never show ``value`` in a :class:`ChurnError`'s message: it reads ``***`` there instead.

    The settings register every password and token they load, so a message that quotes a
    library's error (which may quote a URL with credentials in it) cannot leak one.
    """
    if len(value) >= MIN_SECRET_CHARS:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret shown as ``***``.

    >>> register_secret("s3cret-pw"); redact("http://ci:s3cret-pw@mlflow:5000 refused")
    'http://ci:***@mlflow:5000 refused'
    """
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class ChurnError(Exception):
    """Root of every error churn-stream raises on purpose. Its message never shows a registered secret."""

    def __str__(self) -> str:
        return redact(super().__str__())


class ConfigError(ChurnError):
    """A setting, argument or configuration file is invalid; the message says what to fix."""


class BrokerError(ChurnError):
    """The Kafka broker cannot be reached or refused a request."""


class RegistryError(ChurnError):
    """The MLflow tracking server or model registry failed."""


class RegistryAuthError(RegistryError):
    """The registry refused this process's credentials (HTTP 401) or its user's permission (HTTP 403).

    A configuration error, not an outage: retrying cannot help, so a worker stops instead of waiting.
    The message names the settings to fix and never holds a password or token.
    """


class ModelLoadError(RegistryError):
    """A model version could not be loaded, or its signature does not match."""


class ArtifactRefused(ModelLoadError):
    """A version's artifact was refused before it was unpickled: the registry records no checksum for it,
    its bytes do not match the recorded one, or a ``ModelEvent`` announced another. ``reason`` is the
    metric label (``checksum_missing``, ``checksum_mismatch``, ``event_checksum_mismatch``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class GateRejected(ChurnError):
    """A candidate model failed the validation gate."""


class RuntimeMismatch(ChurnError):
    """An installed library is outside the tested range, or lacks a private name the worker relies on."""
