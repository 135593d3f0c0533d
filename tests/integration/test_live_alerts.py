"""The shipped ChurnWorkerDown rule, evaluated by a real Prometheus scraping a real worker.

Prometheus (Debian's ``prometheus``) runs on a free loopback port, scraping and evaluating
every second, with a rules file made from ``deploy/prometheus/rules.yml``: the
ChurnWorkerDown rule as shipped, its ``for`` shortened to 2s. The alert stays inactive
while the worker serves, fires once the worker is stopped, and resolves when a worker
serves again on the same port. The broker only has to carry the worker: one tier is enough.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support import free_port, provision, start_worker, wait_for
from support.tools import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.tiers("embedded")]

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules.yml"
ALERT = "ChurnWorkerDown"
JOB = "churn-worker"  # the scrape job the rule's expression names, as in deploy/prometheus/prometheus.yml


class Prometheus:
    """A ``prometheus`` process on ``127.0.0.1:port`` and its HTTP API."""

    def __init__(self, port: int, proc: subprocess.Popen, log: Path) -> None:
        self.port, self.proc, self.log = port, proc, log

    def get(self, path: str, **params: str) -> dict:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}{query}", timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def ready(self) -> bool:
        assert self.proc.poll() is None, f"prometheus exited {self.proc.returncode}:\n{self.log_tail()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def alerts(self, name: str) -> list[dict]:
        return [a for a in self.get("/api/v1/alerts")["alerts"] if a["labels"]["alertname"] == name]

    def rule(self, name: str) -> dict:
        groups = self.get("/api/v1/rules", type="alert")["groups"]
        return next(r for g in groups for r in g["rules"] if r["name"] == name)

    def up(self, instance: str) -> float | None:
        result = self.get("/api/v1/query", query=f'up{{job="{JOB}", instance="{instance}"}}')["result"]
        return float(result[0]["value"][1]) if result else None

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def worker_down_rule(for_: str) -> dict:
    """The shipped ChurnWorkerDown rule with its ``for`` replaced by ``for_``."""
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == ALERT:
                return {**rule, "for": for_}
    raise AssertionError(f"{ALERT} is not in {RULES}")


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator:
    """Starts Prometheus scraping a worker's port, with the shortened rule; stops it after the test."""
    binary = require_tool("prometheus")
    started: list[subprocess.Popen] = []

    def start(worker_port: int) -> Prometheus:
        (tmp_path / "rules.yml").write_text(
            yaml.safe_dump({"groups": [{"name": "churn-stream", "rules": [worker_down_rule("2s")]}]})
        )
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules.yml"],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]}],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port, log = free_port(), tmp_path / "prometheus.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        started.append(proc)
        server = Prometheus(port, proc, log)
        wait_for(server.ready, 60, 0.2, "prometheus ready")
        return server

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_worker_down_fires_when_the_worker_stops_and_resolves_when_it_is_back(stream_env, tmp_path, prometheus_for):
    provision(stream_env)
    port = int(stream_env["CHURN_WEB_PORT"])
    instance = f"127.0.0.1:{port}"
    worker = start_worker(stream_env, tmp_path)
    try:
        prometheus = prometheus_for(port)
        wait_for(lambda: prometheus.up(instance) == 1, 60, 0.2, "the worker scraped up")
        # Two evaluations after up=1 was stored: the rule has seen the worker up.
        evaluations = {prometheus.rule(ALERT).get("lastEvaluation")}

        def evaluated_twice_more() -> bool:
            evaluations.add(prometheus.rule(ALERT).get("lastEvaluation"))
            return len(evaluations) > 2

        wait_for(evaluated_twice_more, 30, 0.1, "two rule evaluations")
        assert prometheus.rule(ALERT)["state"] == "inactive"
        assert prometheus.rule(ALERT)["health"] == "ok", prometheus.rule(ALERT)
        assert prometheus.alerts(ALERT) == []

        worker.stop()

        def firing() -> list[dict]:
            return [a for a in prometheus.alerts(ALERT) if a["state"] == "firing"]

        alerts = wait_for(firing, 60, 0.2, f"{ALERT} firing")
        assert [a["labels"]["instance"] for a in alerts] == [instance]
        assert alerts[0]["labels"]["job"] == JOB and alerts[0]["labels"]["severity"] == "critical"
        assert alerts[0]["annotations"]["summary"] == f"Worker {instance} is down"

        worker = start_worker(stream_env, tmp_path, name="worker-again")  # the same CHURN_WEB_PORT
        wait_for(lambda: prometheus.up(instance) == 1, 60, 0.2, "the new worker scraped up")
        wait_for(lambda: not prometheus.alerts(ALERT), 30, 0.2, f"{ALERT} resolved")
        assert prometheus.rule(ALERT)["state"] == "inactive"
    finally:
        with contextlib.suppress(Exception):
            worker.stop()
