"""A user mistake gets one line that says what to fix, a non-zero exit and no traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

CHURN = str(Path(sys.executable).parent / "churn")


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")}
    environment.update(env)
    return subprocess.run([CHURN, *args], capture_output=True, text=True, env=environment, timeout=120)


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0]


def test_missing_config_file(tmp_path):
    proc = run("train", "--config", str(tmp_path / "missing.yaml"), CHURN_DATA_DIR=str(tmp_path))
    assert_one_line_error(proc, "config file not found", "missing.yaml", "--config")


def test_invalid_config_value(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset:\n  horizon_days: -3\n")
    proc = run("train", "--config", str(bad), CHURN_DATA_DIR=str(tmp_path))
    assert_one_line_error(proc, "dataset.horizon_days")


def test_unknown_config_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("modle:\n  kind: svm\n")
    proc = run("train", "--config", str(bad), CHURN_DATA_DIR=str(tmp_path))
    assert_one_line_error(proc, "modle")


def test_invalid_setting_names_the_variable(tmp_path):
    proc = run("models", CHURN_WEB_PORT="not-a-port", CHURN_DATA_DIR=str(tmp_path))
    assert_one_line_error(proc, "CHURN_WEB_PORT")


def test_invalid_choice_setting(tmp_path):
    proc = run("models", CHURN_SECURITY_PROTOCOL="carrier-pigeon", CHURN_DATA_DIR=str(tmp_path))
    assert_one_line_error(proc, "CHURN_SECURITY_PROTOCOL")


@pytest.mark.parametrize(
    ("cpus", "says"), [("first", "not a CPU list"), ("3-1", "not a CPU list"), ("4096", "4096 not available here")]
)
def test_worker_cpus_that_cannot_be_used(tmp_path, cpus, says):
    proc = run("worker", CHURN_WORKER_CPUS=cpus, CHURN_DATA_DIR=str(tmp_path))
    assert_one_line_error(proc, "CHURN_WORKER_CPUS", says)
    assert "Value error" not in proc.stderr


def test_unknown_command_is_a_usage_error():
    proc = run("fly")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "No such command" in proc.stderr


def test_schemas_export_writes_every_contract(tmp_path):
    proc = run("schemas", "export", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "account_event.schema.json" in names and len(names) == 6


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--scenario", "meteor"), ("--scenario", "support_surge")),
        (("--onset-day", "20"), ("--onset-day", "70 days of history")),
        (("--customers", "5"), ("--customers",)),
        (("--seconds-per-day", "0"), ("--seconds-per-day",)),
    ],
)
def test_demo_options_fail_before_anything_starts(tmp_path, args, words):
    proc = run("demo", *args, CHURN_DATA_DIR=str(tmp_path))
    assert_one_line_error(proc, *words)
    assert not (tmp_path / "demo").exists()  # nothing was trained or started


def test_retrain_since_needs_a_time_zone(tmp_path):
    proc = run("retrain", "--since", "2026-03-01T00:00:00", CHURN_DATA_DIR=str(tmp_path))
    assert_one_line_error(proc, "--since", "time zone")


@pytest.mark.parametrize(
    ("args", "words"),
    [(("--workers", "0"), ("--workers", "partition count")), (("--events", "10"), ("--events",))],
)
def test_bench_options_fail_before_anything_starts(tmp_path, args, words):
    proc = run("bench", *args, CHURN_DATA_DIR=str(tmp_path))
    assert_one_line_error(proc, *words)
    assert not (tmp_path / "bench").exists()  # no broker was started


def test_bench_pin_needs_a_cpu_beyond_the_workers(tmp_path):
    workers = str(max(64, (os.cpu_count() or 1)))  # at least as many workers as CPUs
    proc = run("bench", "--pin", "--workers", workers, CHURN_TOPIC_PARTITIONS=workers, CHURN_DATA_DIR=str(tmp_path))
    assert_one_line_error(proc, "--pin needs more CPUs than workers", f"for {workers} worker(s)")
    assert not (tmp_path / "bench").exists()


def closed_port() -> str:
    from stream.local.broker import free_port

    return f"127.0.0.1:{free_port()}"  # nothing listens there


def assert_fails_fast(args, seconds_allowed: float = 15.0, **env: str) -> subprocess.CompletedProcess:
    import time

    started = time.monotonic()
    proc = run(*args, **env)
    took = time.monotonic() - started
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert took < seconds_allowed, f"{' '.join(args)} took {took:.1f}s to fail"
    assert "Traceback" not in proc.stderr + proc.stdout
    output = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(output) <= 3, output
    assert not any("rdkafka" in line or line.startswith("%") for line in output), output
    return proc


@pytest.mark.parametrize("args", [("produce", "--max-events", "10"), ("tail",), ("launcher", "--once"), ("topics",)])
def test_broker_commands_with_nothing_on_the_port_fail_fast_naming_the_address(tmp_path, args):
    address = closed_port()
    proc = assert_fails_fast(args, CHURN_BOOTSTRAP_SERVERS=address, CHURN_DATA_DIR=str(tmp_path))
    assert address in proc.stderr and "CHURN_BOOTSTRAP_SERVERS" in proc.stderr


@pytest.mark.parametrize("args", [("models",), ("models", "rollback"), ("train",), ("retrain",), ("bench",)])
def test_registry_commands_with_no_registry_fail_fast_naming_the_address(tmp_path, args):
    uri = f"http://{closed_port()}"
    proc = assert_fails_fast(
        args, CHURN_MLFLOW_TRACKING_URI=uri, CHURN_BOOTSTRAP_SERVERS=closed_port(), CHURN_DATA_DIR=str(tmp_path)
    )
    assert (
        "CHURN_MLFLOW_TRACKING_URI" in proc.stderr and uri in proc.stderr
    ) or "CHURN_BOOTSTRAP_SERVERS" in proc.stderr


@pytest.mark.parametrize("args", [("models",), ("train",)])
def test_a_password_in_the_tracking_uri_is_never_shown(tmp_path, args):
    """Credentials in CHURN_MLFLOW_TRACKING_URI: the error names the address with ``***`` for the password,
    and the server is still asked (a URL with credentials in it is not one urllib can open)."""
    address = closed_port()
    proc = assert_fails_fast(
        args, CHURN_MLFLOW_TRACKING_URI=f"http://ci:hunter22@{address}", CHURN_DATA_DIR=str(tmp_path)
    )
    assert "hunter22" not in proc.stdout + proc.stderr
    assert f"http://ci:***@{address}" in proc.stderr and "Connection refused" in proc.stderr, proc.stderr


def test_version():
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("churn-stream ")
