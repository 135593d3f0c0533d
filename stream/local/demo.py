"""``churn demo``: the whole loop on embedded defaults, live, ending by itself.

::

    simulator ──► account-events ──► worker: featurize, score, drift ──► churn-scores
    (a thread,      (embedded broker,       │ drift-alerts                    │
     drifting at    a child process)        ▼                                 ▼
     the onset)               launcher (a thread, single flight)        this display
                                            │ churn retrain --since --wait-labels
                                            ▼ (a child process: gate, promote, model-events)
                              worker swaps to the new version, scores carry it

The demo owns everything it starts and stops it by pid on the way out, Ctrl-C
included. It uses its own registry (``CHURN_DATA_DIR/demo``): the first run trains the
bootstrap model there; each run serves the bootstrap version again, so every run
shows the same story: a stable world, a drift, alerts, one retraining job that learns
the world since the drift once its labels have matured, the promotion, and the scores
changing version. It ends once the new version has scored ``after_swap_events``
events and every published event is scored, and writes ``summary.json`` to its run
folder.

With ``--shadow`` the job registers its candidate as the challenger instead: the worker
scores it beside production to ``churn-scores-shadow``, both are measured on the same
matured labels in ``/metrics``, and the launcher promotes the challenger on that
evidence (then the demo ends as above) or drops it at the deadline (then it ends at the
drop). The rule's settings are the demo's own (:data:`SHADOW_MIN_LABELS`,
:data:`SHADOW_MARGIN`, :data:`SHADOW_DEADLINE_S`), sized so the decision falls within
the stream's days; the summary checks that ``churn-scores`` never carried a shadow score
nor a score of the challenger before its promotion.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
from confluent_kafka import Consumer, TopicPartition
from pydantic import ValidationError
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from producers.publisher import Publisher
from producers.simulator import SCENARIOS, SimConfig, Simulator, paced
from schemas.outputs import DriftAlert, ModelEvent
from stream.errors import ChurnError, ConfigError
from stream.kafka.config import confluent_config
from stream.kafka.topics import (
    ACCOUNT_EVENTS_DLQ,
    CHURN_SCORES,
    CHURN_SCORES_SHADOW,
    DRIFT_ALERTS,
    MODEL_EVENTS,
    ensure_topics,
    topic_specs,
)
from stream.local.broker import EmbeddedBroker, free_port
from stream.local.processes import WorkerProcess, labelled, stopped_by_signals
from stream.pipeline.features import DAY
from stream.serving.shadow import SHADOW_HEADER
from stream.settings import Settings

log = logging.getLogger(__name__)

BOOTSTRAP_TAG = "demo.role"
# Features need about 70 days of history before a fresh stream looks like the training
# data (30-day windows, usage trends over two of them); the simulator emits about 0.74
# events per customer and day. The drift monitor compares histories only after this
# warm-up, and the drift starts after it.
WARMUP_DAYS = 70
EVENTS_PER_CUSTOMER_DAY = 0.74


ENGINES = ("embedded", "kafka")
STABLE = "none"  # no scenario: a stable world, which must end without any alert
ALL = "all"
# A stable run lasts as long as a drift run needs to close its loop.
STABLE_EXTRA_DAYS = 150
RETRY_COOLDOWN_S = 15.0
# While a job trains (its labels matured), a stream day takes this many times longer: a real
# retraining takes minutes of a day, not the weeks the demo's fast clock would let pass, and a
# machine that trains slowly still sees the new model serve before the stream ends.
TRAINING_SLOWDOWN = 8.0
# The shadow rule of ``--shadow``. Labels mature a horizon (30 stream days, 15 s) after the
# challenger starts scoring; then about 740 a stream day mature (1,000 customers), so the
# labels needed take a few days more, and the deadline leaves the challenger as many stream
# days again as the horizon to win before it is dropped.
SHADOW_MIN_LABELS = 2000
SHADOW_MARGIN = 0.01
SHADOW_DEADLINE_S = 45.0
SHADOW_JUDGE_S = 2.0
# After --timeout, the worker may still score what was published while it makes progress: the
# demo ends once nothing was scored for DRAIN_STALL_S, and DRAIN_MAX_S after the timeout at most.
DRAIN_STALL_S = 20.0
DRAIN_MAX_S = 120.0


@dataclass
class Drain:
    """The demo's end after ``--timeout``: publishing stops, and the run still waits while the
    worker scores what was published (a loaded machine lags; it loses nothing). It gives up once
    nothing was scored for ``DRAIN_STALL_S``, or ``DRAIN_MAX_S`` after the timeout.

    >>> d = Drain(deadline=100.0)
    >>> d.observe(now=90.0, scored=10); d.gives_up(now=105.0, drained=False)
    False
    >>> d.observe(now=118.0, scored=20); d.gives_up(now=137.0, drained=False)
    False
    >>> d.gives_up(now=139.0, drained=False)
    True
    """

    deadline: float
    scored: int = 0
    progress_at: float = -math.inf

    def observe(self, now: float, scored: int) -> None:
        if scored != self.scored:
            self.scored, self.progress_at = scored, now

    def timed_out(self, now: float) -> bool:
        return now > self.deadline

    def gives_up(self, now: float, drained: bool) -> bool:
        stalled = now - self.progress_at > DRAIN_STALL_S
        return drained or stalled or now > self.deadline + DRAIN_MAX_S


@dataclass(frozen=True)
class DemoOptions:
    scenario: str = "support_surge"
    customers: int = 1000
    onset_day: int = 90
    # A cap, not the plan: the demo stops once the new version has scored enough, usually
    # near day 200-230. The room after that is for machines that train the new model slowly.
    max_days: int = 400
    seconds_per_day: float = 0.5
    window_days: float = 25.0
    after_swap_events: int = 5000
    timeout_s: float = 420.0
    seed: int = 7
    json_path: Path | None = None
    engine: str = "embedded"
    shadow: bool = False

    def check(self) -> None:
        """Raise ``ConfigError`` naming the option to fix."""
        if self.engine not in ENGINES:
            raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.scenario not in (*SCENARIOS, STABLE):
            raise ConfigError(
                f"--scenario must be one of {', '.join((*SCENARIOS, STABLE, ALL))}, not {self.scenario!r}"
            )
        if self.customers < 200:
            raise ConfigError(
                f"--customers must be at least 200 (drift windows need the traffic), got {self.customers}"
            )
        if self.onset_day < WARMUP_DAYS + 5:
            raise ConfigError(
                f"--onset-day must be at least {WARMUP_DAYS + 5}: the drift monitor needs "
                f"{WARMUP_DAYS} days of history first, got {self.onset_day}"
            )
        if self.max_days <= self.onset_day:
            raise ConfigError(f"--max-days ({self.max_days}) must be after --onset-day ({self.onset_day})")
        if self.seconds_per_day <= 0:
            raise ConfigError(f"--seconds-per-day must be positive, got {self.seconds_per_day}")
        if self.window_days <= 0:
            raise ConfigError(f"--window-days must be positive, got {self.window_days}")
        if self.timeout_s <= 0 or self.after_swap_events < 1:
            raise ConfigError("--timeout and --after-swap-events must be positive")
        if self.shadow and self.stable:
            raise ConfigError("--shadow needs a drift scenario: a stable world retrains nothing to shadow")

    @property
    def stable(self) -> bool:
        return self.scenario == STABLE

    @property
    def days(self) -> int:
        """Simulated days at most."""
        return min(self.max_days, self.onset_day + STABLE_EXTRA_DAYS) if self.stable else self.max_days

    @property
    def warmup_events(self) -> int:
        return int(self.customers * EVENTS_PER_CUSTOMER_DAY * WARMUP_DAYS)


# --- the registry -----------------------------------------------------------------------


def demo_settings(settings: Settings) -> Settings:
    """The demo's settings: its own registry folder beside the default one."""
    return settings.model_copy(update={"data_dir": settings.data_dir / "demo", "mlflow_tracking_uri": ""})


def ensure_bootstrap(settings: Settings, console: Console) -> tuple[str, str]:
    """Serve the demo's bootstrap version at @production, training it first if there is none.

    Returns (version, what happened)."""
    from stream.local.console import stages
    from training import registry
    from training.config import DEFAULT_CONFIG, load_config
    from training.job import run_training

    client = registry.connect(settings)
    versions = registry.list_versions(client, settings.model_name)
    bootstrap = [v for v in versions if v.tags.get(BOOTSTRAP_TAG) == "bootstrap"]
    if not bootstrap:
        console.print("training the bootstrap model (first run only; about 40 s)")
        with stages(console, "simulate") as progress:
            outcome = run_training(
                load_config(DEFAULT_CONFIG), settings, progress, {BOOTSTRAP_TAG: "bootstrap", "trigger": "bootstrap"}
            )
        if not outcome.decision.promote:
            raise ChurnError(f"the bootstrap model failed its gate: {'; '.join(outcome.decision.reasons)}")
        return (
            outcome.version,
            f"trained bootstrap version {outcome.version} (roc_auc {outcome.metrics['roc_auc']:.4f})",
        )
    version = bootstrap[0].version  # newest first
    left = (
        registry.version_for_alias(client, settings.model_name, settings.shadow_alias)
        if settings.shadow_alias
        else None
    )
    if left is not None:  # a challenger an earlier run left in shadow: every run starts without one
        client.delete_registered_model_alias(settings.model_name, settings.shadow_alias)
    cleared = f"; version {left} taken out of @{settings.shadow_alias}" if left is not None else ""
    current = registry.version_for_alias(client, settings.model_name, settings.model_alias)
    if current == version:
        return version, f"bootstrap version {version} is @{settings.model_alias}{cleared}"
    client.set_registered_model_alias(settings.model_name, settings.model_alias, version)
    return version, f"@{settings.model_alias} reset from version {current} to bootstrap version {version}{cleared}"


# --- what the demo watches ---------------------------------------------------------------


@dataclass
class Observed:
    """Everything read back from the output topics and the worker's metrics."""

    scores: int = 0
    event_ids: set[str] = field(default_factory=set)
    silence_scores: int = 0
    by_version: Counter = field(default_factory=Counter)
    first_day_by_version: dict[str, float] = field(default_factory=dict)
    stale_after_swap: int = 0  # scores by an older version after a newer one in the same partition
    newest_by_partition: dict[int, int] = field(default_factory=dict)
    alerts: list[DriftAlert] = field(default_factory=list)
    model_events: list[ModelEvent] = field(default_factory=list)
    dlq: int = 0
    score_day: float = 0.0
    psi: dict[str, float] = field(default_factory=dict)
    serving_version: str = ""
    rate: deque = field(default_factory=lambda: deque(maxlen=20))
    # Shadow scoring: scores on churn-scores-shadow by version; churn-scores records that carried the
    # shadow header; the earliest broker timestamp (epoch s) of each version's churn-scores records;
    # the worker's latest churn_shadow_* gauges by alias (with the version as "version").
    shadow_by_version: Counter = field(default_factory=Counter)
    shadow_headers_on_scores: int = 0
    first_score_ts_by_version: dict[str, float] = field(default_factory=dict)
    shadow_metrics: dict[str, dict] = field(default_factory=dict)

    def events_per_s(self) -> float:
        if len(self.rate) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self.rate[0], self.rate[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0


class Watcher:
    """Reads churn-scores, drift-alerts, model-events and the DLQ from their start."""

    def __init__(self, settings: Settings, start_ts: float) -> None:
        self.start_ts = start_ts
        self.seen = Observed()
        config = confluent_config(settings, settings.resolved_bootstrap())
        self.topics = {
            settings.topic(name): name
            for name in (CHURN_SCORES, CHURN_SCORES_SHADOW, DRIFT_ALERTS, MODEL_EVENTS, ACCOUNT_EVENTS_DLQ)
        }
        self.consumer = Consumer(
            {**config, "group.id": "churn-demo-watch", "enable.auto.commit": False, "fetch.wait.max.ms": 100}
        )
        assignment = []
        for topic in self.topics:
            parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
            assignment += [TopicPartition(topic, p, 0) for p in parts]
        self.consumer.assign(assignment)

    def day(self, ts: float) -> float:
        return (ts - self.start_ts) / DAY

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            for msg in self.consumer.consume(5000, max(0.0, min(left, 0.2))):
                if msg.error() is None:
                    self._record(self.topics[msg.topic()], msg.partition(), msg.value() or b"", msg)
            if left <= 0:
                break
        self.seen.rate.append((time.monotonic(), self.seen.scores))

    def _record(self, kind: str, partition: int, value: bytes, msg=None) -> None:
        seen = self.seen
        if kind == CHURN_SCORES_SHADOW:
            seen.shadow_by_version[str(orjson.loads(value)["model_version"])] += 1
        elif kind == CHURN_SCORES:
            score = orjson.loads(value)
            version = str(score["model_version"])
            if msg is not None:
                if any(key == SHADOW_HEADER for key, _ in msg.headers() or []):
                    seen.shadow_headers_on_scores += 1
                stamp = msg.timestamp()[1] / 1000.0
                if stamp < seen.first_score_ts_by_version.get(version, float("inf")):
                    seen.first_score_ts_by_version[version] = stamp
            seen.scores += 1
            if "@" in score["event_id"]:
                seen.silence_scores += 1
            else:
                seen.event_ids.add(score["event_id"])
            seen.by_version[version] += 1
            day = max(0.0, self.day(datetime.fromisoformat(score["event_ts"]).timestamp()))
            seen.score_day = max(seen.score_day, day)
            seen.first_day_by_version.setdefault(version, day)
            newest = seen.newest_by_partition.get(partition, 0)
            if int(version) < newest:
                seen.stale_after_swap += 1
            seen.newest_by_partition[partition] = max(newest, int(version))
        elif kind == DRIFT_ALERTS:
            with suppress(ValidationError):
                seen.alerts.append(DriftAlert.model_validate_json(value))
        elif kind == MODEL_EVENTS:
            with suppress(ValidationError):
                seen.model_events.append(ModelEvent.model_validate_json(value))
        else:
            seen.dlq += 1

    def scrape(self, worker: WorkerProcess) -> None:
        samples = worker.metrics()
        if samples:
            self.seen.psi = labelled(samples, "churn_feature_psi", "feature")
            version = samples.get("churn_model_version", 0)
            self.seen.serving_version = str(int(version)) if version else ""
            measured = shadow_gauges(samples)
            if measured:
                self.seen.shadow_metrics = measured

    def close(self) -> None:
        self.consumer.close()


_SHADOW_SAMPLE = re.compile(
    r'^churn_shadow_(roc_auc|log_loss|brier|labels)\{alias="([^"]*)",model_version="([^"]*)"\}$'
)


def shadow_gauges(samples: dict[str, float]) -> dict[str, dict]:
    """The worker's shadow comparison by alias: ``version`` and the newest version's ``roc_auc``,
    ``log_loss``, ``brier`` and ``labels``.

    >>> shadow_gauges({'churn_shadow_labels{alias="challenger",model_version="2"}': 10.0,
    ...                'churn_shadow_roc_auc{alias="challenger",model_version="2"}': 0.7})
    {'challenger': {'version': '2', 'labels': 10.0, 'roc_auc': 0.7}}
    """
    found: dict[str, dict] = {}
    for key, value in samples.items():
        match = _SHADOW_SAMPLE.match(key)
        if match is None:
            continue
        name, alias, version = match.groups()
        entry = found.get(alias)
        if entry is None or int(version) > int(entry["version"]):
            entry = found[alias] = {"version": version}
        if entry["version"] == version:
            entry[name] = value
    return found


# --- the producer ------------------------------------------------------------------------


@dataclass
class Published:
    sent: int = 0
    day: float = 0.0
    done: bool = False
    error: str = ""
    by_day: list[int] = field(default_factory=list)  # events sent before the end of each stream day

    def sent_by(self, day: float) -> int:
        """Events sent before stream day ``day`` ended."""
        if not self.by_day:
            return 0
        return self.by_day[min(max(int(day), 0), len(self.by_day) - 1)]


def produce(
    settings: Settings,
    config: SimConfig,
    seconds_per_day: Callable[[], float],
    stop: threading.Event,
    out: Published,
) -> None:
    """Publish the simulated stream, paced, until it ends or ``stop`` is set (a thread's body)."""
    try:
        with Publisher.from_settings(settings, settings.resolved_bootstrap()) as publisher:
            for event in paced(Simulator(config).events(), seconds_per_day, start=config.start):
                if stop.is_set():
                    break
                publisher.publish(event)
                out.sent += 1
                out.day = (event.ts - config.start).total_seconds() / DAY
                day = max(0, int(out.day))  # backdated signups come before day 0
                while len(out.by_day) <= day:
                    out.by_day.append(out.sent - 1)
                out.by_day[day] = out.sent
    except Exception as exc:  # noqa: BLE001 - reported by the demo, which then stops
        out.error = f"{type(exc).__name__}: {exc}"
    finally:
        out.done = True


# --- the display -------------------------------------------------------------------------


@dataclass
class Story:
    """The milestones, for the display and the summary."""

    bootstrap_version: str = ""
    registry: str = ""
    first_alert_day: float | None = None
    launches: int = 0
    job: str = ""
    outcome: str = ""
    result: dict = field(default_factory=dict)
    promoted_version: str = ""
    swap_day: float | None = None
    needed_day: float | None = None
    first_alert_at: float | None = None  # monotonic seconds
    swap_at: float | None = None
    outcomes: list[str] = field(default_factory=list)
    seconds_per_day: float = 0.0  # the pace the simulator publishes at now
    shadow: bool = False
    challenger_version: str = ""
    shadow_from_day: float | None = None  # the first stream day the challenger scored in shadow
    shadow_decision: dict = field(default_factory=dict)  # action, reason, at (epoch s), evidence
    metrics_at_decision: dict[str, dict] = field(
        default_factory=dict
    )  # both aliases in the last /metrics read in shadow


def render(
    options: DemoOptions,
    seen: Observed,
    pub: Published,
    story: Story,
    elapsed: float,
    threshold: float,
    day: Callable[[float], float],
) -> Group:
    head = Text.assemble(
        ("churn demo ", "bold"),
        f"scenario {options.scenario} from day {options.onset_day} · {options.customers:,} customers · "
        f"{elapsed:.0f}s · stream day {pub.day:.0f} (scored to day {seen.score_day:.0f}) · "
        f"serving version {seen.serving_version or '-'}",
    )
    stream = Table(title="stream", title_justify="left", show_header=False)
    stream.add_row("events published", f"{pub.sent:,}")
    stream.add_row("events scored", f"{len(seen.event_ids):,}")
    stream.add_row("scores/s", f"{seen.events_per_s():,.0f}")
    stream.add_row("silence re-scores", f"{seen.silence_scores:,}")
    stream.add_row("dead-lettered", f"{seen.dlq:,}")
    versions = Table(title="scores by model version", title_justify="left")
    versions.add_column("version")
    versions.add_column("scores", justify="right")
    versions.add_column("from day", justify="right")
    for version in sorted(seen.by_version, key=int):
        versions.add_row(version, f"{seen.by_version[version]:,}", f"{seen.first_day_by_version[version]:.0f}")
    psi = Table(title=f"PSI, latest window (alert above {threshold:g})", title_justify="left")
    psi.add_column("feature")
    psi.add_column("psi", justify="right")
    for name, value in sorted(seen.psi.items(), key=lambda kv: -kv[1])[:6]:
        psi.add_row(name, Text(f"{value:.3f}", style="bold red" if value > threshold else ""))
    alerts = Table(title=f"drift alerts ({len(seen.alerts)})", title_justify="left")
    for column in ("day", "detector", "kind", "severity", "features"):
        alerts.add_column(column)
    for alert in seen.alerts[-4:]:
        top = sorted(alert.features.items(), key=lambda kv: -kv[1])[:2]
        alerts.add_row(
            f"{day(alert.window_end.timestamp()):.0f}",
            alert.detector,
            alert.kind,
            alert.severity,
            ", ".join(f"{k} {v:.2f}" for k, v in top),
        )
    loop = Text(f"retraining: {story.job or 'waiting for a drift alert'}")
    if story.promoted_version:
        loop.append(f"\npromotion: version {story.bootstrap_version} -> {story.promoted_version}", style="bold green")
    if story.swap_day is not None:
        loop.append(f"; scores carry version {story.promoted_version} from stream day {story.swap_day:.0f}")
    grid = Table.grid(padding=(0, 2))
    grid.add_row(stream, versions, psi)
    parts = [head, grid, alerts, *([shadow_table(seen, story)] if story.shadow else []), loop]
    return Group(*parts)


def shadow_rule_text() -> str:
    return (
        f"promote at >= {SHADOW_MIN_LABELS:,} matured labels with ROC AUC +{SHADOW_MARGIN:g} over production and "
        f"log loss no worse; drop {SHADOW_DEADLINE_S:g}s after it went into shadow; judged every {SHADOW_JUDGE_S:g}s"
    )


def shadow_table(seen: Observed, story: Story) -> Table:
    """Both aliases on the same matured labels, live from the worker's /metrics, and the decision."""
    t = Table(title=f"shadow: {shadow_rule_text()}", title_justify="left")
    for column in ("alias", "version", "ROC AUC", "log loss", "Brier", "matured labels", "scores"):
        t.add_column(column, justify="left" if column == "alias" else "right")
    measured = seen.shadow_metrics or story.metrics_at_decision
    for alias in ("production", "challenger"):
        m = measured.get(alias, {})
        version = m.get("version", story.challenger_version if alias == "challenger" else seen.serving_version)
        scores = seen.shadow_by_version.get(version, 0) if alias == "challenger" else seen.by_version.get(version, 0)
        t.add_row(
            alias,
            version or "-",
            *(f"{m[k]:.4f}" if k in m else "-" for k in ("roc_auc", "log_loss", "brier")),
            f"{m['labels']:,.0f}" if "labels" in m else "-",
            f"{scores:,}" + (" (churn-scores-shadow)" if alias == "challenger" else ""),
        )
    decision = story.shadow_decision
    if decision:
        t.caption = f"{decision['action']}: {decision['reason']}"
    elif story.challenger_version:
        t.caption = f"version {story.challenger_version} in shadow; waiting for evidence"
    return t


# --- the run -------------------------------------------------------------------------------


def run_demo(
    settings: Settings,
    options: DemoOptions,
    console: Console,
    on_progress: Callable[[Observed, Story], None] | None = None,
) -> dict:
    """Run the demo; returns the summary (also written as JSON). ``ChurnError`` when the loop did not close."""
    summary = demo_summary(settings, options, console, on_progress)
    if summary["problems"]:
        raise ChurnError(
            "the loop did not close: " + "; ".join(summary["problems"]) + f" (logs in {summary['run_dir']})"
        )
    return summary


def demo_summary(
    settings: Settings,
    options: DemoOptions,
    console: Console,
    on_progress: Callable[[Observed, Story], None] | None = None,
) -> dict:
    """Run the demo; the summary, written as JSON and printed, with what kept the loop open in ``problems``."""
    options.check()
    settings = demo_settings(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    run_dir = settings.data_dir / "runs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    story = Story(
        registry=settings.shown_tracking_uri(), seconds_per_day=options.seconds_per_day, shadow=options.shadow
    )
    started = time.monotonic()
    for chatty in ("training.launcher", "stream.local.broker"):  # the demo prints their milestones itself
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    started_pids: list[str] = []
    try:
        summary = _run(settings, options, console, run_dir, story, started, started_pids, on_progress)
    except KeyboardInterrupt:
        console.print(f"interrupted: stopped {', '.join(started_pids) or 'nothing yet'}; logs in {run_dir}")
        raise SystemExit(130) from None
    write_summary(summary, run_dir, options.json_path)
    print_summary(summary, console)
    return summary


def _run(
    settings: Settings,
    options: DemoOptions,
    console: Console,
    run_dir: Path,
    story: Story,
    started: float,
    started_pids: list[str],
    on_progress: Callable[[Observed, Story], None] | None,
) -> dict:
    with ExitStack() as stack, stopped_by_signals():
        story.bootstrap_version, what = ensure_bootstrap(settings, console)
        console.print(f"registry {story.registry}: {what}")

        if settings.bootstrap_servers:
            bootstrap = settings.bootstrap_servers
            if not settings.topic_prefix:
                settings = settings.model_copy(update={"topic_prefix": f"demo-{run_dir.name.lower()}-"})
        elif options.engine == "kafka":
            from stream.local.kafka_cluster import DEFAULT_KAFKA_VERSION, KafkaCluster

            console.print(
                f"broker: starting Apache Kafka {DEFAULT_KAFKA_VERSION} (one KRaft node; the first run "
                "fetches it from Maven Central)"
            )
            cluster = stack.enter_context(KafkaCluster(1, log_dir=run_dir))
            bootstrap = cluster.bootstrap
            started_pids.append(f"the broker (pid {cluster.pid})")
            console.print(f"broker: Apache Kafka {DEFAULT_KAFKA_VERSION} on {bootstrap} (pid {cluster.pid})")
        else:
            broker = stack.enter_context(EmbeddedBroker(free_port(), run_dir))
            bootstrap = broker.bootstrap
            started_pids.append(f"the broker (pid {broker.pid})")
            console.print(f"broker: embedded Tansu on {bootstrap} (pid {broker.pid})")
        settings = settings.model_copy(update={"bootstrap_servers": bootstrap})
        ensure_topics(confluent_config(settings, bootstrap), topic_specs(settings))

        from training.launcher import LaunchPolicy, RetrainLauncher, SubprocessLauncher, child_env, settings_env

        worker_vars = {
            **settings_env(settings),
            "CHURN_WEB_PORT": str(free_port()),
            "CHURN_LOG_LEVEL": "INFO",
            "CHURN_DRIFT_WARMUP_EVENTS": str(options.warmup_events),
        }
        worker = WorkerProcess(worker_vars, run_dir / "worker.log").start()
        stack.callback(worker.stop)
        started_pids.append(f"the worker (pid {worker.pid})")
        console.print(f"worker: pid {worker.pid}, http://127.0.0.1:{worker.web_port}/metrics, log {worker.log_path}")
        worker.wait_serving()

        sim = SimConfig(
            n_customers=options.customers,
            days=options.days,
            seed=options.seed,
            scenario=None if options.stable else options.scenario,
            onset_day=options.onset_day,
        )
        world = run_dir / "world.json"  # the job measures the simulator's oracle on its holdout
        world.write_text(sim.to_json())
        jobs = SubprocessLauncher(run_dir, child_env(settings_env(settings)))
        launcher_settings = settings
        if options.shadow:  # the demo's rule, and the evidence from its worker
            launcher_settings = settings.model_copy(
                update={
                    "shadow_min_labels": SHADOW_MIN_LABELS,
                    "shadow_margin": SHADOW_MARGIN,
                    "shadow_deadline_s": SHADOW_DEADLINE_S,
                    "shadow_metrics_urls": f"http://127.0.0.1:{worker.web_port}/metrics",
                }
            )
        # A rejected job is retried by the next harmful alert after RETRY_COOLDOWN_S, with more matured data;
        # a promoted model is not replaced within the run: the demo closes the loop once.
        launcher = RetrainLauncher(
            launcher_settings,
            jobs,
            LaunchPolicy(cooldown_s=RETRY_COOLDOWN_S, promoted_cooldown_s=math.inf),
            state_path=run_dir / "launcher-state.json",
            learn_since_drift_s=options.timeout_s,
            job_args=("--window-days", f"{options.window_days:g}", "--oracle-world", str(world)),
            stage="shadow" if options.shadow else "promote",
            judge_every_s=SHADOW_JUDGE_S,
        )
        stop = threading.Event()
        # The launcher outlives the publishing: it must still see the job it launched end.
        launcher_stop = threading.Event()
        stack.callback(lambda: started_pids.extend(f"the retraining job (pid {pid})" for pid in jobs.stop_all()))
        launcher_thread = threading.Thread(
            target=launcher.run, kwargs={"stop": launcher_stop}, name="launcher", daemon=True
        )
        launcher_thread.start()
        stack.callback(launcher_thread.join, 15)
        stack.callback(launcher_stop.set)  # runs first: the callbacks unwind in reverse

        pub = Published()
        producer = threading.Thread(
            target=produce, args=(settings, sim, lambda: story.seconds_per_day, stop, pub), name="producer", daemon=True
        )
        stack.callback(producer.join, 15)
        stack.callback(stop.set)  # runs first: the callbacks unwind in reverse
        producer.start()
        world = (
            f"a stable world for {options.days} days"
            if options.stable
            else f"{options.scenario} from day {options.onset_day}"
        )
        console.print(
            f"simulator: {options.customers:,} customers, {world}, {options.seconds_per_day:g}s per day; "
            "launcher: one job at a time, on alerts that judge the model hurt"
            + (f"; candidates go to @{settings.shadow_alias}: {shadow_rule_text()}" if options.shadow else "")
        )

        watcher = Watcher(settings, sim.start.timestamp())
        stack.callback(watcher.close)
        seen = watcher.seen
        drain = Drain(deadline=time.monotonic() + options.timeout_s)
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while True:
                watcher.poll(0.5)
                watcher.scrape(worker)
                worker.check_alive()
                _advance(story, seen, launcher, options, settings.horizon_days, console, watcher)
                live.update(
                    render(
                        options, seen, pub, story, time.monotonic() - started, settings.drift_psi_threshold, watcher.day
                    )
                )
                if on_progress is not None:
                    on_progress(seen, story)
                if pub.error:
                    raise ChurnError(f"the simulator stopped: {pub.error}")
                swapped = (
                    story.promoted_version and seen.by_version[story.promoted_version] >= options.after_swap_events
                )
                dropped = story.shadow_decision.get("action") == "drop" and story.shadow_decision.get("announced")
                if story.shadow_decision:
                    launcher_stop.set()  # the challenger's story is told: no job after it
                job_over = story.launches and launcher.state.running is None and not launcher.state.shadow
                if (swapped or dropped or (pub.done and (job_over or not seen.alerts))) and not stop.is_set():
                    stop.set()  # the story is told: stop publishing, let the worker drain
                # A job that has promoted is writing its last records: wait for it to end, so the
                # summary has its outcome.
                finishing = story.promoted_version and launcher.state.running is not None
                drained = len(seen.event_ids) >= pub.sent
                if stop.is_set() and pub.done and drained and not finishing:
                    break
                now = time.monotonic()
                drain.observe(now, len(seen.event_ids))
                if drain.timed_out(now):
                    stop.set()
                    if pub.done and drain.gives_up(now, drained):
                        break
        console.line()
        return summarize(options, seen, pub, story, launcher, time.monotonic() - started, run_dir)


def _advance(
    story: Story,
    seen: Observed,
    launcher,
    options: DemoOptions,
    horizon_days: float,
    console: Console,
    watcher: Watcher,
) -> None:
    """Turn what was observed into milestones (printed once each)."""
    if seen.alerts and story.first_alert_day is None:
        first = seen.alerts[0]
        story.first_alert_day = watcher.day(first.window_end.timestamp())
        story.first_alert_at = time.monotonic()
        console.print(
            f"first drift alert: {first.detector} ({first.kind}, {first.severity}) at stream day "
            f"{story.first_alert_day:.0f}: {', '.join(f'{k} {v:.2f}' for k, v in first.features.items())}"
        )
    state = launcher.state
    if state.launches > story.launches:
        story.launches = state.launches
        job = state.running or state.last_job
        since = watcher.day(seen.alerts[0].window_start.timestamp()) if seen.alerts else 0.0
        story.needed_day = since + options.window_days + horizon_days
        console.print(
            f"retraining run {job.run} launched (pid {job.handle}) for alert {job.alert_id}: learns "
            f"the world since day {since:.0f} once labels mature (stream day ~{story.needed_day:.0f})"
        )
    training = False
    if state.running is not None:
        waiting = story.needed_day is not None and seen.score_day < story.needed_day
        training = not waiting
        story.job = f"run {state.running.run} (pid {state.running.handle}) " + (
            f"waiting for labels: stream day {seen.score_day:.0f} of {story.needed_day:.0f}"
            if waiting
            else f"training, gating (stream {TRAINING_SLOWDOWN:g}x slower meanwhile)"
        )
    elif state.last_job is not None and len(story.outcomes) < state.launches:
        story.outcomes.append(state.last_outcome)
        story.outcome = state.last_outcome
        story.result = {}
        with suppress(OSError, ValueError):
            story.result = json.loads(Path(state.last_job.result_file).read_text())
        auc = ""
        if "roc_auc" in story.result and story.result.get("production_roc_auc") is not None:
            auc = (
                f"; roc_auc {story.result['roc_auc']:.4f} vs production "
                f"{story.result['production_roc_auc']:.4f} on the same post-drift holdout"
            )
        story.job = f"run {state.last_job.run} ended: {story.outcome}{auc}"
        console.print(f"retraining {story.job}")
    if story.shadow:
        _advance_shadow(story, seen, state, console, watcher)
    promoted = [e for e in seen.model_events if e.action == "promoted"]
    if promoted and not story.promoted_version:
        story.promoted_version = promoted[-1].version
        console.print(
            f"model event: version {story.promoted_version} promoted (previous "
            f"{promoted[-1].previous_version}); the worker swaps without a restart"
        )
    if story.promoted_version and story.swap_day is None and story.promoted_version in seen.first_day_by_version:
        story.swap_day = seen.first_day_by_version[story.promoted_version]
        story.swap_at = time.monotonic()
        console.print(f"scores now carry version {story.promoted_version} (from stream day {story.swap_day:.0f})")
    story.seconds_per_day = options.seconds_per_day * (TRAINING_SLOWDOWN if training else 1.0)


def _advance_shadow(story: Story, seen: Observed, state, console: Console, watcher: Watcher) -> None:
    """The challenger's milestones: in shadow, measured, promoted or dropped (by the launcher, announced)."""
    shadowed = [e for e in seen.model_events if e.action == "shadowed"]
    if shadowed and not story.challenger_version:
        story.challenger_version = shadowed[-1].version
        console.print(
            f"model event: version {story.challenger_version} shadowed: the worker scores it beside production "
            f"to churn-scores-shadow; {shadow_rule_text()}"
        )
    if (
        story.challenger_version
        and story.shadow_from_day is None
        and seen.shadow_by_version[story.challenger_version] > 0
    ):
        story.shadow_from_day = seen.score_day
        console.print(f"shadow scores of version {story.challenger_version} from about stream day {seen.score_day:.0f}")
    measured = seen.shadow_metrics
    if (
        not story.shadow_decision
        and measured.get("challenger", {}).get("version") == story.challenger_version
        and "production" in measured
    ):
        story.metrics_at_decision = {alias: dict(m) for alias, m in measured.items()}
    end = state.last_shadow
    if end is not None and not story.shadow_decision:
        story.shadow_decision = {"action": end.action, "reason": end.reason, "at": end.at, "version": end.version}
        console.print(f"launcher: version {end.version} {end.action}: {end.reason}")
    if story.shadow_decision and not story.shadow_decision.get("announced"):
        wanted = "promoted" if story.shadow_decision["action"] == "promote" else "dropped"
        events = [e for e in seen.model_events if e.action == wanted and e.version == story.shadow_decision["version"]]
        if events:
            story.shadow_decision["announced"] = True
            story.shadow_decision["evidence"] = dict(events[-1].evidence)
            if wanted == "dropped":
                console.print(f"model event: version {events[-1].version} dropped, with its evidence")


def summarize(
    options: DemoOptions, seen: Observed, pub: Published, story: Story, launcher, seconds: float, run_dir: Path
) -> dict:
    state = launcher.state
    problems = []
    if len(seen.event_ids) < pub.sent:
        problems.append(f"{pub.sent - len(seen.event_ids)} published events unscored")
    if options.stable:
        if seen.alerts:
            problems.append(
                f"{len(seen.alerts)} drift alerts on a stable world ({dict(Counter(a.detector for a in seen.alerts))})"
            )
        if state.launches:
            problems.append(f"{state.launches} retraining jobs launched on a stable world")
    elif options.shadow:
        problems += _shadow_problems(options, seen, story, state)
    else:
        problems += _loop_problems(options, seen, story, state)
    first_alert = seen.alerts[0] if seen.alerts else None
    onset_events = pub.sent_by(options.onset_day - 1)
    return {
        "scenario": options.scenario,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "seconds": round(seconds, 1),
        "events_published": pub.sent,
        "events_scored": len(seen.event_ids),
        "scores": seen.scores,
        "silence_rescores": seen.silence_scores,
        "dead_lettered": seen.dlq,
        "stream_days": round(pub.day, 1),
        "alerts": len(seen.alerts),
        "alerts_by_detector": dict(Counter(a.detector for a in seen.alerts)),
        "first_alert": None
        if first_alert is None
        else {
            "detector": first_alert.detector,
            "kind": first_alert.kind,
            "severity": first_alert.severity,
            "harm": first_alert.harm,
            "features": first_alert.features,
            "evidence": first_alert.evidence,
            "stream_day": round(story.first_alert_day or 0.0, 1),
            "days_after_onset": round((story.first_alert_day or 0.0) - options.onset_day, 1),
            "events_after_onset": max(0, pub.sent_by(story.first_alert_day or 0.0) - onset_events),
        },
        "retraining": {
            "launches": state.launches,
            "outcomes": list(story.outcomes),
            "outcome": story.outcome,
            **story.result,
        },
        "bootstrap_version": story.bootstrap_version,
        "promoted_version": story.promoted_version,
        "swap_stream_day": None if story.swap_day is None else round(story.swap_day, 1),
        "seconds_alert_to_new_scores": (
            None
            if story.swap_at is None or story.first_alert_at is None
            else round(story.swap_at - story.first_alert_at, 1)
        ),
        "scores_by_version": dict(seen.by_version),
        "stale_scores_after_swap": seen.stale_after_swap,
        "registry": story.registry,
        "run_dir": str(run_dir),
        **({"shadow": _shadow_summary(seen, story)} if options.shadow else {}),
        "problems": problems,
    }


def _challenger_scores_before(seen: Observed, story: Story) -> int:
    """1 when churn-scores carried the challenger's version before it was promoted (or at all, if it was not)."""
    version = story.challenger_version
    first = seen.first_score_ts_by_version.get(version) if version else None
    if first is None:
        return 0
    promoted_at = story.shadow_decision.get("at") if story.shadow_decision.get("action") == "promote" else None
    return 1 if promoted_at is None or first < promoted_at else 0


def _shadow_summary(seen: Observed, story: Story) -> dict:
    return {
        "rule": {
            "min_labels": SHADOW_MIN_LABELS,
            "margin": SHADOW_MARGIN,
            "deadline_s": SHADOW_DEADLINE_S,
            "judge_every_s": SHADOW_JUDGE_S,
        },
        "challenger_version": story.challenger_version,
        "shadow_from_stream_day": None if story.shadow_from_day is None else round(story.shadow_from_day, 1),
        "shadow_scores_by_version": dict(seen.shadow_by_version),
        "metrics_in_shadow": story.metrics_at_decision,
        "decision": {k: v for k, v in story.shadow_decision.items() if k != "announced"},
        "decision_announced": bool(story.shadow_decision.get("announced")),
        "shadow_headers_on_churn_scores": seen.shadow_headers_on_scores,
        "challenger_on_churn_scores_before_promotion": _challenger_scores_before(seen, story),
    }


def _shadow_problems(options: DemoOptions, seen: Observed, story: Story, state) -> list[str]:
    """What keeps a ``--shadow`` run's loop open: alert, a candidate in shadow, both measured on the same
    labels, a decision announced with its evidence, and then the new version scoring (after a promotion);
    churn-scores must carry no shadow score, nor the challenger's before its promotion."""
    problems = []
    if not seen.alerts:
        problems.append("no drift alert")
    if not state.launches:
        problems.append("no retraining job launched")
    elif "shadowed" not in story.outcomes:
        reasons = story.result.get("reasons") or story.result.get("error") or ""
        problems.append(
            f"no retraining job registered a challenger ({', '.join(story.outcomes) or 'none ended'}: {reasons})"
        )
    if story.challenger_version and not seen.shadow_by_version[story.challenger_version]:
        problems.append(f"no shadow score of version {story.challenger_version}")
    measured = story.metrics_at_decision
    if not (measured.get("production", {}).get("labels") and measured.get("challenger", {}).get("labels")):
        problems.append("/metrics never showed both aliases measured on matured labels")
    decision = story.shadow_decision
    if not decision:
        problems.append("no shadow decision (promote or drop)")
    elif not decision.get("announced"):
        problems.append(f"the {decision['action']} decision was not announced on model-events")
    elif decision["action"] == "promote":
        if story.promoted_version != story.challenger_version:
            problems.append(f"promoted {story.promoted_version or 'nothing'}, not the challenger")
        elif story.swap_day is None:
            problems.append(f"no score carries version {story.promoted_version}")
        elif seen.by_version[story.promoted_version] < options.after_swap_events:
            problems.append(
                f"version {story.promoted_version} scored {seen.by_version[story.promoted_version]:,} events "
                f"before the stream ended (--after-swap-events {options.after_swap_events:,})"
            )
    if seen.shadow_headers_on_scores:
        problems.append(f"{seen.shadow_headers_on_scores} churn-scores records carried the shadow header")
    if _challenger_scores_before(seen, story):
        problems.append(f"churn-scores carried version {story.challenger_version} before its promotion")
    if seen.stale_after_swap:
        problems.append(f"{seen.stale_after_swap} scores by an older version after the swap")
    return problems


def _loop_problems(options: DemoOptions, seen: Observed, story: Story, state) -> list[str]:
    """What keeps a drift run's loop from being closed: alert, retraining, promotion, new scores."""
    problems = []
    if not seen.alerts:
        problems.append("no drift alert")
    if not state.launches:
        problems.append("no retraining job launched")
    if state.running is not None and not story.promoted_version:
        problems.append("the retraining job did not finish in time")
    elif story.outcome and story.outcome != "promoted" and not story.promoted_version:
        reasons = story.result.get("reasons") or story.result.get("error") or ""
        problems.append(f"the retraining job ended {story.outcome}: {reasons}")
    if not story.promoted_version:
        problems.append("no promotion")
    elif story.swap_day is None:
        problems.append(f"no score carries version {story.promoted_version}")
    elif seen.by_version[story.promoted_version] < options.after_swap_events:
        problems.append(
            f"version {story.promoted_version} scored {seen.by_version[story.promoted_version]:,} "
            f"events before the stream ended (--after-swap-events {options.after_swap_events:,}); "
            "raise --max-days or lower --after-swap-events"
        )
    if seen.stale_after_swap:
        problems.append(f"{seen.stale_after_swap} scores by an older version after the swap")
    return problems


def write_summary(summary: dict, run_dir: Path, json_path: Path | None) -> None:
    text = json.dumps(summary, indent=2, default=str)
    (run_dir / "summary.json").write_text(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text)


def print_summary(summary: dict, console: Console) -> None:
    t = Table(
        title=f"churn demo: {summary['scenario']} in {summary['seconds']:.0f}s", title_justify="left", show_header=False
    )
    t.add_row(
        "events",
        f"{summary['events_published']:,} published, {summary['events_scored']:,} scored "
        f"(+{summary['silence_rescores']:,} silence re-scores), {summary['stream_days']:.0f} days",
    )
    first = summary["first_alert"]
    t.add_row(
        "drift",
        "no alert"
        if first is None
        else f"{summary['alerts']} alerts {summary['alerts_by_detector']}; first {first['detector']} "
        f"({first['kind']}) {first['days_after_onset']:.0f} days after the onset",
    )
    r = summary["retraining"]
    line = f"{r['launches']} job(s); {r.get('outcome') or 'none ended'}"
    if r.get("roc_auc") is not None and r.get("production_roc_auc") is not None:
        line += f"; roc_auc {r['roc_auc']:.4f} vs production {r['production_roc_auc']:.4f}"
        if r.get("oracle_roc_auc") is not None:
            line += f", oracle {r['oracle_roc_auc']:.4f}"
        line += " (same post-drift holdout)"
    t.add_row("retraining", line)
    shadow = summary.get("shadow")
    if shadow is not None:
        measured = shadow["metrics_in_shadow"]
        for alias in ("production", "challenger"):
            m = measured.get(alias)
            if m:
                t.add_row(
                    f"shadow: {alias}",
                    f"v{m['version']}: ROC AUC {m.get('roc_auc', float('nan')):.4f}, log loss "
                    f"{m.get('log_loss', float('nan')):.4f}, Brier {m.get('brier', float('nan')):.4f} on "
                    f"{m.get('labels', 0):,.0f} matured labels",
                )
        decision = shadow["decision"]
        t.add_row(
            "shadow decision",
            f"{decision.get('action', 'none')} version {shadow['challenger_version'] or '-'}: "
            f"{decision.get('reason', '')}",
        )
        t.add_row(
            "churn-scores",
            f"{shadow['shadow_headers_on_churn_scores']} records with the shadow header; challenger version before "
            f"promotion: {'yes' if shadow['challenger_on_churn_scores_before_promotion'] else 'no'}; "
            f"{sum(shadow['shadow_scores_by_version'].values()):,} shadow scores on churn-scores-shadow",
        )
    t.add_row("promotion", f"version {summary['bootstrap_version']} -> {summary['promoted_version'] or '-'}")
    t.add_row(
        "scores by version",
        ", ".join(f"v{k}: {v:,}" for k, v in sorted(summary["scores_by_version"].items(), key=lambda kv: int(kv[0]))),
    )
    if summary["swap_stream_day"] is not None:
        t.add_row(
            "version change",
            f"from stream day {summary['swap_stream_day']:.0f}; "
            f"{summary['stale_scores_after_swap']} older-version scores after it",
        )
    t.add_row("registry", summary["registry"])
    t.add_row("logs", summary["run_dir"])
    console.print(t)
    if summary["problems"]:
        console.print("[bold red]not closed:[/] " + "; ".join(summary["problems"]))
    elif summary["scenario"] == STABLE:
        console.print(f"[bold green]stable:[/] {summary['stream_days']:.0f} days, 0 drift alerts, no retraining")
    elif "shadow" in summary:
        how = (
            "promotion on evidence -> new version scoring"
            if summary["shadow"]["decision"]["action"] == "promote"
            else "dropped on evidence"
        )
        console.print(f"[bold green]loop closed:[/] drift -> alert -> retraining -> shadow -> {how}")
    else:
        console.print("[bold green]loop closed:[/] drift -> alert -> retraining -> promotion -> new version scoring")


def run_all(settings: Settings, options: DemoOptions, console: Console) -> list[dict]:
    """The stable world, then every scenario, one after another; the table of them. ``ChurnError`` when
    any row did not close."""
    from dataclasses import replace

    summaries = []
    for scenario in (STABLE, *SCENARIOS):
        console.rule(f"churn demo --scenario {scenario}")
        json_path = None if options.json_path is None else options.json_path.with_suffix(f".{scenario}.json")
        try:
            summaries.append(demo_summary(settings, replace(options, scenario=scenario, json_path=json_path), console))
        except ChurnError as exc:  # the run itself failed (a broker, the simulator): no summary, a row all the same
            summaries.append({"scenario": scenario, "problems": [str(exc)]})
    console.print(scenario_table(summaries))
    if options.json_path is not None:
        options.json_path.parent.mkdir(parents=True, exist_ok=True)
        options.json_path.write_text(json.dumps(summaries, indent=2, default=str))
    failed = [s["scenario"] for s in summaries if s.get("problems")]
    if failed:
        raise ChurnError(f"the loop did not close for {', '.join(failed)} (the table above says why)")
    return summaries


def scenario_table(summaries: list[dict]) -> Table:
    """One row per run: first alert, its delay, the retraining, the AUCs, the time to new scores."""
    t = Table(title="churn demo --scenario all", title_justify="left")
    for column in (
        "scenario",
        "first alert",
        "kind",
        "severity",
        "after onset",
        "retraining",
        "AUC old / new / oracle",
        "alert to new scores",
        "closed",
    ):
        t.add_column(column)
    for s in summaries:
        first = s.get("first_alert")
        r = s.get("retraining") or {}
        auc = ""
        if r.get("roc_auc") is not None and r.get("production_roc_auc") is not None:
            oracle = r.get("oracle_roc_auc")
            auc = f"{r['production_roc_auc']:.3f} / {r['roc_auc']:.3f} / {'-' if oracle is None else f'{oracle:.3f}'}"
        after = (
            ""
            if first is None or s["scenario"] == STABLE
            else f"{first['days_after_onset']:.0f} d, {first['events_after_onset']:,} ev"
        )
        seconds = s.get("seconds_alert_to_new_scores")
        closed = (
            "no: " + "; ".join(s["problems"])
            if s.get("problems")
            else ("yes, 0 alerts" if s["scenario"] == STABLE else "yes")
        )
        t.add_row(
            s["scenario"],
            "-" if first is None else first["detector"],
            "" if first is None else first["kind"],
            "" if first is None else f"{first['severity']}{', harm' if first['harm'] else ''}",
            after,
            " → ".join(r.get("outcomes") or []) or ("-" if "launches" in r else ""),
            auc,
            "" if seconds is None else f"{seconds:.0f} s",
            closed,
        )
    return t
