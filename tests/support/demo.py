"""``churn demo`` as the end-to-end tests run it: a child process on the test broker, under a topic
prefix of its own, with a registry folder that already serves the session's bootstrap model."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

from support import CHURN

from stream.settings import Settings

SECONDS_PER_DAY = 0.35


def run_demo(kafka_bootstrap: str, home: Path, bootstrap_result, args: list[str], timeout: float = 660):
    """Run ``churn demo <args>`` to its end; its summary, the settings that read what it left, and its stdout.

    The registry under ``home`` holds the bootstrap version as an earlier demo run leaves it, so the
    demo serves it and goes straight to the stream."""
    from stream.local.demo import BOOTSTRAP_TAG
    from training.config import DEFAULT_CONFIG, load_config
    from training.job import run_training

    registered = run_training(
        load_config(DEFAULT_CONFIG),
        Settings(data_dir=home / ".churn" / "demo"),
        tags={BOOTSTRAP_TAG: "bootstrap", "trigger": "bootstrap"},
        result=bootstrap_result,
    )
    assert registered.decision.promote, registered.decision.reasons
    prefix = f"e2e{uuid.uuid4().hex[:6]}-"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")}
    env.update(CHURN_DATA_DIR=str(home / ".churn"), CHURN_BOOTSTRAP_SERVERS=kafka_bootstrap, CHURN_TOPIC_PREFIX=prefix)
    summary_path = home / "summary.json"
    # A stream day every 0.35 s instead of 0.5 s: the same story in less of the suite's time (the drift
    # windows count events, so the alerts are the same).
    done = subprocess.run(
        [CHURN, "demo", "--seconds-per-day", str(SECONDS_PER_DAY), *args, "--json", str(summary_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    print(done.stdout[-4000:])
    assert done.returncode == 0, f"churn demo exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert "Traceback" not in done.stderr
    settings = Settings(data_dir=home / ".churn" / "demo", bootstrap_servers=kafka_bootstrap, topic_prefix=prefix)
    summary = json.loads(summary_path.read_text())
    assert summary["bootstrap_version"] == registered.version, "the demo did not serve the registered bootstrap"
    return summary, settings, done.stdout
