"""Rendering of the training commands (``churn train``, ``churn models``)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from stream.settings import Settings
from training.config import DEFAULT_CONFIG, load_config

_STAGES = {
    "simulate": "simulating customers and replaying their events",
    "split": "splitting by customer",
    "fit": "fitting the pipeline",
    "champion": "evaluating the production model on the same holdout",
    "log": "logging the run and registering the candidate",
    "done": "done",
}
KEY_METRICS = ("roc_auc", "oracle_roc_auc", "heuristic_roc_auc", "pr_auc", "f1", "precision_at_k", "brier", "log_loss", "base_rate")


def run_train(settings: Settings, config_path: Path | None, console: Console) -> None:
    from stream.cli import table

    config = load_config(config_path or DEFAULT_CONFIG)
    from training.job import run_training

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as bar:
        task = bar.add_task(_STAGES["simulate"], total=None)

        def progress(stage: str, done: float) -> None:
            text = _STAGES.get(stage, stage)
            if stage == "simulate" and done:
                text = f"{text} ({int(done):,} events)"
            bar.update(task, description=text)

        outcome = run_training(config, settings, progress)

    t = table("holdout metrics", ["metric", "candidate", "production (same holdout)"])
    for key in KEY_METRICS:
        if key not in outcome.metrics:
            continue
        champ = outcome.champion_metrics.get(key) if outcome.champion_metrics else None
        t.add_row(key, f"{outcome.metrics[key]:.4f}", "" if champ is None else f"{champ:.4f}")
    console.print(t)
    rows = int(outcome.metrics["train_rows"]), int(outcome.metrics["holdout_rows"])
    console.print(f"rows: {rows[0]:,} train, {rows[1]:,} holdout; dataset {outcome.tags['dataset.fingerprint']}")
    console.print(f"registered [bold]{settings.model_name}[/] version [bold]{outcome.version}[/] (run {outcome.run_id})")
    if outcome.decision.promote:
        console.print(f"[green]promoted[/]: version {outcome.version} is now @production"
                      + (f" (previous: {outcome.champion_version})" if outcome.champion_version else ""))
    else:
        console.print(f"[yellow]rejected[/]: {'; '.join(outcome.decision.reasons)}; "
                      f"@production stays at version {outcome.champion_version}")


def show_models(settings: Settings, console: Console) -> None:
    from stream.cli import table
    from training import registry

    client = registry.connect(settings)
    versions = registry.list_versions(client, settings.model_name)
    if not versions:
        console.print(f"no versions of {settings.model_name} in {settings.resolved_tracking_uri()}")
        return
    t = table(f"{settings.model_name} in {settings.resolved_tracking_uri()}",
              ["version", "aliases", "gate", "roc_auc", "oracle", "pr_auc", "brier", "reasons"])
    for v in versions:
        m = v.metrics
        t.add_row(
            v.version, ", ".join(v.aliases), v.tags.get("gate.decision", ""),
            *(f"{m[k]:.4f}" if k in m else "" for k in ("roc_auc", "oracle_roc_auc", "pr_auc", "brier")),
            v.tags.get("gate.reasons", "") if v.tags.get("gate.decision") == "rejected" else "",
        )
    console.print(t)


def run_rollback(settings: Settings, console: Console) -> None:
    from training import registry

    client = registry.connect(settings)
    old, new = registry.rollback(client, settings.model_name)
    console.print(f"rolled back {settings.model_name}: @production {old} -> {new} (@previous is now {old})")
