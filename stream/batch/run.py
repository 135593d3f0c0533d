"""One batch run: a model from the registry, a source's states in chunks, scored rows to the sinks.

The run holds one chunk of states and its rows at a time (plus what the source itself holds, see
:mod:`stream.batch.sources`), and times each step apart: ``read`` (the source), ``featurize``
(decoding states and computing their feature vectors with the stream's per-customer feature
code), ``score`` (the model call, risk bands and reasons, on whole columns), ``write`` (Arrow and
Parquet) and ``publish`` (the topic).
"""

from __future__ import annotations

import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice

from stream.batch.output import ParquetSink, TopicSink, arrow_table
from stream.batch.rows import featurize, score
from stream.errors import ConfigError, ModelLoadError
from stream.pipeline.features import CustomerState
from stream.serving.model_holder import LoadedModel, RegistrySource
from stream.settings import Settings

STEPS = ("read", "featurize", "score", "write", "publish")


@dataclass(frozen=True)
class BatchOptions:
    as_of: float | None = None  # None: each customer at its own latest event time
    chunk_rows: int = 100_000
    reasons: int = 3
    risk_medium: float = 0.3
    risk_high: float = 0.6


@dataclass
class BatchSummary:
    rows: int = 0
    chunks: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STEPS, 0.0))
    wall_s: float = 0.0
    peak_rss_start_mb: float = 0.0  # the process's peak before the first chunk: interpreter, libraries, model
    peak_rss_mb: float = 0.0

    @property
    def customers(self) -> int:
        """Every customer the source gave: scored or skipped."""
        return self.rows + sum(self.skipped.values())

    def rates(self) -> dict[str, float]:
        """Customers per second of each step, and of the whole run."""
        n = self.customers

        def per(seconds: float) -> float:
            return n / seconds if seconds > 0 else float("nan")

        return {
            **{k: per(v) for k, v in self.seconds.items()},
            "total": per(self.wall_s),
        }


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def load_model(settings: Settings, version: str | None = None, alias: str | None = None) -> LoadedModel:
    """The model to score with, through the worker's own guarded loader (signature and checksum checked):
    ``version``, else the version under ``alias`` (default ``CHURN_MODEL_ALIAS``)."""
    if alias is not None:
        settings = settings.model_copy(update={"model_alias": alias})
    source = RegistrySource(settings)
    name = settings.model_name
    if version is None:
        version = source.version_for_alias()
        if version is None:
            raise ConfigError(f"no version of {name} has alias @{settings.model_alias} in the registry")
    try:
        return source.load(version)
    except ModelLoadError:
        raise
    except Exception as exc:  # MLflow raises its own exception for a version it does not have
        if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower():
            raise ConfigError(f"--version {version}: {name} has no such version in the registry") from exc
        raise ModelLoadError(f"cannot load {name} version {version}: {exc}") from exc


def run_batch(
    source: Iterable[CustomerState | bytes],
    model: LoadedModel,
    parquet: ParquetSink,
    options: BatchOptions,
    topic: TopicSink | None = None,
    advance: Callable[[int], None] = lambda n: None,
) -> BatchSummary:
    """Score every state of ``source`` with ``model`` into ``parquet`` (and ``topic``), a chunk at a time.

    ``advance`` is told how many customers each chunk took from the source (for a progress bar).
    The Parquet file gets its final name only when every chunk is written (and published).
    """
    summary = BatchSummary(peak_rss_start_mb=peak_rss_mb())
    seconds = summary.seconds
    items = iter(source)
    began = clock = time.perf_counter()
    try:
        while True:
            chunk_items = list(islice(items, options.chunk_rows))
            now = time.perf_counter()
            seconds["read"] += now - clock
            clock = now
            if not chunk_items:
                break
            taken = len(chunk_items)
            features = featurize(chunk_items, options.as_of)
            del chunk_items
            now = time.perf_counter()
            seconds["featurize"] += now - clock
            clock = now
            scored = score(model, features, options.reasons, options.risk_medium, options.risk_high)
            now = time.perf_counter()
            seconds["score"] += now - clock
            clock = now
            parquet.write(arrow_table(scored))
            now = time.perf_counter()
            seconds["write"] += now - clock
            clock = now
            if topic is not None:
                topic.write(scored)
                now = time.perf_counter()
                seconds["publish"] += now - clock
                clock = now
            summary.rows += len(features)
            summary.chunks += 1
            summary.skipped.update(features.skipped)
            advance(taken)
        if topic is not None:
            topic.close()
            now = time.perf_counter()
            seconds["publish"] += now - clock
            clock = now
        parquet.close()
    except BaseException:
        parquet.abort()
        raise
    summary.wall_s = time.perf_counter() - began
    summary.peak_rss_mb = peak_rss_mb()
    return summary
