"""The model registry as a scorer reads it: connect, find the version under an alias, download, verify and load it.

Aliases: ``production`` is what scorers serve; ``previous`` keeps the version it
replaced. Every version carries the checksum of its artifact (tag ``checksum``, set at
registration). Nothing is unpickled before its downloaded bytes match that tag
(:func:`verified_model`): a version without one, with other bytes, or announced with
another checksum is refused (:class:`~stream.errors.ArtifactRefused`). Writing (logging,
promoting, rejecting) is :mod:`training.registry`'s.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from stream.errors import ArtifactRefused, ChurnError, ModelLoadError, RegistryAuthError, RegistryError
from stream.settings import Settings, split_userinfo

log = logging.getLogger(__name__)

PRODUCTION = "production"
PREVIOUS = "previous"
CHECKSUM_TAG = "checksum"
#: Where each version logs its global feature importances (training.importance).
IMPORTANCE_ARTIFACT = "importance/importance.json"


@dataclass(frozen=True)
class VersionInfo:
    version: str
    aliases: tuple[str, ...]
    run_id: str
    tags: dict[str, str]
    metrics: dict[str, float]


def check_reachable(settings: Settings, timeout_s: float = 10.0) -> None:
    """Raise :class:`RegistryError` in one line when a remote tracking server does not answer.

    MLflow's client retries an unreachable server with backoff for minutes before it
    fails; a command asks the server's ``/health`` once, with ``timeout_s``, first. Local
    URIs (sqlite, files) need no server.
    """
    # /health needs no login, and urllib cannot open a URL with credentials in it.
    bare = split_userinfo(settings.resolved_tracking_uri())[0]
    if not bare.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    uri = settings.shown_tracking_uri()
    url = bare.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - the configured server
            resp.read(64)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return  # it answers; the client's own calls report the credentials
        raise RegistryError(
            f"the MLflow registry at {uri} answered /health with HTTP {exc.code} (CHURN_MLFLOW_TRACKING_URI)"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistryError(
            f"no answer from the MLflow registry at {uri} within {timeout_s:.0f}s (CHURN_MLFLOW_TRACKING_URI): {reason}"
        ) from exc


#: MLflow's own client variables for credentials: set from the ``CHURN_MLFLOW_*`` settings
#: (:func:`use_credentials`) and from nowhere else.
MLFLOW_CREDENTIAL_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
#: HTTP statuses that mean the registry refused who we are or what we may do: a configuration error.
REFUSED = (401, 403)


def use_credentials(settings: Settings) -> None:
    """Hand the registry credentials to MLflow's client: ``CHURN_MLFLOW_USERNAME`` and
    ``CHURN_MLFLOW_PASSWORD`` (HTTP basic auth) or ``CHURN_MLFLOW_TOKEN`` (a bearer token).

    The one place that does: MLflow reads them from its own environment variables on every
    request (the fluent API and artifact downloads too), and a child process inherits them.
    Any such variable already set is replaced, so only the settings decide.
    """
    for name in MLFLOW_CREDENTIAL_VARIABLES:
        os.environ.pop(name, None)
    if settings.mlflow_username:
        os.environ["MLFLOW_TRACKING_USERNAME"] = settings.mlflow_username
        os.environ["MLFLOW_TRACKING_PASSWORD"] = settings.mlflow_password.get_secret_value()
    elif settings.mlflow_token.get_secret_value():
        os.environ["MLFLOW_TRACKING_TOKEN"] = settings.mlflow_token.get_secret_value()


def _status(exc: BaseException) -> int | None:
    """The HTTP status behind an MLflow, requests or urllib error (or one it was raised from), if any."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        get_status = getattr(current, "get_http_status_code", None)  # MlflowException
        status = get_status() if callable(get_status) else None
        if status is None:
            response = getattr(current, "response", None)  # requests.HTTPError
            status = getattr(response, "status_code", None) or getattr(current, "code", None)  # urllib
        if isinstance(status, int) and status in REFUSED:
            return status
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def refusal(exc: BaseException, settings: Settings | None, what: str = "") -> RegistryAuthError | None:
    """A one-line :class:`RegistryAuthError` naming the settings to fix when ``exc`` is the registry's
    401 or 403, else None. The message holds the user's name, never a password or token (nor the
    server's answer, which could echo a request)."""
    status = _status(exc)
    if status is None:
        return None
    where = f"the MLflow registry at {settings.shown_tracking_uri()}" if settings else "the MLflow registry"
    user = settings.mlflow_username if settings else ""
    token = bool(settings and settings.mlflow_token.get_secret_value())
    if status == 403:
        who = f"user {user!r}" if user else ("the CHURN_MLFLOW_TOKEN's user" if token else "an anonymous client")
        return RegistryAuthError(
            f"{where} refused {who} permission{f' to {what}' if what else ''} (HTTP 403): grant it on the "
            "registry or use another CHURN_MLFLOW_USERNAME"
        )
    if user:
        return RegistryAuthError(
            f"{where} refused the login of user {user!r} (HTTP 401): check CHURN_MLFLOW_USERNAME and "
            "CHURN_MLFLOW_PASSWORD"
        )
    if token:
        return RegistryAuthError(f"{where} refused CHURN_MLFLOW_TOKEN (HTTP 401)")
    return RegistryAuthError(
        f"{where} needs credentials (HTTP 401): set CHURN_MLFLOW_USERNAME and CHURN_MLFLOW_PASSWORD "
        "(or CHURN_MLFLOW_TOKEN)"
    )


class GuardedClient:
    """An ``MlflowClient`` whose refusals (HTTP 401 and 403) raise :class:`RegistryAuthError`
    naming the settings to fix; every other error and every result is the client's own."""

    def __init__(self, client, settings: Settings) -> None:
        self._client = client
        self.settings = settings

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                refused = refusal(exc, self.settings, name.replace("_", " "))
                if refused is None:
                    raise
                raise refused from None  # the server's answer stays out of tracebacks and logs

        return call


def _refused(exc: BaseException, client, what: str = "") -> RegistryAuthError | None:
    """:func:`refusal` with the settings of a :class:`GuardedClient` (none for another client)."""
    return refusal(exc, getattr(client, "settings", None), what)


def connect(settings: Settings, fail_fast: bool = False) -> GuardedClient:
    """An ``MlflowClient`` for the configured tracking URI (fluent API pointed there too), with the
    configured credentials (:func:`use_credentials`), as a :class:`GuardedClient`.

    A remote server that does not answer raises :class:`RegistryError` at once
    (:func:`check_reachable`); one that refuses the credentials :class:`RegistryAuthError`, before
    any work is done. ``fail_fast`` also turns off MLflow's own HTTP retries (minutes of backoff)
    for callers that retry on their own schedule, like the worker's model holder.
    """
    check_reachable(settings)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if fail_fast:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    use_credentials(settings)
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = settings.resolved_tracking_uri()
    if uri.startswith("sqlite:///"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = GuardedClient(MlflowClient(tracking_uri=uri, registry_uri=uri), settings)
    if uri.startswith(("http://", "https://")):
        # Who we are is checked once, now: a refusal is a configuration error, not something to retry.
        client.search_registered_models(max_results=1)
    return client


def check_access(settings: Settings) -> None:
    """Raise :class:`RegistryAuthError` when the registry refuses this process's credentials; a
    registry that does not answer passes (a worker waits for it, :attr:`Settings.registry_retry_s`).
    A local registry (a file, sqlite) has no login: nothing to check, and nothing is opened here."""
    if not settings.resolved_tracking_uri().startswith(("http://", "https://")):
        return
    try:
        connect(settings, fail_fast=True)
    except RegistryAuthError:
        raise
    except ChurnError as exc:
        log.info("registry credentials not checked at start: %s", exc)


def artifact_checksum(path: str | Path) -> str:
    """SHA-256 over a model directory's files (relative paths and contents): every file a loader can
    read from it (``MLmodel``, the pickle, environment files, examples), so adding, removing or
    changing any of them changes the checksum."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(file.relative_to(root).as_posix().encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def downloaded_model(client, name: str, version: str) -> Iterator[Path]:
    """A version's artifacts in a temporary folder that is removed on exit."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix=f"churn-model-{version}-") as target:
        try:
            path = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=target))
        except Exception as exc:
            raise _refused(exc, client, f"download {name} version {version}") or ModelLoadError(
                f"cannot download {name} version {version}: {exc}"
            ) from exc
        yield path


def recorded_checksum(name: str, version: str, tags: Mapping[str, str] | None, announced: str | None = None) -> str:
    """The checksum the registry records for a version (tag ``checksum``).

    Raises :class:`ArtifactRefused` when it records none, or when ``announced`` (a ``ModelEvent``'s
    checksum) is given and differs from it: the registry's tag is the one trusted.
    """
    recorded = (tags or {}).get(CHECKSUM_TAG, "")
    if not recorded:
        raise ArtifactRefused("checksum_missing", f"{name} version {version} has no recorded checksum")
    if announced and announced != recorded:
        raise ArtifactRefused(
            "event_checksum_mismatch",
            f"{name} version {version}: the event's checksum {announced[:12]} is not the recorded {recorded[:12]}",
        )
    return recorded


@contextlib.contextmanager
def verified_model(
    client, name: str, version: str, announced: str | None = None, tags: Mapping[str, str] | None = None
) -> Iterator[tuple[Path, str]]:
    """A version's downloaded artifacts and their checksum, only once the bytes match the registry's tag.

    ``tags`` are the version's registry tags (fetched when not given); ``announced`` a checksum a
    ``ModelEvent`` carried. Raises :class:`ArtifactRefused` before anything is unpickled when the tag
    is missing, the event disagrees with it, or the downloaded bytes differ from it. What is loaded
    from the yielded folder is what was hashed: it is the download's own temporary copy.
    """
    if tags is None:
        tags = client.get_model_version(name, version).tags
    recorded = recorded_checksum(name, version, tags, announced)
    with downloaded_model(client, name, version) as path:
        actual = artifact_checksum(path)
        if actual != recorded:
            raise ArtifactRefused(
                "checksum_mismatch",
                f"{name} version {version}: its artifact's checksum {actual[:12]} is not the recorded {recorded[:12]}",
            )
        yield path, actual


def load_sklearn(path: str | Path):
    """Load the sklearn pipeline from a downloaded model directory."""
    import mlflow.sklearn

    try:
        return mlflow.sklearn.load_model(str(path))
    except Exception as exc:
        raise ModelLoadError(f"cannot load model from {path}: {exc}") from exc


def load_version(client, name: str, version: str):
    """The sklearn pipeline of a registered version, verified against its recorded checksum first
    (:func:`verified_model`); its download is removed afterwards."""
    with verified_model(client, name, version) as (path, _):
        return load_sklearn(path)


def input_names(client, name: str, version: str) -> list[str]:
    """The input column names of a registered version's signature."""
    from mlflow.models import get_model_info

    try:
        info = get_model_info(f"models:/{name}/{version}")
    except Exception as exc:
        refused = _refused(exc, client, f"read {name} version {version}")
        if refused is None:
            raise
        raise refused from None
    if info.signature is None or info.signature.inputs is None:
        return []
    return list(info.signature.inputs.input_names())


def version_for_alias(client, name: str, alias: str) -> str | None:
    """The version under ``alias``, or None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if _absent(exc):
            return None
        raise RegistryError(f"registry lookup of {name}@{alias} failed: {exc}") from exc
    except RegistryAuthError:
        # MLflow's authentication answers any lookup in a model that does not exist with 403, not 404 (it does
        # not tell whether a model exists); its search lists the models this user may read.
        if not client.search_registered_models(filter_string=f"name = '{name}'", max_results=1):
            return None  # not there yet, or hidden from this user: both wait for a version to be readable
        raise


def _absent(exc: BaseException) -> bool:
    return getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def list_versions(client, name: str) -> list[VersionInfo]:
    """Every version of ``name``, newest first, with aliases and key metrics."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{name}'")
        aliases: dict[str, list[str]] = {}
        if versions:
            for alias, version in (client.get_registered_model(name).aliases or {}).items():
                aliases.setdefault(str(version), []).append(alias)
    except MlflowException as exc:
        raise RegistryError(f"cannot list versions of {name}: {exc}") from exc
    out = []
    for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
        metrics = client.get_run(v.run_id).data.metrics if v.run_id else {}
        out.append(
            VersionInfo(
                version=str(v.version),
                aliases=tuple(sorted(aliases.get(str(v.version), []))),
                run_id=v.run_id or "",
                tags=dict(v.tags or {}),
                metrics=dict(metrics),
            )
        )
    return out
