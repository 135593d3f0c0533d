"""The serving model: loaded from the registry, verified, swapped atomically.

The holder resolves ``models:/<name>@<alias>``; loading (signature check, download,
checksum check against the registry's tag, and only then unpickling) is blocking
work and runs in an executor, never on the event loop. A version without a recorded
checksum, or whose bytes differ from it, is never unpickled (see
:func:`stream.serving.registry.verified_model`). A version that fails any check never
replaces the serving model, and the registry being down never stops scoring with the
model already loaded. Readers take ``holder.current`` once per batch: one attribute read, so a
swap is atomic for them and every score names the version that produced it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from schemas.features import CATEGORICAL_FEATURES, FEATURE_NAMES, NUMERIC_FEATURES
from stream.errors import ArtifactRefused, ChurnError, ModelLoadError, RegistryAuthError
from stream.metrics import StreamMetrics
from stream.serving.linear_path import LinearPath, compile_pipeline, verified
from stream.settings import Settings

log = logging.getLogger(__name__)


def columns_to_frame(columns: dict[str, list]) -> pd.DataFrame:
    """The model-input frame, in contract order and dtypes."""
    frame = pd.DataFrame({name: pd.Series(columns[name], dtype="float64") for name in NUMERIC_FEATURES})
    for name in CATEGORICAL_FEATURES:
        frame[name] = pd.Series(columns[name], dtype="object")
    return frame


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    pipeline: object
    checksum: str = ""
    reference: dict | None = None
    run_id: str = ""
    # The holdout metrics logged with the version (roc_auc, log_loss, brier, base_rate...): the
    # baseline its live performance is judged against.
    metrics: dict = field(default_factory=dict, compare=False)
    # Each input's share of the ranking (``training.importance``): how much a shift in it can hurt.
    importance: dict = field(default_factory=dict, compare=False)
    # When the version was created in the registry, in seconds since the epoch (None: not known).
    registered_at: float | None = field(default=None, compare=False)
    fast: LinearPath | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fast = compile_pipeline(self.pipeline)
        if fast is not None and verified(self.pipeline, fast, columns_to_frame) is None:
            log.warning(
                "%s version %s: the NumPy path disagrees with predict_proba; scoring with predict_proba",
                self.name,
                self.version,
            )
            fast = None
        object.__setattr__(self, "fast", fast)

    def predict(self, frame: pd.DataFrame):
        """Churn probabilities for a frame of model inputs."""
        return self.pipeline.predict_proba(frame)[:, 1]

    def predict_columns(self, columns: dict[str, list]):
        """Churn probabilities for a batch given as columns (``FEATURE_NAMES`` to lists): the verified
        NumPy path when the pipeline has one (see ``stream.serving.linear_path``), else ``predict_proba``."""
        if self.fast is not None:
            return self.fast(columns)
        return self.predict(columns_to_frame(columns))

    def explain_columns(
        self, columns: dict[str, list], top: int, digits: int | None = None
    ) -> tuple[Any, list[list[dict[str, Any]]] | None]:
        """The probabilities and each row's ``top`` reasons (its largest terms of the log-odds), as
        ``{"feature", "value", "contribution"}`` dicts, contributions rounded to ``digits`` when given.

        Reasons are exact, and given only, for a pipeline with the verified NumPy path; for any
        other pipeline (or ``top`` 0) they are ``None`` and the probabilities come from
        :meth:`predict_columns`."""
        if self.fast is None or top <= 0:
            return self.predict_columns(columns), None
        return self.fast.explain(columns, top, digits)


def registered_at(model_version) -> float | None:
    """A registry version's creation time in seconds since the epoch (MLflow keeps milliseconds); None without one."""
    created = getattr(model_version, "creation_timestamp", None)
    return None if created is None else created / 1000.0


class RegistrySource:
    """Blocking registry access for the holder (MLflow; swappable in tests); ``alias`` defaults to
    ``CHURN_MODEL_ALIAS``."""

    def __init__(self, settings: Settings, alias: str | None = None) -> None:
        self.settings = settings
        self.alias = alias or settings.model_alias
        self._client = None

    def client(self):
        if self._client is None:
            from stream.serving import registry

            self._client = registry.connect(self.settings, fail_fast=True)
        return self._client

    def version_for_alias(self) -> str | None:
        from stream.serving import registry

        return registry.version_for_alias(self.client(), self.settings.model_name, self.alias)

    def load(self, version: str, expected_checksum: str | None = None) -> LoadedModel:
        """``version`` verified and loaded; ``expected_checksum`` is the one a ``ModelEvent`` announced (it
        must equal the registry's tag, which the downloaded bytes must match). Raises ``ModelLoadError``
        (``ArtifactRefused`` for a checksum refusal) before anything is unpickled."""
        from stream.serving import registry

        name = self.settings.model_name
        client = self.client()
        version = str(version)
        mv = client.get_model_version(name, version)
        inputs = registry.input_names(client, name, version)
        if inputs != list(FEATURE_NAMES):
            raise ModelLoadError(f"{name} version {version} signature {inputs} does not match FeatureVector")
        with registry.verified_model(client, name, version, expected_checksum, mv.tags) as (path, checksum):
            pipeline = registry.load_sklearn(path)
        reference = self._run_json(mv.run_id, "reference/reference.json", "reference distributions", version)
        # Versions registered before importances were logged have none: their drift alerts judge harm
        # without them.
        from stream.serving.registry import IMPORTANCE_ARTIFACT

        importance = self._run_json(mv.run_id, IMPORTANCE_ARTIFACT, "feature importances", version)
        metrics: dict = {}
        if mv.run_id:
            try:
                metrics = dict(client.get_run(mv.run_id).data.metrics)
            except Exception as exc:  # a model without holdout metrics still serves
                log.warning("no holdout metrics for %s version %s: %s", name, version, exc)
        return LoadedModel(
            name,
            version,
            pipeline,
            checksum,
            reference,
            mv.run_id or "",
            metrics,
            importance or {},
            registered_at=registered_at(mv),
        )

    def _run_json(self, run_id: str | None, artifact: str, what: str, version: str) -> dict | None:
        """A JSON artifact of the version's run, or None (logged) when it has none: the model still serves."""
        if not run_id:
            return None
        try:
            import mlflow

            return json.loads(
                Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact)).read_text()
            )
        except Exception as exc:  # noqa: BLE001 - any failure to read it leaves the model serving without it
            log.warning("no %s for %s version %s: %s", what, self.settings.model_name, version, exc)
            return None


class ModelHolder:
    """Holds the serving model and replaces it only with a verified one."""

    #: A registry refusing the credentials while nothing is served raises (the worker stops) rather than
    #: being retried; a holder whose model is optional (the challenger) logs it and carries on.
    refusal_stops = True

    def __init__(
        self,
        settings: Settings,
        metrics: StreamMetrics,
        source: RegistrySource | None = None,
        on_swap: Callable[[LoadedModel], None] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.source = source or RegistrySource(settings)
        self.current: LoadedModel | None = None
        self.on_swap = on_swap
        self._lock = asyncio.Lock()
        self.ready = asyncio.Event()

    def swap(self, model: LoadedModel) -> None:
        """Serve ``model`` from now on."""
        old = self.current
        self.current = model
        self.metrics.model_swaps.inc()
        self.metrics.model_info.info({"name": model.name, "version": model.version, "checksum": model.checksum[:12]})
        try:
            self.metrics.model_version.set(float(model.version))
        except ValueError:
            pass
        # Unknown (NaN) rather than the previous version's time.
        self.metrics.model_registered.set(float("nan") if model.registered_at is None else model.registered_at)
        log.info("serving %s version %s (was %s)", model.name, model.version, old.version if old else "none")
        self.ready.set()
        if self.on_swap is not None:
            self.on_swap(model)

    def failed(self, reason: str) -> None:
        """Count a load that failed (``registry``) or was refused (``incompatible``: the signature;
        ``checksum_missing``, ``checksum_mismatch``, ``event_checksum_mismatch``: the artifact)."""
        self.metrics.model_load_failures.labels(reason).inc()

    def absent(self) -> bool:
        """The alias names no version: keep serving what is loaded."""
        log.warning("no version of %s has alias @%s yet", self.settings.model_name, self.source.alias)
        return False

    async def refresh(self, version: str | None = None, checksum: str | None = None) -> bool:
        """Load ``version`` (default: the alias's) when it differs from the serving one.

        Returns True on a swap. Failures are logged and counted; the current model stays.
        """
        loop = asyncio.get_running_loop()
        async with self._lock:
            try:
                if version is None:
                    version = await loop.run_in_executor(None, self.source.version_for_alias)
                    if version is None:
                        return self.absent()
                if self.current is not None and self.current.version == version:
                    return False
                model = await loop.run_in_executor(None, self.source.load, version, checksum)
            except RegistryAuthError as exc:
                self.failed("registry")
                if self.current is None and self.refusal_stops:
                    raise  # nothing to serve and nothing a retry can change: the worker stops (wait_ready)
                log.error("%s; still serving %s", exc, self.current.version if self.current else "nothing")
                return False
            except ArtifactRefused as exc:
                self.failed(exc.reason)
                log.error(
                    "refused model version %s (%s) for @%s: %s; still serving %s",
                    version,
                    exc.reason,
                    self.source.alias,
                    exc,
                    self.current.version if self.current else "nothing",
                )
                return False
            except ModelLoadError as exc:
                self.failed("incompatible")
                log.error(
                    "refused model: %s; still serving %s", exc, self.current.version if self.current else "nothing"
                )
                return False
            except (ChurnError, OSError, ConnectionError) as exc:
                self.failed("registry")
                log.warning(
                    "model registry unavailable (%s); still serving %s",
                    exc,
                    self.current.version if self.current else "nothing",
                )
                return False
            except Exception as exc:  # MLflow raises its own and requests' errors
                self.failed("registry")
                log.warning(
                    "model registry unavailable (%s: %s); still serving %s",
                    type(exc).__name__,
                    exc,
                    self.current.version if self.current else "nothing",
                )
                return False
            self.swap(model)
            return True

    async def wait_ready(self, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Retry until a model is loaded; one clear log line per attempt. A registry that refuses the
        credentials raises :class:`RegistryAuthError` instead: a configuration error, not an outage."""
        attempt = 0
        while self.current is None and not should_stop():
            attempt += 1
            if await self.refresh():
                break
            log.warning(
                "no servable model yet (attempt %d, registry %s); retrying in %.1fs",
                attempt,
                self.settings.shown_tracking_uri(),
                self.settings.registry_retry_s,
            )
            await asyncio.sleep(self.settings.registry_retry_s)
        return self.current is not None
