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
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False)
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("alembic", "mlflow", "urllib3", "git", "matplotlib"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


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
