"""Rendering of the training commands (``churn train``, ``churn retrain``, ``churn launcher``, ``churn models``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from rich.console import Console

from stream.cli.times import parse_instant
from stream.errors import ChurnError, ConfigError
from stream.local.console import stages, table
from stream.settings import Settings
from training.config import DEFAULT_CONFIG, load_config

KEY_METRICS = (
    "roc_auc",
    "oracle_roc_auc",
    "heuristic_roc_auc",
    "pr_auc",
    "f1",
    "precision_at_k",
    "brier",
    "log_loss",
    "base_rate",
)


def run_train(settings: Settings, config_path: Path | None, console: Console) -> None:
    config = load_config(config_path or DEFAULT_CONFIG)
    from training.job import run_training

    with stages(console, "simulate") as progress:
        outcome = run_training(config, settings, progress)
    render_outcome(settings, outcome, console)


def run_retrain(
    settings: Settings,
    config_path: Path | None,
    trigger: str,
    alert_id: str,
    window_days: float | None,
    result_file: Path | None,
    console: Console,
    since: str = "",
    wait_labels_s: float = 0.0,
    oracle_world: Path | None = None,
    termination_log: Path | None = None,
    stage: str = "production",
) -> None:
    """``result_file`` gets the whole decision as JSON; ``termination_log`` (a Kubernetes container's
    ``terminationMessagePath``) a compact one within the kubelet's 4 KiB, which the launcher reads."""
    config = load_config(config_path or DEFAULT_CONFIG)
    since_ts = parse_instant("--since", since)
    try:
        from training.preflight import check_reachable, check_retrain_arguments

        check_retrain_arguments(trigger, window_days, wait_labels_s)
        world = load_world(oracle_world)
        check_reachable(settings)  # before the job's modules, which take seconds to import
        from training.retrain import retrain

        with stages(console, "wait" if since_ts is not None and wait_labels_s else "read") as progress:
            outcome = retrain(
                settings,
                config,
                trigger,
                alert_id,
                window_days,
                progress,
                since_ts,
                wait_labels_s,
                world,
                "shadow" if stage == "shadow" else "production",
            )
    except ChurnError as exc:
        failed = {"decision": "failed", "error": str(exc)}
        if result_file is not None:  # tells a launcher that can only see the file (not the exit code)
            result_file.write_text(json.dumps(failed, indent=2))
        _write_termination_log(termination_log, failed)
        raise
    tags = outcome.tags
    console.print(
        f"feature log: {int(tags['data.records']):,} records ({int(tags['data.duplicates']):,} duplicates); "
        f"snapshots {tags['data.window_start']} .. {tags['data.window_end']}"
    )
    render_outcome(settings, outcome, console)
    if result_file is not None or termination_log is not None:
        summary = {
            "version": outcome.version,
            "run_id": outcome.run_id,
            "decision": ("shadowed" if outcome.shadowed else "promoted") if outcome.decision.promote else "rejected",
            "reasons": outcome.decision.reasons,
            "roc_auc": outcome.metrics["roc_auc"],
            "production_version": outcome.champion_version,
            "production_roc_auc": (outcome.champion_metrics or {}).get("roc_auc"),
            "oracle_roc_auc": outcome.metrics.get("oracle_roc_auc"),
            "evidence": outcome.decision.evidence,
        }
        if result_file is not None:
            result_file.write_text(json.dumps(summary, indent=2, default=str))
        _write_termination_log(termination_log, summary)


def _write_termination_log(path: Path | None, summary: dict) -> None:
    if path is None:
        return
    from training.launcher.jobs import compact_result

    try:
        path.write_text(compact_result(summary))
    except OSError as exc:  # the decision is made and logged; only the launcher's view of it is lost
        logging.getLogger(__name__).warning("cannot write the termination log %s: %s", path, exc)


def load_world(path: Path | None):
    """``--oracle-world``: the config of the simulated world that published the stream, or None;
    :class:`ConfigError` in one line when the file is not one."""
    if path is None:
        return None
    from producers.simulator import SimConfig

    try:
        return SimConfig.from_json(path.read_text())
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"--oracle-world {path}: not a simulated world's config ({exc})") from exc


def render_outcome(settings: Settings, outcome, console: Console) -> None:
    """The candidate's and production's metrics on the same holdout, and the gate's decision."""

    t = table("holdout metrics", ["metric", "candidate", "production (same holdout)"])
    for key in KEY_METRICS:
        if key not in outcome.metrics:
            continue
        champ = outcome.champion_metrics.get(key) if outcome.champion_metrics else None
        t.add_row(key, f"{outcome.metrics[key]:.4f}", "" if champ is None else f"{champ:.4f}")
    console.print(t)
    rows = int(outcome.metrics["train_rows"]), int(outcome.metrics["holdout_rows"])
    console.print(f"rows: {rows[0]:,} train, {rows[1]:,} holdout; dataset {outcome.tags['dataset.fingerprint']}")
    console.print(
        f"registered [bold]{settings.model_name}[/] version [bold]{outcome.version}[/] (run {outcome.run_id})"
    )
    if outcome.shadowed:
        console.print(
            f"[cyan]shadowed[/]: version {outcome.version} is now @{settings.shadow_alias}, scored in shadow "
            f"beside @production {outcome.champion_version} until it is promoted or dropped on matured labels"
        )
    elif outcome.decision.promote:
        console.print(
            f"[green]promoted[/]: version {outcome.version} is now @production"
            + (f" (previous: {outcome.champion_version})" if outcome.champion_version else "")
        )
    else:
        console.print(
            f"[yellow]rejected[/]: {'; '.join(outcome.decision.reasons)}; "
            f"@production stays at version {outcome.champion_version}"
        )


def show_models(settings: Settings, console: Console) -> None:
    from training import registry

    client = registry.connect(settings)
    versions = registry.list_versions(client, settings.model_name)
    if not versions:
        console.print(f"no versions of {settings.model_name} in {settings.shown_tracking_uri()}")
        return
    t = table(
        f"{settings.model_name} in {settings.shown_tracking_uri()}",
        ["version", "aliases", "gate", "roc_auc", "oracle", "pr_auc", "brier", "reasons"],
    )
    for v in versions:
        m = v.metrics
        t.add_row(
            v.version,
            ", ".join(v.aliases),
            v.tags.get("gate.decision", ""),
            *(f"{m[k]:.4f}" if k in m else "" for k in ("roc_auc", "oracle_roc_auc", "pr_auc", "brier")),
            v.tags.get("gate.reasons", "") if v.tags.get("gate.decision") == "rejected" else "",
        )
    console.print(t)


def run_promote_from_shadow(settings: Settings, console: Console, drop: bool = False) -> None:
    """Judge the challenger on the workers' shadow evidence; promote it, drop it, or say why it waits."""
    from training.shadow import judge

    decision = judge(settings, force_drop=drop)
    if decision is None:
        console.print(f"no version of {settings.model_name} is @{settings.shadow_alias}: nothing in shadow")
        return
    t = table("shadow evidence (same matured labels)", ["name", "value"])
    for key, value in sorted(decision.evidence.items()):
        t.add_row(key, f"{value:.6g}")
    console.print(t)
    colour = {"promote": "green", "drop": "yellow", "wait": "cyan"}[decision.action]
    console.print(f"[{colour}]{decision.action}[/]: {decision.reason}")


def run_rollback(settings: Settings, console: Console) -> None:
    from training import registry

    client = registry.connect(settings)
    old, new = registry.rollback(client, settings.model_name)
    console.print(f"rolled back {settings.model_name}: @production {old} -> {new} (@previous is now {old})")


def run_launcher(
    settings: Settings,
    cooldown_s: float,
    every_s: float | None,
    once: bool,
    job_template: Path | None,
    console: Console,
    learn_since_drift_s: float | None = None,
    retrain_on: str = "harm",
    backend: str | None = None,
    stage: str | None = None,
) -> None:
    import logging
    import signal
    import threading

    from prometheus_client import start_http_server

    from training.launcher import LauncherMetrics, LaunchPolicy, RetrainLauncher, build_launcher

    policy = LaunchPolicy(cooldown_s, every_s, retrain_on)
    jobs = build_launcher(settings, job_template, backend)  # a bad backend or no cluster: said before the broker
    from stream.kafka.acls import require_role

    require_role(settings, "launcher")
    metrics = LauncherMetrics.create()
    service = RetrainLauncher(
        settings,
        jobs,
        policy,
        metrics,
        learn_since_drift_s=learn_since_drift_s,
        stage=stage,
    )
    if not once:
        try:
            start_http_server(settings.web_port, addr=settings.web_host, registry=metrics.registry)
            console.print(f"launcher metrics on http://{settings.web_host}:{settings.web_port}/metrics")
        except OSError as exc:
            logging.getLogger(__name__).warning(
                "not serving /metrics: cannot bind %s:%d (%s); set CHURN_WEB_PORT",
                settings.web_host,
                settings.web_port,
                exc,
            )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    console.print(
        f"launcher: consuming {settings.topic('drift-alerts')} as {settings.app_id}-launcher; "
        f"retrains on {'every alert' if retrain_on == 'any' else 'alerts that judge the model hurt'}; "
        f"cooldown {cooldown_s:.0f}s"
        + (f", a run every {every_s:.0f}s" if every_s else "")
        + (
            f"; candidates go to @{settings.shadow_alias}, judged every {service.judge_every_s:g}s "
            f"(promote at >= {settings.shadow_min_labels} matured labels and ROC AUC +{settings.shadow_margin:g}, "
            f"drop after {settings.shadow_deadline_s:g}s)"
            if service.stage == "shadow"
            else ""
        )
        + ("; --once: exits when the alerts there now are handled and the job has ended" if once else "")
    )
    state = service.run(once=once, stop=stop)
    console.print(
        f"launcher stopped: {state.launches} launches; last alert {state.last_alert_id or '-'}; "
        f"last outcome {state.last_outcome or '-'} (exit code {state.last_exit_code})"
    )
