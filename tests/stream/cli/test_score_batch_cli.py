"""``churn score-batch`` with a wrong option: one line that says what to fix, a non-zero exit, within seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.local.broker import free_port

pytestmark = pytest.mark.unit

CHURN = str(Path(sys.executable).parent / "churn")


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")}
    environment.update(env)
    return subprocess.run([CHURN, "score-batch", *args], capture_output=True, text=True, env=environment, timeout=120)


def one_line_error(proc: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    # A fresh local registry gets MLflow's own lines about creating its database first.
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "mlflow.store.db.utils" not in line]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "exactly one source"),
        (("--synthetic", "5", "--from-changelog"), "exactly one source"),
        (("--events", "/nowhere/events.jsonl"), "no such file"),
        (("--synthetic", "5", "--as-of", "yesterday"), "not an ISO 8601 time"),
        (("--synthetic", "5", "--as-of", "2026-03-01T00:00:00"), "no time zone"),
        (("--synthetic", "5", "--version", "3", "--alias", "staging"), "not both"),
        (("--synthetic", "5", "--chunk-rows", "0"), "--chunk-rows"),
    ],
)
def test_a_bad_option_is_a_usage_error(tmp_path, args, says):
    proc = run("--out", str(tmp_path / "s.parquet"), *args, CHURN_DATA_DIR=str(tmp_path))
    one_line_error(proc, 2, says)


def test_an_output_folder_that_does_not_exist(tmp_path):
    proc = run("--synthetic", "5", "--out", str(tmp_path / "no" / "s.parquet"), CHURN_DATA_DIR=str(tmp_path))
    one_line_error(proc, 2, "does not exist")


def test_no_model_under_the_alias(tmp_path):
    proc = run("--synthetic", "5", "--out", str(tmp_path / "s.parquet"), CHURN_DATA_DIR=str(tmp_path))
    one_line_error(proc, 2, "no version of churn-model has alias @production")
    assert not (tmp_path / "s.parquet").exists()


def test_a_broker_that_does_not_answer_fails_within_seconds(tmp_path):
    where = f"127.0.0.1:{free_port()}"
    began = time.monotonic()
    proc = run(
        "--from-changelog",
        "--out",
        str(tmp_path / "s.parquet"),
        CHURN_DATA_DIR=str(tmp_path),
        CHURN_BOOTSTRAP_SERVERS=where,
    )
    one_line_error(proc, 1, where)
    assert time.monotonic() - began < 20
