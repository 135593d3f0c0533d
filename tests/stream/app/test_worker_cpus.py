"""A worker's CPU affinity (``CHURN_WORKER_CPUS``) and the bench's ``--pin`` split of the CPUs."""

import os
import threading

import pytest

from stream.app.worker import pin_to_cpus
from stream.errors import ConfigError
from stream.local.bench import pinning
from stream.settings import load_settings, parse_cpus

pytestmark = pytest.mark.unit


def test_cpu_lists_read_as_taskset_reads_them():
    available = sorted(os.sched_getaffinity(0))
    assert parse_cpus(str(available[0])) == {available[0]}
    if len(available) > 1:
        first, second = available[:2]
        assert parse_cpus(f"{first}, {second}") == {first, second}
        if second == first + 1:
            assert parse_cpus(f"{first}-{second}") == {first, second}


def test_an_empty_setting_leaves_the_affinity_alone(monkeypatch):
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: pytest.fail("affinity set"))
    assert load_settings(worker_cpus="  ").worker_cpus == ""
    assert pin_to_cpus("") is None


def test_a_pinned_worker_process_and_its_threads_run_on_those_cpus():
    original = os.sched_getaffinity(0)
    cpu = min(original)
    seen = []
    release = threading.Event()

    def older_thread():  # started before the pinning, as import-time threads are
        release.wait(5)
        seen.append(("older", os.sched_getaffinity(0)))

    older = threading.Thread(target=older_thread)
    older.start()
    try:
        assert pin_to_cpus(str(cpu)) == {cpu}
        release.set()
        older.join()
        newer = threading.Thread(target=lambda: seen.append(("newer", os.sched_getaffinity(0))))
        newer.start()
        newer.join()
        assert os.sched_getaffinity(0) == {cpu}
        assert seen == [("older", {cpu}), ("newer", {cpu})]
    finally:
        release.set()
        os.sched_setaffinity(0, original)
        for task in os.listdir(f"/proc/{os.getpid()}/task"):
            try:
                os.sched_setaffinity(int(task), original)
            except OSError:
                pass


def test_pin_gives_each_worker_a_cpu_and_keeps_the_rest_for_the_bench_and_broker():
    assert pinning(1, {0, 1}) == (["0"], {1})
    assert pinning(2, {0, 2, 5, 7}) == (["0", "2"], {5, 7})
    with pytest.raises(ConfigError, match="--pin needs more CPUs than workers"):
        pinning(1, {3})


def test_cpus_the_process_may_not_use_fail_with_the_setting_named(monkeypatch):
    def refuse(pid, cpus):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    with pytest.raises(ConfigError, match="CHURN_WORKER_CPUS: this process may not run on CPU.s. 0: Invalid argument"):
        pin_to_cpus("0")
