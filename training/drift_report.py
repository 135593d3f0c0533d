"""The drift report a retraining run carries: production's baseline against the new data.

For every model input, the production model's reference distribution (the
``reference/reference.json`` its training run logged, see :mod:`training.reference`)
is compared with the retraining window's distribution on the same bins (numeric
features) or categories (the plan), with the PSI the drift agent uses
(:mod:`stream.drift.psi`). The run gets one figure per feature under ``drift/`` and
``drift/psi.json`` with every PSI.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd

from schemas.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from stream.drift.psi import categorical_psi, numeric_counts, psi
from training import registry

log = logging.getLogger(__name__)

REFERENCE_ARTIFACT = "reference/reference.json"


def production_reference(client, name: str) -> tuple[str | None, dict | None]:
    """The production version and its reference distributions (None where missing)."""
    import mlflow

    version = registry.version_for_alias(client, name, registry.PRODUCTION)
    if version is None:
        return None, None
    run_id = client.get_model_version(name, version).run_id
    if not run_id:
        return version, None
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=REFERENCE_ARTIFACT)
        return version, json.loads(Path(path).read_text())
    except Exception as exc:  # noqa: BLE001 - a production model without a baseline: the report is skipped
        log.warning("no %s for %s version %s: %s", REFERENCE_ARTIFACT, name, version, exc)
        return version, None


def feature_psi(reference: Mapping, frame: pd.DataFrame) -> dict[str, float]:
    """PSI of every input the reference covers, the window ``frame`` against the reference."""
    out: dict[str, float] = {}
    for name, ref in reference.get("numeric", {}).items():
        if name in frame:
            out[name] = psi(ref["shares"], numeric_counts(ref["edges"], frame[name].to_numpy(float)))
    for name, ref in reference.get("categorical", {}).items():
        if name in frame:
            out[name] = categorical_psi(ref["shares"], frame[name].astype(str).value_counts().to_dict())
    return out


def _bin_labels(edges: list[float]) -> list[str]:
    if not edges:
        return ["all"]
    return [f"< {edges[0]:.3g}", *(f"{a:.3g}–{b:.3g}" for a, b in pairwise(edges)), f"≥ {edges[-1]:.3g}"]


def distribution_figure(name: str, labels: list[str], reference: list[float], current: list[float], value: float):
    """Side-by-side bars of the reference and current shares of one feature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(x - 0.2, reference, width=0.4, label="production reference")
    ax.bar(x + 0.2, current, width=0.4, label="retraining window")
    ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("share of rows")
    ax.set_title(f"{name}: PSI {value:.3f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _figures(reference: Mapping, frame: pd.DataFrame, values: Mapping[str, float]):
    for name in NUMERIC_FEATURES:
        ref = reference.get("numeric", {}).get(name)
        if ref is None or name not in frame:
            continue
        counts = numeric_counts(ref["edges"], frame[name].to_numpy(float))
        shares = (counts / max(1, counts.sum())).tolist()
        yield name, distribution_figure(name, _bin_labels(ref["edges"]), ref["shares"], shares, values[name])
    for name in CATEGORICAL_FEATURES:
        ref = reference.get("categorical", {}).get(name)
        if ref is None or name not in frame:
            continue
        current = frame[name].astype(str).value_counts(normalize=True).to_dict()
        labels = sorted(set(ref["shares"]) | set(current))
        yield (
            name,
            distribution_figure(
                name,
                labels,
                [ref["shares"].get(k, 0.0) for k in labels],
                [current.get(k, 0.0) for k in labels],
                values[name],
            ),
        )


def log_drift_report(client, run_id: str, reference: Mapping, frame: pd.DataFrame, version: str) -> dict[str, float]:
    """Log ``drift/<feature>.png`` and ``drift/psi.json`` to ``run_id``; the PSI per feature."""
    import matplotlib.pyplot as plt

    values = feature_psi(reference, frame)
    for name, fig in _figures(reference, frame, values):
        try:
            client.log_figure(run_id, fig, f"drift/{name}.png")
        finally:
            plt.close(fig)
    client.log_dict(run_id, {"reference_version": version, "rows": len(frame), "psi": values}, "drift/psi.json")
    for name, value in values.items():
        client.log_metric(run_id, f"drift_psi.{name}", value)
    return values
