"""Running a stream worker: topics first, then the Faust worker with our logging."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

from stream.app import create_app
from stream.kafka_config import confluent_config
from stream.settings import Settings
from stream.topics import ensure_topics, topic_specs

log = logging.getLogger(__name__)


def tune_gc(threshold: int = 50_000) -> None:
    """Fewer garbage collections for a process that allocates per event.

    A worker allocates several objects per event (message, event, dicts, bytes) that
    die within the batch; with CPython's default threshold (700) the cyclic collector
    ran so often that its pauses were about a tenth of a busy worker's time, landing
    wherever an allocation tripped it. Everything imported and built so far is moved
    out of the collector's view (``gc.freeze``), and the youngest generation is
    collected every ``threshold`` allocations instead. Memory freed by reference
    counting (nearly all of it) is unaffected.
    """
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(threshold, second, third)


def run_worker(settings: Settings) -> None:
    """Provision topics, then run the worker until it is stopped (SIGTERM / Ctrl-C).

    Provisioning is the first broker call: security settings the broker refuses stop
    the worker there with a ``ConfigError`` naming them, before Faust starts.
    """
    import faust

    bootstrap = settings.resolved_bootstrap()
    ensure_topics(confluent_config(settings, bootstrap), topic_specs(settings))
    churn = create_app(settings, bootstrap)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    Path(churn.app.conf.datadir).mkdir(parents=True, exist_ok=True)  # Faust creates only its own subfolders
    tune_gc()
    worker = faust.Worker(
        churn.app,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    )
    log.info(
        "worker %s on %s: web on %s:%d, reachable at http://%s:%d, store %s",
        settings.app_id, bootstrap, settings.web_host, settings.web_port,
        settings.advertised_web_host(), settings.web_port, settings.store,
    )
    worker.execute_from_commandline()
