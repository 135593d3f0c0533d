"""Running a stream worker: topics first, then the Faust worker with our logging."""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path

from stream.app.build import create_app
from stream.errors import ConfigError
from stream.kafka.acls import require_rights
from stream.kafka.config import confluent_config
from stream.kafka.topics import connect_admin, ensure_topics, topic_specs
from stream.runtime.versions import check_versions
from stream.serving.registry import check_access
from stream.settings import Settings, parse_cpus

log = logging.getLogger(__name__)


def tune_gc(threshold: int = 50_000) -> None:
    """Fewer garbage collections for a process that allocates per event.

    A worker allocates several objects per event (message, event, dicts, bytes) that
    die within the batch; with CPython's default threshold (700) the cyclic collector
    ran so often that its pauses took a noticeable share of a busy worker's time,
    landing wherever an allocation tripped it. Everything imported and built so far is
    moved out of the collector's view (``gc.freeze``), and the youngest generation is
    collected every ``threshold`` allocations instead. Memory freed by reference
    counting (nearly all of it) is unaffected.
    """
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(threshold, second, third)


def pin_to_cpus(cpu_list: str) -> set[int] | None:
    """Run this process on the CPUs of ``cpu_list`` (``CHURN_WORKER_CPUS``); None when it is empty.

    Called before the worker starts its threads, which take their creator's affinity, so
    the consumer's and librdkafka's threads stay on these CPUs too; threads already
    running (started while importing) are moved as well. On two cores beside
    an embedded broker, a worker pinned to one core and the broker and its clients to
    the other kept the worker from being moved and preempted by their many short
    wake-ups (README, "Inside a worker").
    """
    if not cpu_list:
        return None
    cpus = parse_cpus(cpu_list)
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:  # e.g. outside the container's cpuset
        raise ConfigError(f"CHURN_WORKER_CPUS: this process may not run on CPU(s) {cpu_list}: {exc.strerror}") from exc
    # Threads started while importing (before this call) keep the affinity they were born with.
    tasks = Path(f"/proc/{os.getpid()}/task")
    for tid in (int(t.name) for t in tasks.iterdir()) if tasks.is_dir() else ():
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:  # the thread has ended meanwhile
            pass
    return cpus


def run_worker(settings: Settings) -> None:
    """Provision topics, then run the worker until it is stopped (SIGTERM / Ctrl-C).

    Provisioning is the first broker call: security settings the broker refuses stop
    the worker there with a ``ConfigError`` naming them, before Faust starts.
    """
    import faust

    check_versions()  # before any broker call: a Faust outside the tested range stops the start in one line
    # Credentials the registry refuses stop the start in one line; a registry that does not answer yet is
    # waited for once the worker runs ("no servable model yet").
    check_access(settings)
    cpus = pin_to_cpus(settings.worker_cpus)
    if cpus is not None:
        log.info("worker runs on CPU(s) %s", ", ".join(map(str, sorted(cpus))))
    bootstrap = settings.resolved_bootstrap()
    admin = connect_admin(confluent_config(settings, bootstrap))
    require_rights(admin, settings, "worker")  # a missing ACL stops the start in one line, before any retry loop
    ensure_topics(admin, topic_specs(settings))
    cluster_id = admin.list_topics(timeout=10).cluster_id
    quirks = settings.tansu_quirks(cluster_id)
    log.info(
        "broker cluster %s: %s",
        cluster_id,
        f"the embedded broker; working around its end offsets and fetch wait ({settings.fetch_max_wait_ms} ms)"
        if quirks
        else "Faust's and aiokafka's own offsets and fetch wait",
    )
    churn = create_app(settings, bootstrap, tansu_quirks=quirks)
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
        settings.app_id,
        bootstrap,
        settings.web_host,
        settings.web_port,
        settings.advertised_web_host(),
        settings.web_port,
        settings.store,
    )
    worker.execute_from_commandline()
