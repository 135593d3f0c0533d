"""``churn``: the one command line of churn-stream.

A thin layer: each command parses its arguments, builds the settings, calls a plain
function and renders the result. A :class:`~stream.errors.ChurnError` becomes one line
on stderr: exit code 2 for a usage error (a bad argument or setting,
:class:`~stream.errors.ConfigError`), 1 for a failure at run time (a broker or registry
that does not answer, undelivered events, invalid input rows). Commands that need the
broker or the registry ask it first (:func:`_reachable`), so an address with nothing
behind it fails within seconds instead of after the clients' own retries.

``churn <command> --help`` ends with the settings that command reads: the variables of the
scopes :data:`COMMAND_SCOPES` names for it, generated from the scope classes' fields.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

from stream.errors import ChurnError, ConfigError
from stream.local.console import table
from stream.settings import (
    CommonSettings,
    DriftSettings,
    KafkaSettings,
    LauncherSettings,
    RegistrySettings,
    Scope,
    ServiceSettings,
    Settings,
    ShadowSettings,
    TrainingSettings,
    WorkerSettings,
    load_settings,
    scope_variables,
)

#: The settings scopes each command reads (``models rollback`` is the subcommand). Every command still
#: validates every ``CHURN_*`` variable at start (:func:`_settings` builds the whole :class:`Settings`).
COMMAND_SCOPES: dict[str, tuple[type[Scope], ...]] = {
    # The topics' shape, and the label horizon the training topics' retention derives from (CHURN_HORIZON_DAYS).
    "broker": (CommonSettings, KafkaSettings, DriftSettings),
    "topics": (CommonSettings, KafkaSettings, DriftSettings),
    "produce": (CommonSettings, KafkaSettings),
    "tail": (CommonSettings, KafkaSettings),
    # The changelog is named after CHURN_APP_ID; the risk bands and reasons are the worker's.
    "score-batch": (KafkaSettings, RegistrySettings, ServiceSettings, WorkerSettings),
    "bench": (KafkaSettings, RegistrySettings, ServiceSettings, WorkerSettings, DriftSettings, ShadowSettings),
    "demo": (
        KafkaSettings,
        RegistrySettings,
        ServiceSettings,
        WorkerSettings,
        DriftSettings,
        TrainingSettings,
        ShadowSettings,
    ),
    "drift-replay": (CommonSettings, DriftSettings),
    "worker": (KafkaSettings, RegistrySettings, ServiceSettings, WorkerSettings, DriftSettings, ShadowSettings),
    "train": (RegistrySettings, TrainingSettings),
    "retrain": (KafkaSettings, RegistrySettings, TrainingSettings, ShadowSettings),
    # Its own consumer and /metrics, plus what it hands to the retraining jobs it starts.
    "launcher": (KafkaSettings, ServiceSettings, RegistrySettings, TrainingSettings, LauncherSettings, ShadowSettings),
    "models": (RegistrySettings,),
    "models promote": (RegistrySettings, KafkaSettings, ServiceSettings, ShadowSettings),
    "models rollback": (RegistrySettings,),
    "acls apply": (KafkaSettings, ServiceSettings),
    "acls check": (KafkaSettings, ServiceSettings),
}


def settings_epilog(command: str) -> str:
    """The ``--help`` epilog of ``command``: the variables of its scopes, one paragraph per scope."""
    scopes = scope_variables(CommonSettings, *COMMAND_SCOPES[command])
    lines = [f"{name}: {', '.join(variables)}" for name, variables in scopes.items()]
    return "\n\n".join(["Settings it reads (environment variables, by scope):", *lines])


app = typer.Typer(
    name="churn",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(
    help="Registered model versions: list, promote out of shadow and roll back.", invoke_without_command=True
)
schemas_app = typer.Typer(help="JSON Schemas of the contracts.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(schemas_app, name="schemas")
acls_app = typer.Typer(
    help="Kafka ACLs of every role, from deploy/kafka/acls.yaml: apply them, or check one role's.",
    no_args_is_help=True,
)
app.add_typer(acls_app, name="acls")

console = Console()
err_console = Console(stderr=True)


def _settings() -> Settings:
    settings = load_settings()
    _configure_logging(settings.log_level)
    return settings


def _reachable(
    settings: Settings,
    *,
    broker: bool = False,
    registry: bool = False,
    topics: tuple[str, ...] = (),
    role: str | None = None,
):
    """Fail in one line unless the broker (and ``topics`` on it) and the registry answer, and the Kafka
    principal has ``role``'s rights (deploy/kafka/acls.yaml); the admin client."""
    admin = None
    if broker and role is not None:
        from stream.kafka.acls import require_role

        admin = require_role(settings, role, topics)
    elif broker:
        from stream.kafka.config import confluent_config
        from stream.kafka.topics import require_broker

        admin = require_broker(
            confluent_config(settings, settings.resolved_bootstrap()), [settings.topic(t) for t in topics]
        )
    if registry:
        from training.registry import check_reachable

        check_reachable(settings)
    return admin


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            console.print(f"churn-stream {version('churn-stream')}")
        except PackageNotFoundError:
            console.print("churn-stream (not installed as a package)")
        raise typer.Exit()


@app.callback()
def _main(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """churn-stream: streaming churn scoring on Kafka with an MLflow-registered model."""


def _configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        if err_console.is_terminal:
            handler: logging.Handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False)
        else:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("alembic", "mlflow", "urllib3", "git", "matplotlib"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


# --- streaming ------------------------------------------------------------------------


@app.command(epilog=settings_epilog("broker"))
def broker(
    port: Annotated[
        Optional[int],
        typer.Option(
            help="Loopback port of the (first) broker (default: "
            "CHURN_BROKER_PORT for the embedded one, a free port for "
            "Kafka)."
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="embedded (Tansu, memory storage) or kafka (Apache Kafka from Maven "
            "Central, KRaft; needs Java 17 and Maven)."
        ),
    ] = "embedded",
    nodes: Annotated[
        int,
        typer.Option(
            help="With --engine kafka: 1, or 3 brokers that are also controllers "
            "(replication factor 3, min.insync.replicas 2)."
        ),
    ] = 1,
    data_dir: Annotated[
        Optional[Path],
        typer.Option(
            help="With --engine kafka: keep the brokers' data here across "
            "restarts (default: a temporary folder, removed on "
            "stop)."
        ),
    ] = None,
    kafka_version: Annotated[
        str,
        typer.Option(
            help="With --engine kafka: the Apache Kafka release from Maven "
            "Central (3.9.1 as in compose; 4.1.1 and 4.4.0 are "
            "tested too)."
        ),
    ] = "3.9.1",
) -> None:
    """Run a local broker on loopback and create the topics, until Ctrl-C."""
    import signal
    import threading

    from stream.kafka.config import confluent_config
    from stream.kafka.topics import ensure_topics, topic_specs

    if engine not in ("embedded", "kafka"):
        raise ConfigError(f"--engine must be embedded or kafka, not {engine!r}")
    if nodes not in (1, 3) or (nodes != 1 and engine != "kafka"):
        raise ConfigError("--nodes must be 1, or 3 with --engine kafka")
    settings = _settings()
    if engine == "kafka":
        from stream.local.kafka_cluster import KafkaCluster

        running = KafkaCluster(
            nodes, version=kafka_version, data_dir=data_dir, log_dir=settings.data_dir / "logs" / "kafka", port=port
        )
        settings = settings.model_copy(update={"topic_replication": max(settings.topic_replication, nodes)})
        what = f"Apache Kafka {running.version}, {nodes} node(s)"
    else:
        from stream.local.broker import EmbeddedBroker

        if port is not None:
            settings = settings.model_copy(update={"broker_port": port})
        running = EmbeddedBroker.from_settings(settings)
        what = "the embedded broker (Tansu, memory storage)"
    with running:
        ensure_topics(confluent_config(settings, running.bootstrap), topic_specs(settings))
        console.print(
            f"{what} ready on [bold]{running.bootstrap}[/] (pid {running.pid}, log {running.log_path});"
            " topics created; Ctrl-C stops it"
        )
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                if not running.running:
                    raise ChurnError(f"the broker exited; see {running.log_path}")
        except KeyboardInterrupt:
            pass
    console.print("broker stopped")


@app.command(epilog=settings_epilog("topics"))
def topics(
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Create nothing: compare every topic's partitions, replication and the configs its spec sets "
            "(retention.ms of churn-features and churn-labels, cleanup.policy of model-events) with the "
            "broker's, print each difference on a line (topic, key, wanted, actual) and exit 1 when any differ.",
        ),
    ] = False,
) -> None:
    """Create every churn-stream topic on the configured broker (idempotent) and exit."""
    from stream.kafka.config import confluent_config
    from stream.kafka.topics import BROKER_WAIT_S, check_topics, connect_admin, ensure_topics, topic_specs

    settings = _settings()
    where = settings.resolved_bootstrap()
    specs = topic_specs(settings)
    admin = connect_admin(confluent_config(settings, where), BROKER_WAIT_S)
    if check:
        differences = check_topics(admin, specs, timeout=BROKER_WAIT_S)
        for difference in differences:
            console.print(difference.line(), highlight=False, soft_wrap=True)
        if differences:
            err_console.print(f"{len(differences)} difference(s) between the topic specs and the broker at {where}")
            raise typer.Exit(1)
        console.print(f"the {len(specs)} topics on {where} match their specs")
        return
    created = ensure_topics(admin, specs, timeout=BROKER_WAIT_S)
    console.print(f"topics ready on {where}; created: {', '.join(created) or 'none'}")
    try:
        differences = check_topics(admin, [s for s in specs if s.name not in created], timeout=BROKER_WAIT_S)
    except ChurnError as exc:  # the topics are there; what differs is advice, and may not be describable
        logging.getLogger(__name__).warning("could not compare the existing topics with their specs: %s", exc)
        return
    for difference in differences:
        console.print(f"differs from its spec: {difference.line()}", highlight=False, soft_wrap=True)
    if differences:
        console.print("existing topics keep their configs; `churn topics --check` exits 1 while they differ")


@app.command(epilog=settings_epilog("produce"))
def produce(
    customers: Annotated[int, typer.Option(help="Simulated customers.")] = 500,
    days: Annotated[int, typer.Option(help="Simulated days of event time.")] = 120,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 7,
    scenario: Annotated[
        str, typer.Option(help="Drift scenario: price_hike, support_surge, new_plan, concept_flip or none.")
    ] = "none",
    onset_day: Annotated[int, typer.Option(help="Day the scenario starts.")] = 60,
    rate: Annotated[float, typer.Option(help="Max events per second (0: unlimited).")] = 0.0,
    seconds_per_day: Annotated[float, typer.Option(help="Wall seconds per simulated day (0: no pacing).")] = 0.0,
    source: Annotated[
        Optional[Path], typer.Option("--from", help="Replay a JSONL, CSV or Parquet file instead.")
    ] = None,
    max_events: Annotated[Optional[int], typer.Option(help="Stop after this many events.")] = None,
    bad_share: Annotated[float, typer.Option(help="Share of extra invalid messages to inject (DLQ demo).")] = 0.0,
    id_prefix: Annotated[str, typer.Option(help="Prefix for simulated customer and event ids.")] = "",
    allow_invalid: Annotated[
        bool,
        typer.Option(
            help="With --from: exit 0 even when rows were invalid (they are reported and not sent either way)."
        ),
    ] = False,
) -> None:
    """Publish simulated or recorded account events to account-events."""
    from producers.cli import ProduceOptions
    from producers.cli import produce as run_produce
    from stream.kafka.topics import ACCOUNT_EVENTS

    options = ProduceOptions(
        customers=customers,
        days=days,
        seed=seed,
        scenario=None if scenario == "none" else scenario,
        onset_day=onset_day,
        rate=rate,
        seconds_per_day=seconds_per_day,
        source=source,
        max_events=max_events,
        bad_share=bad_share,
        id_prefix=id_prefix,
    )
    options.check()
    settings = _settings()
    _reachable(settings, broker=True, topics=(ACCOUNT_EVENTS,), role="producer")
    summary = run_produce(settings, options, console, err_console)
    console.print(
        f"sent {summary.sent:,}, delivered {summary.delivered:,}, failed {summary.failed + summary.pending:,}"
        f", invalid (not sent) {summary.invalid:,}"
    )
    for error in summary.errors:
        err_console.print(f"  {error}", highlight=False)
    undelivered = summary.failed + summary.pending
    if undelivered:
        raise ChurnError(
            f"{undelivered:,} of {summary.sent:,} events were not delivered to {settings.topic(ACCOUNT_EVENTS)}"
        )
    if summary.invalid and not allow_invalid:
        raise ChurnError(f"{summary.invalid:,} invalid rows were not sent (listed above; --allow-invalid accepts that)")


@app.command(epilog=settings_epilog("tail"))
def tail(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per score, for piping.")] = False,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest score, not the newest.")] = False,
    limit: Annotated[Optional[int], typer.Option("--max", help="Stop after this many scores.")] = None,
    rows: Annotated[int, typer.Option(help="Rows in the live table.")] = 20,
) -> None:
    """Show churn-scores live."""
    from stream.cli.tail import tail_scores
    from stream.kafka.topics import CHURN_SCORES

    settings = _settings()
    _reachable(settings, broker=True, topics=(CHURN_SCORES,), role="scores-consumer")
    tail_scores(settings, console, as_json=as_json, from_beginning=from_beginning, limit=limit, rows=rows)


@app.command("score-batch", epilog=settings_epilog("score-batch"))
def score_batch(
    out: Annotated[Path, typer.Option(help="The Parquet file to write (one row group per chunk).")],
    from_changelog: Annotated[
        bool, typer.Option("--from-changelog", help="Score the states the stream keeps: its customer-state changelog.")
    ] = False,
    events: Annotated[
        Optional[Path], typer.Option(help="Score the states a JSON-lines file of account events replays to.")
    ] = None,
    synthetic: Annotated[
        Optional[int], typer.Option(help="Score this many synthetic customers (copies of a simulated world's).")
    ] = None,
    as_of: Annotated[
        str,
        typer.Option(
            help="Evaluate every customer at this time (ISO 8601 with a zone); default: each at its latest "
            "event, as the stream last scored it."
        ),
    ] = "",
    version: Annotated[Optional[str], typer.Option(help="The model version to score with.")] = None,
    alias: Annotated[Optional[str], typer.Option(help="Score with the version under this alias.")] = None,
    topic: Annotated[
        Optional[str], typer.Option(help="Also publish each score (a ChurnScore, score.reason batch) to this topic.")
    ] = None,
    changelog: Annotated[
        Optional[str], typer.Option(help="The changelog topic (default: <CHURN_APP_ID>-customer-state-changelog).")
    ] = None,
    chunk_rows: Annotated[int, typer.Option(help="Customers per chunk and row group.")] = 100_000,
    seed: Annotated[int, typer.Option(help="With --synthetic: the simulated world's seed.")] = 7,
) -> None:
    """Score every known customer with @production (or a given version) into Parquet, optionally a topic."""
    from stream.cli.score_batch import ScoreBatchOptions, run_score_batch

    options = ScoreBatchOptions(
        out, from_changelog, events, synthetic, as_of, version, alias, topic, changelog, chunk_rows, seed
    )
    options.check()
    settings = _settings()
    _reachable(settings, broker=from_changelog or topic is not None, registry=True)
    run_score_batch(settings, options, console, err_console)


@app.command(epilog=settings_epilog("bench"))
def bench(
    events: Annotated[int, typer.Option(help="Events pre-produced for the throughput phase.")] = 20_000,
    customers: Annotated[int, typer.Option(help="Simulated customers.")] = 2000,
    latency_events: Annotated[int, typer.Option(help="Events in the paced latency phase.")] = 5000,
    latency_rate: Annotated[float, typer.Option(help="Events/s in the latency phase (0: half the throughput).")] = 0.0,
    workers: Annotated[int, typer.Option(help="Worker processes of the stream variant (one app).")] = 1,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the results as JSON here.")] = None,
    pin: Annotated[
        bool,
        typer.Option(
            help="Run each worker on a CPU of its own, the bench and the embedded broker on the rest (Linux)."
        ),
    ] = False,
    partitioner: Annotated[
        str,
        typer.Option(
            help="The stream's producers' partitioner: murmur2_random (each "
            "customer on its home partition) or consistent_random "
            "(librdkafka's default: the workers re-publish most events "
            "home first)."
        ),
    ] = "murmur2_random",
    engine: Annotated[
        str,
        typer.Option(
            help="The broker the bench starts when CHURN_BOOTSTRAP_SERVERS is empty: "
            "embedded (Tansu) or kafka (one Apache Kafka node from Maven "
            "Central)."
        ),
    ] = "embedded",
    shadow: Annotated[
        bool,
        typer.Option(
            "--shadow",
            help="Also run the stream with a second version under CHURN_SHADOW_ALIAS scored in shadow (the one "
            "there, or one trained once with another seed), and compare it with production-only.",
        ),
    ] = False,
) -> None:
    """Measure the stream against the per-row pattern and a raw client loop, side by side."""
    from stream.local.bench import bench as run_bench
    from stream.local.processes import stopped_by_signals

    settings = _settings()
    _reachable(settings, broker=bool(settings.bootstrap_servers), registry=True)
    with stopped_by_signals(), console.status("bench") as status:
        doc = run_bench(
            settings,
            events,
            customers,
            latency_events,
            latency_rate,
            json_path,
            lambda text: status.update(f"bench: {text}"),
            workers=workers,
            pin=pin,
            partitioner=partitioner,
            engine=engine,
            shadow=shadow,
        )
    t = table(
        f"churn bench: {events:,} events, model v{doc['model_version']}",
        ["variant", "events/s", "p50 ms", "p95 ms", "p99 ms", "x per-row"],
    )
    per_row = doc["variants"]["per_row"]["events_per_s"]
    for name, v in doc["variants"].items():
        t.add_row(
            name,
            f"{v['events_per_s']:,.0f}",
            f"{v['p50_ms']:.2f}",
            f"{v['p95_ms']:.2f}",
            f"{v['p99_ms']:.2f}",
            f"{v['events_per_s'] / per_row:,.1f}",
        )
    console.print(t)
    s = doc["variants"]["stream"]
    console.print(
        f"stream latency measured at {s['latency_rate']:,.0f} events/s; "
        f"stream/raw = {doc['ratios']['stream_over_raw']:.3f}"
    )
    b = s["latency_batches"]
    if b.get("batches"):
        console.print(
            f"in that phase {b['batches']:,} batches of {b['mean_batch_events']:,.1f} events on average; "
            f"a batch's oldest event waited {b['mean_oldest_wait_ms']:.1f} ms from its append to the start "
            f"of processing, which took {b['mean_processing_ms']:.1f} ms"
        )
    if s["worker_cpu_us_per_event"] > 0:  # NaN when too few backlog events were left to measure
        console.print(
            f"worker CPU per backlog event: {s['worker_cpu_us_per_event']:,.1f} µs (all its threads; "
            f"{1e6 / s['worker_cpu_us_per_event']:,.0f} events per CPU-second)"
        )
    cpu = s["cpu_us_per_event"]
    if cpu["paced_worker_us"] > 0 and cpu["paced_broker_us"] > 0:
        console.print(
            f"{s['broker']} broker CPU per event: {cpu['backlog_broker_us']:,.1f} µs on the backlog; "
            f"in the paced phase {cpu['paced_broker_us']:,.1f} µs, beside the worker's "
            f"{cpu['paced_worker_us']:,.1f} µs"
        )
    if "stream_shadow" in doc["variants"]:
        sh, r = doc["variants"]["stream_shadow"], doc["ratios"]
        console.print(
            f"shadow scoring (version {sh['challenger_version']}, {sh['shadow_scores']:,.0f} shadow scores on the "
            f"backlog): {sh['events_per_s']:,.0f} events/s against {s['events_per_s']:,.0f} production-only "
            f"({r['shadow_over_stream']:.3f}); worker CPU {sh['worker_cpu_us_per_event']:,.1f} against "
            f"{s['worker_cpu_us_per_event']:,.1f} µs/event ({r['shadow_cpu_over_stream']:.3f})"
        )
    sizes = doc["state_bytes"]
    pinned = f" on CPU(s) {', '.join(s['worker_cpus'])}" if s.get("worker_cpus") else ""
    console.print(
        f"producers' partitioner {s['partitioner']}: {s['rerouted']:,.0f} events re-published to their home partition"
    )
    console.print(
        f"{s['workers']} worker(s){pinned}, store {s['store']}, RSS after the backlog "
        f"{', '.join(f'{m:,.0f}' for m in s['worker_rss_mb'])} MiB; state per customer "
        f"p50 {sizes['p50']} / p99 {sizes['p99']} / max {sizes['max']} bytes "
        f"({sizes['customers']:,} customers)"
    )


@app.command(epilog=settings_epilog("demo"))
def demo(
    scenario: Annotated[
        str,
        typer.Option(
            help="Drift scenario: support_surge, price_hike, new_plan, "
            "concept_flip; none (a stable world, no alert expected); all (each "
            "in turn, then a table)."
        ),
    ] = "support_surge",
    customers: Annotated[int, typer.Option(help="Simulated customers.")] = 1000,
    onset_day: Annotated[int, typer.Option(help="Stream day the drift starts.")] = 90,
    max_days: Annotated[
        int, typer.Option(help="Simulated days at most (the demo ends once the new version has scored enough).")
    ] = 400,
    seconds_per_day: Annotated[float, typer.Option(help="Wall seconds per simulated day.")] = 0.5,
    window_days: Annotated[float, typer.Option(help="Days since the drift the retraining learns from.")] = 25.0,
    after_swap_events: Annotated[int, typer.Option(help="Events the new version scores before the demo ends.")] = 5000,
    timeout: Annotated[
        float,
        typer.Option(
            help="Seconds the stream may run before the demo gives up; the worker then still scores "
            "what was published while it makes progress."
        ),
    ] = 420.0,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the summary as JSON here.")] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="The broker the demo starts when CHURN_BOOTSTRAP_SERVERS is empty: "
            "embedded (Tansu) or kafka (Apache Kafka from Maven Central; needs "
            "Java 17 and Maven)."
        ),
    ] = "embedded",
    shadow: Annotated[
        bool,
        typer.Option(
            "--shadow",
            help="The retrained candidate goes into shadow as the challenger; the launcher promotes or drops it "
            "on matured labels, live beside production's.",
        ),
    ] = False,
) -> None:
    """The main job: broker, registry, worker, simulator, drift, retraining and promotion, live."""
    from dataclasses import replace

    from stream.local.demo import ALL, DemoOptions, run_all, run_demo

    options = DemoOptions(
        scenario=scenario,
        customers=customers,
        onset_day=onset_day,
        max_days=max_days,
        seconds_per_day=seconds_per_day,
        window_days=window_days,
        after_swap_events=after_swap_events,
        timeout_s=timeout,
        json_path=json_path,
        engine=engine,
        shadow=shadow,
    )
    if scenario == ALL:
        replace(options, scenario="none").check()
        run_all(_settings(), options, console)
    else:
        options.check()
        run_demo(_settings(), options, console)


@app.command("drift-replay", epilog=settings_epilog("drift-replay"))
def drift_replay(
    seeds: Annotated[int, typer.Option(help="Seeds per stream (each a world of its own).")] = 3,
    customers: Annotated[int, typer.Option(help="Simulated customers per stream.")] = 3000,
    stable_events: Annotated[int, typer.Option(help="Stable events after the warm-up, over all seeds.")] = 1_000_000,
    out: Annotated[Optional[Path], typer.Option(help="Also write the table (Markdown) here.")] = None,
) -> None:
    """Replay simulated streams through the drift monitor at the worker's settings: false alarms per million
    stable events, and each scenario's first alert and delay, per seed."""
    if seeds < 1 or customers < 200 or stable_events < 1:
        raise ConfigError("--seeds must be >= 1, --customers >= 200 and --stable-events >= 1")
    settings = _settings()  # a bad setting fails before the seconds the modules below take to import
    from stream.drift.monitor import DriftConfig
    from stream.local.drift_harness import Model, measure, table
    from training.config import DEFAULT_CONFIG, load_config
    from training.dataset import SNAPSHOT, label_array, model_inputs
    from training.importance import global_importance
    from training.reference import reference_distributions
    from training.train import train as fit

    console.print(f"training the bootstrap model ({DEFAULT_CONFIG.name}) to replay against")
    result = fit(load_config(DEFAULT_CONFIG))
    events = result.split.train[result.split.train[SNAPSHOT] == "event"]
    x = model_inputs(events)
    holdout = result.split.holdout
    model = Model(
        lambda frame: result.pipeline.predict_proba(frame)[:, 1],
        reference_distributions(x, result.pipeline.predict_proba(x)[:, 1]),
        dict(result.metrics),
        global_importance(result.pipeline, model_inputs(holdout), label_array(holdout)),
    )
    console.print(f"replaying {seeds} seed(s) of {customers:,} customers: stable streams and every scenario")
    rows = measure(
        model,
        DriftConfig.from_settings(settings),
        seeds=tuple(range(1, seeds + 1)),
        customers=customers,
        stable_events=stable_events,
    )
    text = table(rows)
    console.print(text)
    if out is not None:
        out.write_text(text + "\n")


@app.command(epilog=settings_epilog("worker"))
def worker() -> None:
    """Run a stream worker: featurize, score, model swaps, /metrics and lookups."""
    settings = _settings()  # a bad setting fails before the seconds Faust takes to import
    from stream.app.worker import run_worker

    run_worker(settings)


# --- training -------------------------------------------------------------------------


@app.command(epilog=settings_epilog("train"))
def train(
    config: Annotated[
        Optional[Path], typer.Option("--config", "-c", help="Training config YAML (default: the bootstrap config).")
    ] = None,
) -> None:
    """Train a model, log it to MLflow, register it and pass it through the gate."""
    from stream.cli.training import run_train
    from training.config import DEFAULT_CONFIG, load_config

    settings = _settings()
    load_config(config or DEFAULT_CONFIG)  # a bad config is a usage error, reported before any connection
    _reachable(settings, registry=True)
    run_train(settings, config, console)


@app.command(epilog=settings_epilog("retrain"))
def retrain(
    config: Annotated[
        Optional[Path], typer.Option("--config", "-c", help="Training config YAML (default: the bootstrap config).")
    ] = None,
    trigger: Annotated[
        str, typer.Option(help="Why this run starts: manual, drift or schedule (recorded with the run and version).")
    ] = "manual",
    alert_id: Annotated[str, typer.Option(help="The drift alert that triggered the run.")] = "",
    window_days: Annotated[
        Optional[float],
        typer.Option(help="Days of labelled feature-log snapshots to learn from (default: dataset.window_days)."),
    ] = None,
    since: Annotated[
        str,
        typer.Option(
            help="Learn only from snapshots at or after this event time "
            "(ISO 8601 with a zone, e.g. a drift alert's window start)."
        ),
    ] = "",
    wait_labels: Annotated[
        float,
        typer.Option(
            help="With --since: wait up to this many seconds for the labels of a full window since then to mature."
        ),
    ] = 0.0,
    result_file: Annotated[Optional[Path], typer.Option(hidden=True, help="Write the decision as JSON here.")] = None,
    termination_log: Annotated[
        Optional[Path],
        typer.Option(
            help="Also write the decision as compact JSON (at most 4 KiB) here: in a Kubernetes Job, the "
            "container's terminationMessagePath (/dev/termination-log), where the launcher reads it."
        ),
    ] = None,
    oracle_world: Annotated[
        Optional[Path],
        typer.Option(
            hidden=True,
            help="The simulated world (SimConfig JSON) that published the stream: its oracle's ROC AUC "
            "on the holdout is measured and the gate's floors are judged against it.",
        ),
    ] = None,
    stage: Annotated[
        str,
        typer.Option(
            help="production: a candidate that passes the gate is promoted. shadow: it becomes the challenger "
            "(CHURN_SHADOW_ALIAS), scored in shadow until `churn models promote --from-shadow` or the launcher "
            "promotes or drops it on matured labels.",
        ),
    ] = "production",
) -> None:
    """Retrain on the stream's feature log and labels, gate, promote or reject, publish the model event."""
    from stream.cli.training import run_retrain

    # The job checks its arguments, then asks the broker and the registry (failures reach --result-file too).
    run_retrain(
        _settings(),
        config,
        trigger,
        alert_id,
        window_days,
        result_file,
        console,
        since,
        wait_labels,
        oracle_world,
        termination_log,
        stage,
    )


@app.command(epilog=settings_epilog("launcher"))
def launcher(
    cooldown: Annotated[float, typer.Option(help="Seconds after a job ends before alerts launch another.")] = 300.0,
    every: Annotated[
        Optional[float],
        typer.Option(help="Also launch a run this many seconds after the last one started, alerts or not."),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Handle the alerts there now, wait for the job, exit.")] = False,
    backend: Annotated[
        Optional[str],
        typer.Option(
            help="Where retraining jobs run: subprocess (a local `churn retrain`) or kubernetes (a Job created "
            "through the Kubernetes API). Default: CHURN_LAUNCHER_BACKEND (subprocess)."
        ),
    ] = None,
    job_template: Annotated[
        Optional[Path],
        typer.Option(
            help="The Kubernetes Job template (default: the packaged training/launcher/retrain-job.yaml); "
            "implies --backend kubernetes."
        ),
    ] = None,
    learn_since_drift: Annotated[
        Optional[float],
        typer.Option(
            help="A drift-triggered job learns only from the world since the alert and waits up to this many "
            "seconds for those labels to mature."
        ),
    ] = None,
    retrain_on: Annotated[
        str, typer.Option(help="harm: launch only for alerts that judge the serving model hurt; any: for every alert.")
    ] = "harm",
    stage: Annotated[
        Optional[str],
        typer.Option(
            help="promote: a job promotes a candidate that passes its gate; shadow: it registers it as the "
            "challenger, which the launcher then promotes or drops on matured labels. Default: CHURN_LAUNCHER_STAGE."
        ),
    ] = None,
) -> None:
    """Turn drift alerts into retraining jobs: single-flight, with a cooldown."""
    from stream.cli.training import run_launcher

    run_launcher(
        _settings(), cooldown, every, once, job_template, console, learn_since_drift, retrain_on, backend, stage
    )


@models_app.callback(epilog=settings_epilog("models"))
def models(ctx: typer.Context) -> None:
    """List registered versions with aliases and key metrics."""
    if ctx.invoked_subcommand is None:
        from stream.cli.training import show_models

        settings = _settings()
        _reachable(settings, registry=True)
        show_models(settings, console)


@models_app.command("promote", epilog=settings_epilog("models promote"))
def models_promote(
    from_shadow: Annotated[
        bool,
        typer.Option(
            "--from-shadow",
            help="Promote the challenger if it has beaten production on at least CHURN_SHADOW_MIN_LABELS matured "
            "labels by CHURN_SHADOW_MARGIN (read from the workers' /metrics, CHURN_SHADOW_METRICS_URLS); drop it "
            "once CHURN_SHADOW_DEADLINE_S has passed; otherwise say why it waits.",
        ),
    ] = False,
    drop: Annotated[bool, typer.Option("--drop", help="With --from-shadow: drop the challenger now.")] = False,
) -> None:
    """Promote a challenger out of shadow on the evidence of matured labels (or drop it)."""
    if not from_shadow:
        raise typer.BadParameter("only --from-shadow is supported: a retrained model is promoted by its own gate")
    from stream.cli.training import run_promote_from_shadow

    settings = _settings()
    _reachable(settings, registry=True)
    run_promote_from_shadow(settings, console, drop)


@models_app.command("rollback", epilog=settings_epilog("models rollback"))
def models_rollback() -> None:
    """Serve the previous production version again."""
    from stream.cli.training import run_rollback

    settings = _settings()
    _reachable(settings, registry=True)
    run_rollback(settings, console)


@acls_app.command("apply", epilog=settings_epilog("acls apply"))
def acls_apply(
    user: Annotated[
        list[str] | None,
        typer.Option("--user", help="ROLE=NAME: the SCRAM user of a role, instead of the file's (repeatable)."),
    ] = None,
) -> None:
    """Create every role's ACLs on the broker (run as a super user; idempotent)."""
    from stream.kafka.acls import ACLS_FILE, apply_acls, parse_users

    settings = _settings()
    admin = _reachable(settings, broker=True)
    applied = apply_acls(admin, settings, parse_users(user or []))
    for role, count in applied.items():
        console.print(f"{role}: {count} ACL bindings")
    console.print(f"applied {sum(applied.values())} bindings from {ACLS_FILE.name}")


@acls_app.command("check", epilog=settings_epilog("acls check"))
def acls_check(
    role: Annotated[str, typer.Argument(help="producer, worker, launcher, retrain or scores-consumer")],
) -> None:
    """Check that the connecting principal has every right ROLE needs; one line per missing right."""
    from stream.kafka.acls import missing_rights

    settings = _settings()
    admin = _reachable(settings, broker=True)
    missing = missing_rights(admin, settings, role)
    for right in missing:
        console.print(f"missing: {right}")
    if missing:
        raise typer.Exit(1)
    console.print(f"{role}: every right present")


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Argument(help="Folder to write the JSON Schema files to.")],
) -> None:
    """Write the JSON Schema of every contract into DIRECTORY."""
    from schemas.export import export

    for path in export(directory):
        console.print(f"wrote {path}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except ChurnError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
