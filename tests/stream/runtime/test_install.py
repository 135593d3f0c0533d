"""The runtime changes on the real libraries: a real Faust app and consumer, no fakes.

When an upgrade of faust-streaming, mode-streaming, aiokafka or river renames or
reshapes a name the changes use, these tests fail in CI, before a worker meets it.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import subprocess
import sys
import textwrap
from contextvars import ContextVar
from pathlib import Path

import pytest
from support.private_names import library_private_names

from stream.errors import RuntimeMismatch
from stream.runtime import undecodable
from stream.runtime.drain import NEEDED as DRAIN_NEEDED
from stream.runtime.inline_delivery import CONDUCTOR_NEEDED
from stream.runtime.seek_guard import NEEDED as GUARD_NEEDED
from stream.runtime.seek_guard import SeekGuard
from stream.runtime.versions import TESTED, check_versions, installed_versions
from stream.settings import Settings

pytestmark = pytest.mark.unit

RUNTIME = Path(__file__).resolve().parents[3] / "stream" / "runtime"

#: Every method of the libraries a change wraps or calls privately, with the parameters it relies on.
SIGNATURES = {
    ("faust.App", "_new_consumer"): ["self"],
    ("faust.transport.consumer.Consumer", "_drain_messages"): ["self", "fetcher"],
    ("faust.transport.consumer.Consumer", "_wait_next_records"): ["self", "timeout"],
    ("faust.transport.consumer.Consumer", "_to_message"): ["self", "tp", "record"],
    ("faust.transport.consumer.Consumer", "_add_gap"): ["self", "tp", "offset_from", "offset_to"],
    ("faust.transport.drivers.aiokafka.AIOKafkaConsumerThread", "_create_worker_consumer"): ["self", "transport"],
    ("aiokafka.consumer.fetcher.PartitionRecords", "_unpack_records"): ["self"],
    ("faust.transport.drivers.aiokafka.Consumer", "_new_consumer_thread"): ["self"],
    ("river.drift.KSWIN", "_reset"): ["self"],
}
#: Private attributes the changes read on instances, by the object that holds them.
INSTANCE_NAMES = {
    "app": ["_transport"],
    "consumer": [
        "_read_offset",
        "_committed_offset",
        "_n_acked",
        "_buffered_partitions",
        "_commit_every",
        "_stopped",
        "_thread",
    ],
    "conductor": ["_tp_to_callback", "_tp_to_callback_lock"],
    "stream": [
        "_active_agens",
        "_channel_stop_iteration",
        "_on_message_in",
        "_on_message_out",
        "_on_stream_event_in",
        "_on_stream_event_out",
    ],
    "aiokafka consumer": ["_fetch_max_wait_ms"],
    "producer buffer queue": ["_queue"],
    "river KSWIN": ["_drift_detected"],
}


def _resolve(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)


def test_the_installed_libraries_are_in_the_tested_range():
    assert check_versions() == installed_versions()


@pytest.mark.parametrize(("where", "name"), sorted(SIGNATURES))
def test_every_wrapped_method_exists_with_the_parameters_the_change_passes(where, name):
    owner = _resolve(where)
    method = getattr(owner, name, None)
    assert method is not None, f"{where} has no {name}"
    params = list(inspect.signature(method).parameters)
    assert params[: len(SIGNATURES[(where, name)])] == SIGNATURES[(where, name)], f"{where}.{name}{params}"


@pytest.fixture
async def churn_app(tmp_path):
    from stream.app.build import create_app

    settings = Settings(bootstrap_servers="127.0.0.1:9", data_dir=tmp_path, web_port=6071)
    built = create_app(settings, tansu_quirks=True)
    yield built
    undecodable_reset = getattr(undecodable, "_reporter", None)
    if isinstance(undecodable_reset, dict):
        undecodable_reset["current"] = undecodable._log_only


async def test_a_real_app_gets_every_change_and_has_every_private_name(churn_app):
    app = churn_app.app
    consumer = app.consumer  # Faust's App._new_consumer, through every change
    conductor = app.topics
    stream = app.stream(app.topic("names-check", value_serializer="raw"))
    from aiokafka import AIOKafkaConsumer
    from river.drift import KSWIN

    client = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
    holders = {
        "app": app,
        "consumer": consumer,
        "conductor": conductor,
        "stream": stream,
        "aiokafka consumer": client,
        "producer buffer queue": app.producer.buffer.pending,
        "river KSWIN": KSWIN(),
    }
    missing = {k: [n for n in names if not hasattr(holders[k], n)] for k, names in INSTANCE_NAMES.items()}
    assert not any(missing.values()), missing
    from faust.streams import _current_event

    assert isinstance(_current_event, ContextVar)
    # every change is attached, through the worker's transport
    from stream.runtime.transport import Consumer, ConsumerThread, Transport

    assert type(app.transport) is Transport and type(consumer) is Consumer and type(consumer._thread) is ConsumerThread
    assert isinstance(consumer.seek_guard, SeekGuard) and consumer.seek_guard.consumer is consumer
    assert consumer.callback != conductor.on_message
    assert app.transport.end_offsets_config is not None and app.transport.fetch_max_wait_ms is not None  # quirks
    assert undecodable.installed()
    assert set(DRAIN_NEEDED) | set(GUARD_NEEDED) <= set(dir(consumer)) and set(CONDUCTOR_NEEDED) <= set(dir(conductor))
    await asyncio.sleep(0)


def test_every_private_name_the_runtime_uses_is_pinned_here():
    """A new private name in stream/runtime/ must be added to this file's lists."""
    pinned = {n for (_, n) in SIGNATURES} | {n for names in INSTANCE_NAMES.values() for n in names}
    pinned |= {"_current_event", "_new_consumer"}
    library = library_private_names()
    used = set()
    for path in RUNTIME.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in library and node.attr.startswith("_"):
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    used.add(node.attr)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
                "faust",
                "aiokafka",
                "mode",
            ):
                used |= {a.name for a in node.names if a.name.startswith("_")}
    assert used - pinned == set()


def test_a_version_outside_the_range_is_refused_in_one_line():
    versions = {**installed_versions(), "faust-streaming": "0.11.3"}
    with pytest.raises(RuntimeMismatch, match=r"^faust-streaming 0\.11\.3 is outside the range .*install") as info:
        check_versions(versions)
    assert "\n" not in str(info.value)


def test_churn_worker_refuses_to_start_with_a_faust_outside_the_range(tmp_path):
    """A faust-streaming 0.11.3 found first on the path (its package metadata): the worker stops at once."""
    site = tmp_path / "site"
    dist = site / "faust_streaming-0.11.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: faust-streaming\nVersion: 0.11.3\n")
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(site)!r})
        sys.argv = ["churn", "worker"]
        from stream.cli.commands import main
        main()
        """
    )
    env = {"PATH": "/usr/bin:/bin", "CHURN_BOOTSTRAP_SERVERS": "127.0.0.1:9", "CHURN_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "faust-streaming 0.11.3 is outside the range" in lines[0], done.stderr
    assert TESTED["faust-streaming"] in lines[0]
