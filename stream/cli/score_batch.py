"""``churn score-batch``: the options checked, the source and sinks built, a progress bar, the summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stream.cli.times import parse_instant
from stream.errors import ConfigError
from stream.settings import Settings


@dataclass(frozen=True)
class ScoreBatchOptions:
    out: Path
    from_changelog: bool = False
    events: Path | None = None
    synthetic: int | None = None
    as_of: str = ""
    version: str | None = None
    alias: str | None = None
    topic: str | None = None
    changelog: str | None = None
    chunk_rows: int = 100_000
    seed: int = 7

    def check(self) -> float | None:
        """Raise :class:`ConfigError` for a bad combination; the as-of in epoch seconds (None: none)."""
        chosen = [name for name, on in self._sources().items() if on]
        if len(chosen) != 1:
            raise ConfigError("give exactly one source: --from-changelog, --events FILE or --synthetic N")
        if self.events is not None and not self.events.is_file():
            raise ConfigError(f"--events {self.events}: no such file")
        if self.synthetic is not None and self.synthetic < 1:
            raise ConfigError("--synthetic must be at least 1")
        if self.changelog and not self.from_changelog:
            raise ConfigError("--changelog names the topic --from-changelog reads; give --from-changelog too")
        if self.version is not None and self.alias is not None:
            raise ConfigError("give --version or --alias, not both")
        if self.chunk_rows < 1:
            raise ConfigError("--chunk-rows must be at least 1")
        if not self.out.parent.is_dir():
            raise ConfigError(f"--out {self.out}: folder {self.out.parent} does not exist")
        return parse_as_of(self.as_of)

    def _sources(self) -> dict[str, bool]:
        return {
            "changelog": self.from_changelog,
            "events": self.events is not None,
            "synthetic": self.synthetic is not None,
        }


def parse_as_of(text: str) -> float | None:
    """``--as-of`` as epoch seconds kept to the millisecond; empty means none.

    >>> parse_as_of("2026-03-01T00:00:00.0004Z")
    1772323200.0
    """
    ts = parse_instant("--as-of", text)
    return None if ts is None else round(ts, 3)


def run_score_batch(settings: Settings, options: ScoreBatchOptions, console: Console, err_console: Console):
    """Score the base as ``options`` say; print the summary. Returns the :class:`BatchSummary`."""
    from stream.batch.output import ParquetSink, TopicSink
    from stream.batch.run import BatchOptions, load_model, run_batch
    from stream.batch.sources import ChangelogSource, EventsFile, SyntheticBase, changelog_topic
    from stream.kafka.config import confluent_config
    from stream.kafka.topics import require_broker

    as_of = options.check()
    config = confluent_config(settings, settings.resolved_bootstrap())
    topics = []
    if options.from_changelog:
        topics.append(options.changelog or changelog_topic(settings.app_id))
    if options.topic:
        topics.append(options.topic)
    if topics:
        require_broker(config, topics)
    model = load_model(settings, options.version, options.alias)
    source: ChangelogSource | EventsFile | SyntheticBase
    if options.from_changelog:
        source = ChangelogSource(config, topics[0])
        what = f"the changelog {topics[0]}"
    elif options.events is not None:
        source = EventsFile(options.events, as_of)
        what = f"events replayed from {options.events}"
    else:
        assert options.synthetic is not None
        source = SyntheticBase(options.synthetic, seed=options.seed)
        what = f"{options.synthetic:,} synthetic customers"
    when = "each at its latest event" if as_of is None else f"as of {_iso(as_of)}"
    console.print(f"scoring {what}, {when}, with {model.name} version {model.version}", highlight=False)
    sink = ParquetSink(options.out)
    publisher = TopicSink(config, options.topic) if options.topic else None
    batch = BatchOptions(as_of, options.chunk_rows, settings.score_reasons, settings.risk_medium, settings.risk_high)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("customers", total=source.total)

        def advance(n: int) -> None:
            progress.update(task, advance=n, total=source.total)

        summary = run_batch(source, model, sink, batch, publisher, advance)
    rates = summary.rates()
    skipped = ", ".join(f"{why} {n:,}" for why, n in sorted(summary.skipped.items())) or "none"
    console.print(
        f"{summary.rows:,} customers scored to {options.out} in {summary.chunks} row group(s); skipped: {skipped}",
        highlight=False,
    )
    set_aside = ", ".join(f"{why} {n:,}" for why, n in sorted(source.stats.counts.items()))
    if set_aside:
        console.print(f"source: {source.stats.records:,} records read; {set_aside}", highlight=False)
    for error in source.stats.errors:
        err_console.print(f"  {error}", highlight=False)
    if publisher is not None:
        console.print(f"{publisher.sent:,} scores published to {options.topic}", highlight=False)
    steps = ", ".join(f"{k} {v:.2f}s" for k, v in summary.seconds.items() if v)
    console.print(
        f"customers/s: scoring (model, bands, reasons) {rates['score']:,.0f}, features {rates['featurize']:,.0f}, "
        f"write {rates['write']:,.0f}; total {rates['total']:,.0f} over {summary.wall_s:.1f}s ({steps}); "
        f"peak RSS {summary.peak_rss_mb:,.0f} MiB ({summary.peak_rss_start_mb:,.0f} MiB before the first chunk)",
        highlight=False,
    )
    return summary


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()
