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


def shadow_loop(action: str, challenger_first_score_at: float | None) -> tuple[Observed, Published, Story]:
    """A --shadow run: version 2 in shadow from the job, measured beside production, then ``action``."""
    seen, pub, story = closed_loop(60)
    story.shadow, story.outcomes, story.challenger_version = True, ["shadowed"], "2"
    seen.shadow_by_version["2"] = 500
    story.metrics_at_decision = {
        "production": {"version": "1", "roc_auc": 0.70, "log_loss": 0.30, "brier": 0.08, "labels": 2100.0},
        "challenger": {"version": "2", "roc_auc": 0.74, "log_loss": 0.29, "brier": 0.07, "labels": 2100.0},
    }
    story.shadow_decision = {"action": action, "reason": "why", "at": 1000.0, "version": "2", "announced": True}
    if action == "drop":
        story.promoted_version, story.swap_day = "", None
        seen.by_version = seen.by_version.__class__({"1": 100})
    if challenger_first_score_at is not None:
        seen.first_score_ts_by_version["2"] = challenger_first_score_at
    return seen, pub, story


def test_a_shadow_run_closes_on_a_promotion_or_a_drop_with_evidence():
    options = DemoOptions(after_swap_events=50, shadow=True)
    assert verdict(*shadow_loop("promote", 1000.5), options) == []
    assert verdict(*shadow_loop("drop", None), options) == []


def test_a_shadow_run_is_open_when_churn_scores_carried_the_challenger_or_a_shadow_header():
    options = DemoOptions(after_swap_events=50, shadow=True)
    assert verdict(*shadow_loop("promote", 999.0), options) == ["churn-scores carried version 2 before its promotion"]
    assert verdict(*shadow_loop("drop", 1500.0), options) == ["churn-scores carried version 2 before its promotion"]
    seen, pub, story = shadow_loop("promote", 1000.5)
    seen.shadow_headers_on_scores = 3
    assert verdict(seen, pub, story, options) == ["3 churn-scores records carried the shadow header"]
    seen, pub, story = shadow_loop("drop", None)
    story.shadow_decision = {}
    assert verdict(seen, pub, story, options) == ["no shadow decision (promote or drop)"]


def test_the_live_display_renders_with_and_without_shadow():
    from rich.console import Console

    from stream.local.demo import render

    for shadow in (False, True):
        seen, pub, story = shadow_loop("promote", 1000.5) if shadow else closed_loop(60)
        console = Console(width=160, record=True)
        console.print(render(DemoOptions(shadow=shadow), seen, pub, story, 1.0, 0.25, lambda ts: 0.0))
        text = console.export_text()
        assert ("shadow: promote at >= 2,000 matured labels" in text) is shadow
        if shadow:
            assert "0.7400" in text and "2,100" in text and "promote: why" in text
