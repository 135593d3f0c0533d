"""The demo's verdict: which endings count as a closed loop."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from schemas.outputs import DriftAlert
from stream.local.demo import DemoOptions, Observed, Published, Story, scenario_table, summarize

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def closed_loop(new_version_scores: int) -> tuple[Observed, Published, Story]:
    seen = Observed()
    seen.alerts.append(
        DriftAlert(
            alert_id="a1",
            detector="feature_psi",
            kind="data",
            features={"psi": 0.3},
            window_start=NOW,
            window_end=NOW,
            model_version="1",
            severity="high",
            created_at=NOW,
        )
    )
    seen.event_ids.update(f"e{i}" for i in range(100))
    seen.by_version.update({"1": 100 - min(new_version_scores, 100), "2": new_version_scores})
    seen.first_day_by_version.update({"1": 0.0, "2": 180.0})
    story = Story(bootstrap_version="1", outcome="promoted", promoted_version="2", swap_day=180.0)
    return seen, Published(sent=100, day=240.0, done=True), story


def verdict(seen, pub, story, options: DemoOptions) -> list[str]:
    launcher = SimpleNamespace(state=SimpleNamespace(launches=1, running=None))
    return summarize(options, seen, pub, story, launcher, 10.0, Path("run"))["problems"]


def test_a_closed_loop_has_no_problems():
    assert verdict(*closed_loop(60), DemoOptions(after_swap_events=50)) == []


def test_too_few_scores_by_the_new_version_is_a_problem_that_says_what_to_change():
    problems = verdict(*closed_loop(40), DemoOptions(after_swap_events=50))
    assert len(problems) == 1
    assert "version 2 scored 40 events" in problems[0] and "--max-days" in problems[0]


def test_the_scenario_table_shows_old_new_and_oracle_auc_and_why_a_row_did_not_close():
    from rich.console import Console

    seen, pub, story = closed_loop(60)
    story.result = {"roc_auc": 0.7812, "production_roc_auc": 0.7034, "oracle_roc_auc": 0.8126}
    closed = summarize(
        DemoOptions(after_swap_events=50),
        seen,
        pub,
        story,
        SimpleNamespace(state=SimpleNamespace(launches=1, running=None)),
        10.0,
        Path("run"),
    )
    console = Console(record=True, width=250)
    console.print(scenario_table([closed, {"scenario": "new_plan", "problems": ["no promotion"]}]))
    text = console.export_text()
    assert "0.703 / 0.781 / 0.813" in text
    assert "no: no promotion" in text
