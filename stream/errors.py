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


class ChurnError(Exception):
    """Root of every error churn-stream raises on purpose."""


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
