"""``churn``: the one command line of churn-stream.

A thin layer: each command parses its arguments, builds the settings, calls a plain
function and renders the result. A :class:`~stream.errors.ChurnError` (a user
mistake or an unreachable dependency) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from stream.errors import ChurnError
from stream.settings import Settings, load_settings

app = typer.Typer(
    name="churn",
    help="churn-stream: streaming churn scoring on Kafka with an MLflow-registered model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="Registered model versions: list and roll back.", invoke_without_command=True)
schemas_app = typer.Typer(help="JSON Schemas of the contracts.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(schemas_app, name="schemas")

console = Console()
err_console = Console(stderr=True)


def _settings() -> Settings:
    settings = load_settings()
    _configure_logging(settings.log_level)
    return settings


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


@app.command()
def broker(
    port: Annotated[Optional[int], typer.Option(help="Loopback port (default: CHURN_BROKER_PORT).")] = None,
) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, memory storage) until Ctrl-C."""
    import signal
    import threading

    from stream.broker import EmbeddedBroker
    from stream.kafka_config import confluent_config
    from stream.topics import ensure_topics, topic_specs

    settings = _settings()
    if port is not None:
        settings = settings.model_copy(update={"broker_port": port})
    with EmbeddedBroker.from_settings(settings) as running:
        ensure_topics(confluent_config(settings, running.bootstrap), topic_specs(settings))
        console.print(f"broker ready on [bold]{running.bootstrap}[/] (pid {running.pid}, log {running.log_path});"
                      " topics created; Ctrl-C stops it")
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


@app.command()
def worker() -> None:
    """Run a stream worker: featurize, score, model swaps, /metrics and lookups."""
    from stream.worker import run_worker

    run_worker(_settings())


# --- training -------------------------------------------------------------------------


@app.command()
def train(
    config: Annotated[
        Optional[Path], typer.Option("--config", "-c", help="Training config YAML (default: the bootstrap config).")
    ] = None,
) -> None:
    """Train a model, log it to MLflow, register it and pass it through the gate."""
    from training.cli import run_train

    run_train(_settings(), config, console)


@models_app.callback()
def models(ctx: typer.Context) -> None:
    """List registered versions with aliases and key metrics."""
    if ctx.invoked_subcommand is None:
        from training.cli import show_models

        show_models(_settings(), console)


@models_app.command("rollback")
def models_rollback() -> None:
    """Serve the previous production version again."""
    from training.cli import run_rollback

    run_rollback(_settings(), console)


@schemas_app.command("export")
def schemas_export(directory: Annotated[Path, typer.Argument(help="Folder to write the JSON Schema files to.")]) -> None:
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
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


def table(title: str, columns: list[str]) -> Table:
    """A results table in the CLI's style."""
    t = Table(title=title, title_justify="left")
    for column in columns:
        t.add_column(column)
    return t
