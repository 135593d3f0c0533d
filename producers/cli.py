"""``churn produce``: the simulator or a file of events, published with progress."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from producers.faults import KINDS, bad_message
from producers.publisher import Publisher, PublishSummary
from producers.replay import read_events
from producers.simulator import SCENARIOS, SimConfig, Simulator, paced
from stream.errors import ConfigError
from stream.settings import Settings


@dataclass(frozen=True)
class ProduceOptions:
    customers: int = 500
    days: int = 120
    seed: int = 7
    scenario: str | None = None
    onset_day: int = 60
    rate: float = 0.0
    seconds_per_day: float = 0.0
    source: Path | None = None
    max_events: int | None = None
    bad_share: float = 0.0
    id_prefix: str = ""

    def check(self) -> None:
        if self.scenario is not None and self.scenario not in SCENARIOS:
            raise ConfigError(f"--scenario must be one of {', '.join(SCENARIOS)} or none, not {self.scenario!r}")
        if self.source is not None and not self.source.is_file():
            raise ConfigError(f"--from {self.source}: no such file")
        if not 0.0 <= self.bad_share < 1.0:
            raise ConfigError("--bad-share must be at least 0 and below 1")
        if self.rate < 0 or self.seconds_per_day < 0:
            raise ConfigError("--rate and --seconds-per-day must not be negative")
        if self.customers < 1 or self.days < 1:
            raise ConfigError("--customers and --days must be at least 1")


def _simulated(options: ProduceOptions) -> Iterator[object]:
    config = SimConfig(
        n_customers=options.customers,
        days=options.days,
        seed=options.seed,
        scenario=options.scenario,
        onset_day=options.onset_day,
        id_prefix=options.id_prefix,
    )
    sim = Simulator(config)
    return paced(sim.events(), options.seconds_per_day, start=config.start)


#: Invalid rows of a file listed one by one; the rest are counted.
LISTED_ROWS = 20


def produce(
    settings: Settings, options: ProduceOptions, console: Console, err_console: Console | None = None
) -> PublishSummary:
    """Publish the chosen events; returns what was delivered, failed and refused.

    With ``options.source``, each invalid row of the file is reported on ``err_console``
    with its number and reason (the first :data:`LISTED_ROWS`), counted as invalid and
    not sent; the valid rows are sent.
    """
    options.check()
    err_console = err_console or console
    rng = random.Random(options.seed)
    bad = invalid_rows = 0
    with Publisher.from_settings(settings, settings.resolved_bootstrap(), rate=options.rate) as publisher:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            task = bar.add_task("publishing", total=options.max_events)
            if options.source is not None:
                rows = read_events(options.source)
                for item in itertools.islice(rows, options.max_events):
                    if item.event is not None:
                        publisher.publish(item.event)
                    else:
                        invalid_rows += 1
                        if invalid_rows <= LISTED_ROWS:
                            err_console.print(
                                f"{options.source} row {item.row}: {item.error}", highlight=False, soft_wrap=True
                            )
                    bar.advance(task)
                if invalid_rows > LISTED_ROWS:
                    err_console.print(
                        f"{options.source}: {invalid_rows - LISTED_ROWS:,} more invalid rows", highlight=False
                    )
            else:
                for event in itertools.islice(_simulated(options), options.max_events):
                    if options.bad_share and rng.random() < options.bad_share:
                        kind = KINDS[bad % len(KINDS)]
                        publisher.publish_raw(event.customer_id, bad_message(kind, bad, event.customer_id))
                        bad += 1
                    publisher.publish(event)
                    bar.advance(task)
            bar.update(task, description="waiting for delivery reports")
            summary = publisher.flush(60)
            bar.update(task, description="done")
    return dataclasses.replace(summary, invalid=summary.invalid + invalid_rows)
