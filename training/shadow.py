"""Promote a challenger scored in shadow, or drop it, on the evidence of matured labels.

::

    workers' /metrics ──► evidence (both aliases, the same matured labels) ──► decide (pure) ──► apply
    churn_shadow_{roc_auc,log_loss,brier,labels}{alias, model_version}       promote / drop / wait   registry + ModelEvent

:func:`decide` is the rule, a pure function: the challenger is promoted once both aliases
have been measured on at least ``min_labels`` matured labels and its ROC AUC beats
production's by at least ``margin`` with a log loss no worse (a better ranking bought with
worse probabilities is not a win); it is dropped when it has not won by ``deadline_s``
after it went into shadow; otherwise the decision is to wait.

Each worker measures the customers of the partitions it owns; :func:`evidence_from_metrics`
adds their label counts and weighs their measurements by them (exact for log loss and
Brier, which are means; an approximation for AUC across workers). Only measurements of
the versions the registry holds under both aliases now count.

:func:`judge` reads the registry and the workers, decides, and applies the decision: the
registry first, then a ``ModelEvent`` (``promoted`` or ``dropped``) with the evidence;
``churn models promote --from-shadow`` calls it. The launcher does the same steps through
:class:`RegistryShadow` on a timer, with the time the challenger went into shadow kept in
its own state.
"""

from __future__ import annotations

import logging
import math
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

from schemas.outputs import ModelEvent
from stream.errors import ChurnError
from stream.settings import Settings
from training import registry
from training.model_events import publish

log = logging.getLogger(__name__)

MEASURES = ("roc_auc", "log_loss", "brier")
PRODUCTION = "production"


@dataclass(frozen=True)
class ShadowRule:
    """When a challenger wins (``min_labels``, ``margin``) and how long it may try (``deadline_s``)."""

    min_labels: int
    margin: float
    deadline_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ShadowRule:
        return cls(settings.shadow_min_labels, settings.shadow_margin, settings.shadow_deadline_s)


@dataclass(frozen=True)
class ShadowEvidence:
    """Both aliases measured on the same matured labels: ``labels`` of them, and per alias the measures."""

    production_version: str
    challenger_version: str
    labels: int = 0
    production: Mapping[str, float] = field(default_factory=dict)
    challenger: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ShadowDecision:
    action: Literal["promote", "drop", "wait"]
    reason: str
    evidence: dict[str, float]


def decide(evidence: ShadowEvidence, age_s: float, rule: ShadowRule) -> ShadowDecision:
    """The rule (see the module doc): evidence and the challenger's time in shadow in, a decision out.

    >>> rule = ShadowRule(min_labels=100, margin=0.02, deadline_s=3600)
    >>> e = ShadowEvidence("3", "4", 150, {"roc_auc": 0.70, "log_loss": 0.30}, {"roc_auc": 0.75, "log_loss": 0.29})
    >>> decide(e, 60, rule).action
    'promote'
    >>> decide(ShadowEvidence("3", "4", 50, e.production, e.challenger), 60, rule).action
    'wait'
    >>> decide(ShadowEvidence("3", "4", 50, e.production, e.challenger), 3600, rule).action
    'drop'
    """
    numbers = {
        "shadow_labels": float(evidence.labels),
        "shadow_min_labels": float(rule.min_labels),
        "shadow_margin": rule.margin,
        "shadow_age_s": age_s,
        "shadow_deadline_s": rule.deadline_s,
    }
    for name in MEASURES:
        for alias, measured in ((PRODUCTION, evidence.production), ("challenger", evidence.challenger)):
            value = measured.get(name, math.nan)
            if math.isfinite(value):
                numbers[f"{alias}_{name}"] = value
    gain = evidence.challenger.get("roc_auc", math.nan) - evidence.production.get("roc_auc", math.nan)
    loss_rise = evidence.challenger.get("log_loss", math.nan) - evidence.production.get("log_loss", math.nan)
    if math.isfinite(gain):
        numbers["gain_over_production"] = gain
    enough = evidence.labels >= rule.min_labels
    if enough and math.isfinite(gain) and gain >= rule.margin and math.isfinite(loss_rise) and loss_rise <= 0:
        return ShadowDecision(
            "promote",
            f"ROC AUC {gain:+.4f} over production (margin {rule.margin}) and log loss {loss_rise:+.4f} "
            f"on the same {evidence.labels} matured labels",
            numbers,
        )
    if not enough:
        why = f"{evidence.labels} matured labels of the {rule.min_labels} needed"
    elif not (math.isfinite(gain) and math.isfinite(loss_rise)):
        why = f"no ROC AUC and log loss of both on {evidence.labels} matured labels"
    elif gain < rule.margin:
        why = f"ROC AUC {gain:+.4f} over production, short of the margin {rule.margin}"
    else:
        why = f"ROC AUC {gain:+.4f} over production but log loss {loss_rise:+.4f} worse"
    if age_s >= rule.deadline_s:
        return ShadowDecision("drop", f"not better after {age_s:.0f}s in shadow: {why}", numbers)
    return ShadowDecision("wait", why, numbers)


def evidence_from_metrics(texts: Iterable[str], production_version: str, challenger_version: str, alias: str):
    """The evidence in workers' ``/metrics`` texts: labels added up, measures weighed by each worker's labels.

    Samples of other versions (a comparison from before a swap) are ignored.
    """
    wanted = {PRODUCTION: production_version, alias: challenger_version}
    per_worker: list[dict[str, dict[str, float]]] = []
    for text in texts:
        found: dict[str, dict[str, float]] = {}
        for family in text_string_to_metric_families(text):
            if not family.name.startswith("churn_shadow_"):
                continue
            name = family.name.removeprefix("churn_shadow_")
            if name not in (*MEASURES, "labels"):
                continue
            for sample in family.samples:
                a, v = sample.labels.get("alias"), sample.labels.get("model_version")
                if a in wanted and wanted[a] == v:
                    found.setdefault(a, {})[name] = sample.value
        per_worker.append(found)
    labels = 0.0
    sums = {PRODUCTION: dict.fromkeys(MEASURES, 0.0), alias: dict.fromkeys(MEASURES, 0.0)}
    weights = {PRODUCTION: dict.fromkeys(MEASURES, 0.0), alias: dict.fromkeys(MEASURES, 0.0)}
    for found in per_worker:
        if PRODUCTION not in found or alias not in found:
            continue
        n = min(found[PRODUCTION].get("labels", 0.0), found[alias].get("labels", 0.0))
        labels += n
        for a in (PRODUCTION, alias):
            for name in MEASURES:
                value = found[a].get(name, math.nan)
                if n > 0 and math.isfinite(value):
                    sums[a][name] += value * n
                    weights[a][name] += n

    def mean(a: str) -> dict[str, float]:
        return {k: sums[a][k] / weights[a][k] for k in MEASURES if weights[a][k] > 0}

    return ShadowEvidence(production_version, challenger_version, int(labels), mean(PRODUCTION), mean(alias))


def scrape(urls: Iterable[str], timeout_s: float = 5.0) -> list[str]:
    """The /metrics texts of the workers that answer (one that does not is logged and left out)."""
    texts = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - http(s) checked in settings
                texts.append(response.read().decode())
        except OSError as exc:
            log.warning("no shadow evidence from %s: %s", url, exc)
    return texts


def shadow_event(
    name: str, decision: ShadowDecision, evidence: ShadowEvidence, checksum: str = "", run_id: str = ""
) -> ModelEvent:
    """The ``ModelEvent`` of a promotion or a drop out of shadow, with the evidence."""
    action: Literal["promoted", "dropped"] = "promoted" if decision.action == "promote" else "dropped"
    version = evidence.challenger_version
    return ModelEvent(
        event_id=f"{name}:{version}:{action}",
        model_name=name,
        version=version,
        action=action,
        previous_version=evidence.production_version if action == "promoted" else "",
        reason=f"shadow: {decision.reason}"[:4000],
        checksum=checksum if action == "promoted" else "",
        run_id=run_id,
        ts=datetime.now(UTC),
        evidence={k: float(v) for k, v in decision.evidence.items() if math.isfinite(v)},
    )


@dataclass(frozen=True)
class Challenger:
    """The version under the challenger ``alias``, production's version now, and when the challenger went
    into shadow by the registry's record (None when it has none)."""

    name: str
    alias: str
    version: str
    production_version: str
    since: float | None


class RegistryShadow:
    """The I/O around :func:`decide`: the registry's challenger, the workers' evidence, and a decision applied
    (the registry first, then a ``ModelEvent``). The launcher and :func:`judge` share it."""

    def __init__(self, settings: Settings) -> None:
        if not settings.shadow_alias:
            raise ChurnError("shadow scoring is off (CHURN_SHADOW_ALIAS is empty)")
        self.settings = settings

    def challenger(self) -> Challenger | None:
        """The challenger now, or None when no version is under the alias."""
        settings = self.settings
        client = registry.connect(settings)
        name, alias = settings.model_name, settings.shadow_alias
        version = registry.version_for_alias(client, name, alias)
        if version is None:
            return None
        production = registry.version_for_alias(client, name, registry.PRODUCTION) or ""
        return Challenger(name, alias, version, production, registry.shadow_since(client, name, version))

    def evidence(self, challenger: Challenger, texts: Iterable[str] | None = None) -> ShadowEvidence:
        """The evidence in ``texts`` (default: scraped from ``CHURN_SHADOW_METRICS_URLS``)."""
        if texts is None:
            texts = scrape(self.settings.metrics_urls(self.settings.web_port))
        return evidence_from_metrics(texts, challenger.production_version, challenger.version, challenger.alias)

    def apply(self, challenger: Challenger, decision: ShadowDecision, evidence: ShadowEvidence) -> None:
        """Promote or drop the challenger in the registry, then announce it with the evidence."""
        if decision.action == "wait":
            return
        client = registry.connect(self.settings)
        name, version = challenger.name, challenger.version
        mv = client.get_model_version(name, version)
        checksum = (mv.tags or {}).get(registry.CHECKSUM_TAG, "")
        if decision.action == "promote":
            registry.promote_challenger(client, name, version, challenger.alias, f"shadow: {decision.reason}")
        else:
            registry.drop_challenger(client, name, version, challenger.alias, decision.reason)
        publish(self.settings, shadow_event(name, decision, evidence, checksum, mv.run_id or ""))


def judge(
    settings: Settings,
    texts: Iterable[str] | None = None,
    now: float | None = None,
    force_drop: bool = False,
    since: float | None = None,
) -> ShadowDecision | None:
    """Decide on the challenger and apply the decision (None: there is no challenger).

    ``texts`` are the workers' /metrics (default: scraped from ``CHURN_SHADOW_METRICS_URLS``).
    ``since`` is when the challenger went into shadow (default: the registry's record; a
    challenger with none is past its deadline). A promotion or drop is written to the
    registry, then announced on ``model-events``. ``force_drop`` drops the challenger
    whatever the evidence says.
    """
    shadow = RegistryShadow(settings)
    challenger = shadow.challenger()
    if challenger is None:
        return None
    now = time.time() if now is None else now
    since = challenger.since if since is None else since
    age = now - since if since is not None else math.inf
    evidence = shadow.evidence(challenger, texts)
    decision = decide(evidence, age, ShadowRule.from_settings(settings))
    if force_drop and decision.action != "drop":
        decision = ShadowDecision("drop", f"dropped by hand ({decision.reason})", decision.evidence)
    log.info(
        "shadow decision on %s version %s: %s (%s)",
        challenger.name,
        challenger.version,
        decision.action,
        decision.reason,
    )
    shadow.apply(challenger, decision, evidence)
    return decision
