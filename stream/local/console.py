"""What the local tools and the CLI print: a transient progress line for the training jobs' stages, tables in one style."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

#: What each stage of a training job (``progress(stage, done)``) is called on screen.
STAGES = {
    "simulate": "simulating customers and replaying their events",
    "wait": "waiting for the labels since the drift to mature",
    "read": "reading the feature log and labels to their end",
    "dataset": "building point-in-time snapshots",
    "split": "splitting by customer",
    "fit": "fitting the pipeline",
    "champion": "evaluating the production model on the same holdout",
    "log": "logging the run and registering the candidate",
    "publish": "publishing the model event",
    "drift": "logging the drift report",
    "done": "done",
}


@contextmanager
def stages(console: Console, first: str) -> Iterator[Callable[[str, float], None]]:
    """A transient progress line; yields the ``progress(stage, done)`` callback the jobs take."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(STAGES[first], total=None)

        def progress(stage: str, done: float) -> None:
            text = STAGES.get(stage, stage)
            if stage == "simulate" and done:
                text = f"{text} ({int(done):,} events)"
            elif stage == "wait":
                text = f"{text} ({done:.1f} days of event time to go)"
            bar.update(task, description=text)

        yield progress


def table(title: str, columns: list[str]) -> Table:
    """A results table in the CLI's style."""
    t = Table(title=title, title_justify="left")
    for column in columns:
        t.add_column(column)
    return t
