"""EmbeddedBroker failure paths, with fake binaries instead of Tansu (no Kafka needed)."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from stream.errors import BrokerError
from stream.local.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.unit


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fake-tansu"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_missing_binary(tmp_path: Path) -> None:
    broker = EmbeddedBroker(free_port(), tmp_path, binary=tmp_path / "nope")
    with pytest.raises(BrokerError, match="missing or not executable"):
        broker.start()


def test_broker_that_exits_reports_its_log_tail(tmp_path: Path) -> None:
    fake = script(tmp_path, 'echo "boom: bad storage engine" >&2; exit 3')
    broker = EmbeddedBroker(free_port(), tmp_path, binary=fake)
    with pytest.raises(BrokerError, match=r"exited with code 3(.|\n)*boom: bad storage engine"):
        broker.start()
    assert not broker.running and broker.pid is None


def test_broker_that_never_answers_times_out_and_is_stopped(tmp_path: Path) -> None:
    fake = script(tmp_path, 'echo "pretending to start"; exec sleep 30')
    broker = EmbeddedBroker(free_port(), tmp_path, binary=fake, start_timeout=0.5)
    with pytest.raises(BrokerError, match=r"did not listen(.|\n)*pretending to start"):
        broker.start()
    assert not broker.running


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    # Ignores the stop signal and listens on nothing; start() times out and stop() must SIGKILL it.
    fake = script(tmp_path, "trap '' INT TERM; echo stubborn; while :; do sleep 0.05; done")
    broker = EmbeddedBroker(free_port(), tmp_path, binary=fake, start_timeout=0.3, stop_grace=0.3)
    with pytest.raises(BrokerError):
        broker.start()
    assert not broker.running
    assert "stubborn" in broker.log_tail()


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(BrokerError, match="already in use"):
            EmbeddedBroker(port, tmp_path, binary=script(tmp_path, "exit 0")).start()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
