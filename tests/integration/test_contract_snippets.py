"""The producer and consumer snippets of ``docs/contracts.md`` run, as written, against a real worker.

Each snippet is taken from the document (``<!-- snippet: NAME -->`` before its code block)
with only the example ids made unique, run with the outside client it is written for
(Debian's kcat, Java with the Kafka jars, Go with franz-go, Python with confluent-kafka),
and checked from the outside: what the producers send is scored, the consumers print
those scores, and the DLQ snippet shows why a bad event was rejected. The worker uses the
topics' default names, as the snippets do. It runs on Apache Kafka, as the document says: kcat
and franz-go cannot talk to the embedded broker.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from support import TopicReader, isolated_env, provision, start_worker, wait_for
from support.tiers import missing_tier

# The document promises these on Apache Kafka; kcat and franz-go cannot talk to the embedded broker.
pytestmark = [pytest.mark.integration, pytest.mark.tiers("kafka")]

DOC = Path(__file__).resolve().parents[2] / "docs" / "contracts.md"
SNIPPET = re.compile(r"<!-- snippet: (?P<name>[\w-]+) -->\n```(?P<lang>\w+)\n(?P<code>.*?)```", re.S)
FRANZ_GO = "github.com/twmb/franz-go@v1.22.3"


def snippets() -> dict[str, str]:
    return {m["name"]: m["code"] for m in SNIPPET.finditer(DOC.read_text())}


def event_ids(code: str) -> set[str]:
    return set(re.findall(r"evt-\w+-\d{4}", code))


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:6]


def unique(code: str, tag: str) -> str:
    """The snippet with its example customer and event ids made this run's own."""
    return code.replace("cust-00042", f"cust-{tag}").replace("evt-00", f"evt-{tag}-00")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing_tier(f"outside client {name}", f"{name} is not installed (make test installs it where it can)")
    return path


def run(
    command: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess:
    done = subprocess.run(command, input=stdin, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command[0]} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def follow(command: list[str], env: dict[str, str], cwd: Path, wanted: set[str], timeout: float = 120.0) -> str:
    """Run a consumer that never ends until its output shows every one of ``wanted``; that output."""
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        while time.monotonic() < deadline and not all(w.encode() in output for w in wanted):
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                time.sleep(0.1)
                continue
            if not chunk:  # the consumer exited
                break
            output += chunk
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
    text = output.decode(errors="replace")
    missing = {w for w in wanted if w not in text}
    assert not missing, f"{command[0]} never printed {sorted(missing)}; it printed:\n{text[-3000:]}"
    return text


def java_tools(bin_dir: Path) -> None:
    """``kafka-console-producer.sh`` and ``kafka-console-consumer.sh`` on ``bin_dir``, from the Kafka jars."""
    from stream.errors import BrokerError
    from stream.local.kafka_cluster import CONSOLE_CONSUMER, CONSOLE_PRODUCER, java_command

    for script, main in (
        ("kafka-console-producer.sh", CONSOLE_PRODUCER),
        ("kafka-console-consumer.sh", CONSOLE_CONSUMER),
    ):
        try:
            command = java_command(main)
        except BrokerError as exc:
            missing_tier("outside client java", str(exc))
        path = bin_dir / script
        path.write_text("#!/bin/sh\nexec " + " ".join(f"'{part}'" for part in command) + ' "$@"\n')
        path.chmod(path.stat().st_mode | stat.S_IEXEC)


def go_program(code: str, where: Path, env: dict[str, str]) -> list[str]:
    """A Go module holding ``code`` with franz-go fetched; the command that runs it."""
    go = tool("go")
    where.mkdir()
    (where / "main.go").write_text(code)
    run([go, "mod", "init", "snippet"], env, where)
    run([go, "get", FRANZ_GO], env, where, timeout=300)
    run([go, "build", "-o", "snippet", "."], env, where, timeout=600)
    return [str(where / "snippet")]


def test_the_documented_snippets_produce_and_consume_with_real_clients(
    kafka_bootstrap, broker_kind, registry_dir, tmp_path, tag
):
    code = {name: unique(text, tag) for name, text in snippets().items()}
    assert len(code) >= 10, sorted(code)
    env_vars = isolated_env(kafka_bootstrap, registry_dir, "snippets", CHURN_TOPIC_PREFIX="", CHURN_SCORE_BATCH_MS="20")
    settings = provision(env_vars)
    worker = start_worker(env_vars, tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java_tools(bin_dir)
    env = {
        **os.environ,
        "BOOTSTRAP": kafka_bootstrap,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GOFLAGS": "-mod=mod",
    }
    outside = broker_kind != "embedded"  # on CHURN_TEST_BOOTSTRAP=<the embedded broker> too
    try:
        produced: set[str] = set()
        run([sys.executable, "-c", code["python-produce"]], env, tmp_path)
        produced |= event_ids(code["python-produce"])
        run(["bash", "-c", code["java-console-produce"]], env, tmp_path)
        produced |= event_ids(code["java-console-produce"])
        source = tmp_path / "PublishEvent.java"
        source.write_text(code["java-clients-produce"])
        from stream.local.kafka_cluster import java_command

        run(java_command(str(source)), env, tmp_path)
        produced |= event_ids(code["java-clients-produce"])
        if outside:
            run(go_program(code["go-produce"], tmp_path / "go-produce", env), env, tmp_path)
            produced |= event_ids(code["go-produce"])
            tool("kcat")
            run(["bash", "-c", code["kcat-produce"]], env, tmp_path)
            produced |= event_ids(code["kcat-produce"])
        assert len(produced) == (5 if outside else 3), produced

        scores = TopicReader(kafka_bootstrap, settings.topic("churn-scores"))
        scores.read_until(
            lambda r: {orjson.loads(x.value)["event_id"] for x in r} >= produced,
            120,
            "a score for every event the snippets sent",
        )

        # The consumers print each of those scores.
        java_out = run(["bash", "-c", code["java-console-consume"]], env, tmp_path, timeout=120).stdout
        assert produced <= set(re.findall(r"evt-\w+-\d{4}", java_out)), java_out[-2000:]
        assert "model.version:" in java_out and f"cust-{tag}" in java_out
        # The Python consumer keeps each customer's latest score by event time: the payment of 03-08.
        follow([sys.executable, "-c", code["python-consume"]], env, tmp_path, {f"evt-{tag}-0008"})
        if outside:
            follow(go_program(code["go-consume"], tmp_path / "go-consume", env), env, tmp_path, produced)
            out = run(["bash", "-c", code["kcat-consume"]], env, tmp_path, timeout=60).stdout
            assert all(f"event.id={i}" in out for i in produced), out[-2000:]
            assert "score.reason=event" in out

            # A bad event from kcat lands in the DLQ with its reason, which the DLQ snippet shows.
            bad = f'cust-{tag}|{{"event_type": "usage", "event_id": "evt-{tag}-bad", "customer_id": "cust-{tag}"}}'
            run(
                ["bash", "-c", f"printf '%s\\n' '{bad}' | kcat -b \"$BOOTSTRAP\" -t account-events -P -K '|'"],
                env,
                tmp_path,
            )

            def dlq_shows_it():
                out = run(["bash", "-c", code["kcat-dlq"]], env, tmp_path, timeout=60).stdout
                return out if f"evt-{tag}-bad" in out else None

            out = wait_for(dlq_shows_it, 60, 1.0, "the bad event in the DLQ snippet's output")
            assert "error.class=ValidationError" in out and "ts" in out
    finally:
        worker.stop()
