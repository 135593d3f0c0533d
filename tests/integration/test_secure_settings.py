"""A worker whose Kafka security settings do not match the broker stops at once, saying which setting.

The session broker is a plaintext listener. A worker told to speak SASL (over plaintext
or TLS) to it must exit within seconds, non-zero, with one line on stderr that names
``CHURN_SECURITY_PROTOCOL``, no traceback and no password; SASL without credentials must
fail before any connection, naming ``CHURN_SASL_USERNAME``.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from support import CHURN, isolated_env

from stream.kafka.topics import CONNECTION_SETUP_MS

pytestmark = pytest.mark.integration

PASSWORD = "not-the-real-one-7f3a"
# A failing start may take the worker's start-up (interpreter and imports: 1.5 s on a
# quick machine, over 10 s on a loaded one) a few times over, for its imports and the
# app it builds before connecting, plus the connection setup timeout that a TLS
# handshake with a plaintext listener runs into. A worker that retried instead of
# failing would take the subprocess timeout (60 s).
STARTUPS_ALLOWED = 2.5
MARGIN_S = 5.0


def run_worker(env: dict[str, str], timeout: float = 60.0) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    done = subprocess.run(
        [CHURN, "worker"], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout
    )
    return done, time.monotonic() - start


def secure_env(kafka_bootstrap: str, tmp_path, **over: str) -> dict[str, str]:
    return isolated_env(kafka_bootstrap, tmp_path, "secure", **over)


def assert_one_line_naming(done: subprocess.CompletedProcess[str], variable: str) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0, f"exited 0; stderr:\n{done.stderr}"
    assert "Traceback" not in done.stderr + done.stdout
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{done.stderr[:3000]}"
    assert variable in lines[0], lines[0]
    assert PASSWORD not in done.stderr + done.stdout
    return lines[0]


@pytest.fixture(scope="module")
def fail_fast_s(kafka_bootstrap, tmp_path_factory) -> float:
    """Seconds a worker may take to fail on a connection: from its start-up on this machine, measured
    as a worker that fails at its settings (missing SASL credentials) plus the imports it makes after them."""
    env = secure_env(
        kafka_bootstrap,
        tmp_path_factory.mktemp("startup"),
        CHURN_SECURITY_PROTOCOL="SASL_SSL",
        CHURN_SASL_USERNAME="",
        CHURN_SASL_PASSWORD="",
    )
    done, settings_s = run_worker(env)
    assert_one_line_naming(done, "CHURN_SASL_USERNAME")
    # The settings fail before the worker's imports; its start-up is both.
    began = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", "import stream.app.worker"], env=env, check=True, timeout=120, stdin=subprocess.DEVNULL
    )
    startup = settings_s + time.monotonic() - began
    return STARTUPS_ALLOWED * startup + CONNECTION_SETUP_MS / 1000 + MARGIN_S


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_worker_against_a_plaintext_broker_fails_fast_naming_the_protocol(
    kafka_bootstrap, tmp_path, protocol, fail_fast_s
):
    env = secure_env(
        kafka_bootstrap,
        tmp_path,
        CHURN_SECURITY_PROTOCOL=protocol,
        CHURN_SASL_USERNAME="svc-churn",
        CHURN_SASL_PASSWORD=PASSWORD,
    )
    done, seconds = run_worker(env)
    line = assert_one_line_naming(done, "CHURN_SECURITY_PROTOCOL")
    assert f"CHURN_SECURITY_PROTOCOL={protocol}" in line
    assert seconds < fail_fast_s, f"took {seconds:.1f}s to fail (allowed {fail_fast_s:.1f}s): {line}"
    print(f"{protocol}: exit {done.returncode} after {seconds:.1f}s: {line}")


@pytest.mark.parametrize(("user", "missing"), [("", "CHURN_SASL_USERNAME"), ("svc-churn", "CHURN_SASL_PASSWORD")])
def test_sasl_without_credentials_fails_at_settings(kafka_bootstrap, tmp_path, user, missing, fail_fast_s):
    env = secure_env(
        kafka_bootstrap,
        tmp_path,
        CHURN_SECURITY_PROTOCOL="SASL_SSL",
        CHURN_SASL_USERNAME=user,
        CHURN_SASL_PASSWORD="",
    )
    done, seconds = run_worker(env)
    line = assert_one_line_naming(done, missing)
    assert "invalid setting" in line
    assert seconds < fail_fast_s
