"""The model registry as training writes it: the experiment, promote, reject, roll back.

Aliases: ``production`` is what scorers serve; ``previous`` keeps the version it
replaced, so a rollback is one alias move; the challenger alias (``CHURN_SHADOW_ALIAS``,
``challenger``) is a candidate scored in shadow until it is promoted or dropped. Every version carries tags that say how
the gate decided (``gate.decision``, ``gate.reasons``). The read side (connect, look
up, download, verify) is :mod:`stream.serving.registry`, whose names this module
offers too, so a job needs one module for both.
"""

from __future__ import annotations

import logging

from stream.errors import RegistryError
from stream.serving.registry import (
    CHECKSUM_TAG,
    IMPORTANCE_ARTIFACT,
    PREVIOUS,
    PRODUCTION,
    VersionInfo,
    artifact_checksum,
    check_reachable,
    connect,
    downloaded_model,
    input_names,
    list_versions,
    load_sklearn,
    load_version,
    refusal,
    version_for_alias,
)
from stream.settings import Settings

log = logging.getLogger(__name__)

__all__ = [
    "PRODUCTION",
    "PREVIOUS",
    "CHECKSUM_TAG",
    "IMPORTANCE_ARTIFACT",
    "VersionInfo",
    "check_reachable",
    "connect",
    "artifact_checksum",
    "downloaded_model",
    "load_sklearn",
    "load_version",
    "input_names",
    "version_for_alias",
    "list_versions",
    "refusal",
    "ensure_experiment",
    "promote",
    "reject",
    "rollback",
    "SHADOW_SINCE_TAG",
    "register_shadow",
    "shadow_since",
    "promote_challenger",
    "drop_challenger",
]


def ensure_experiment(client, settings: Settings) -> str:
    """The experiment id, creating it (with a local artifact root when local)."""
    try:
        exp = client.get_experiment_by_name(settings.mlflow_experiment)
        if exp is not None:
            return exp.experiment_id
        location = settings.artifact_root() if not settings.mlflow_tracking_uri else None
        return client.create_experiment(settings.mlflow_experiment, artifact_location=location)
    except RegistryError:
        raise
    except Exception as exc:  # MLflow raises many kinds; all mean the same to the user
        raise refusal(exc, settings, "create an experiment") or RegistryError(
            f"MLflow at {settings.shown_tracking_uri()} failed: {exc}"
        ) from exc


def promote(client, name: str, version: str, reason: str = "") -> str | None:
    """Move ``production`` to ``version``; the replaced version keeps ``previous``."""
    old = version_for_alias(client, name, PRODUCTION)
    if old is not None and old != version:
        client.set_registered_model_alias(name, PREVIOUS, old)
    client.set_registered_model_alias(name, PRODUCTION, version)
    client.set_model_version_tag(name, version, "gate.decision", "promoted")
    if reason:
        client.set_model_version_tag(name, version, "gate.reasons", reason)
    log.info("promoted %s version %s (previous production: %s)", name, version, old)
    return old


def reject(client, name: str, version: str, reasons: list[str]) -> None:
    """Record why a candidate was rejected; aliases stay where they were."""
    client.set_model_version_tag(name, version, "gate.decision", "rejected")
    client.set_model_version_tag(name, version, "gate.reasons", "; ".join(reasons)[:4000])
    log.info("rejected %s version %s: %s", name, version, "; ".join(reasons))


def rollback(client, name: str) -> tuple[str, str]:
    """Serve the ``previous`` version again; the demoted one becomes ``previous``.

    Returns ``(from_version, to_version)``. Rolling back twice rolls forward again.
    """
    current = version_for_alias(client, name, PRODUCTION)
    target = version_for_alias(client, name, PREVIOUS)
    if target is None or current is None:
        raise RegistryError(f"{name} has no '{PREVIOUS}' version to roll back to")
    client.set_registered_model_alias(name, PRODUCTION, target)
    client.set_registered_model_alias(name, PREVIOUS, current)
    client.set_model_version_tag(name, current, "rolled_back", "true")
    log.info("rolled back %s from version %s to %s", name, current, target)
    return current, target


SHADOW_SINCE_TAG = "shadow.since"


def register_shadow(client, name: str, version: str, alias: str, now: float) -> str | None:
    """Put ``version`` under the challenger ``alias`` (scored in shadow, never served); returns the version
    it displaces from shadow, if any. ``shadow.since`` records when, for the deadline."""
    old = version_for_alias(client, name, alias)
    client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, "gate.decision", "shadowed")
    client.set_model_version_tag(name, version, SHADOW_SINCE_TAG, f"{now:.3f}")
    if old is not None and old != version:
        client.set_model_version_tag(name, old, "shadow.outcome", f"replaced by {version}")
    log.info("%s version %s is @%s (scored in shadow; replaced %s)", name, version, alias, old)
    return old


def shadow_since(client, name: str, version: str) -> float | None:
    """When ``version`` went into shadow (epoch seconds), or None when it has no record of it."""
    tags = client.get_model_version(name, version).tags or {}
    try:
        return float(tags[SHADOW_SINCE_TAG])
    except (KeyError, ValueError):
        return None


def promote_challenger(client, name: str, version: str, alias: str, reason: str) -> str | None:
    """Serve the challenger: ``production`` moves to it (the replaced version keeps ``previous``) and the
    challenger alias is removed. Returns the version it replaced."""
    old = promote(client, name, version, reason)
    client.delete_registered_model_alias(name, alias)
    client.set_model_version_tag(name, version, "shadow.outcome", "promoted")
    return old


def drop_challenger(client, name: str, version: str, alias: str, reason: str) -> None:
    """Stop scoring the challenger in shadow: the alias is removed and the version says why."""
    client.delete_registered_model_alias(name, alias)
    client.set_model_version_tag(name, version, "shadow.outcome", "dropped")
    client.set_model_version_tag(name, version, "shadow.reasons", reason[:4000])
    log.info("dropped %s version %s from shadow: %s", name, version, reason)
