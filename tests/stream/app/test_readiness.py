"""The readiness decision (model loaded x table state -> status and reasons), and what a real app reports."""

from __future__ import annotations

import itertools

import pytest

from stream.app.readiness import NO_MODEL, REBALANCING, RECOVERING, UNASSIGNED, TablesState, readiness, tables_state
from stream.settings import Settings

pytestmark = pytest.mark.unit

READY_TABLES = TablesState(actives_ready=True)
TABLE_STATES = {
    "recovered": (READY_TABLES, None),
    "recovering": (TablesState(actives_ready=False, in_recovery=True, rebalancing=True, remaining=1234), RECOVERING),
    "rebalancing": (TablesState(actives_ready=False, rebalancing=True), REBALANCING),
    "never assigned": (TablesState(actives_ready=False), UNASSIGNED),
}


@pytest.mark.parametrize(("model_version", "tables_name"), list(itertools.product([None, "3"], sorted(TABLE_STATES))))
def test_ready_only_with_a_model_and_recovered_tables(model_version, tables_name):
    tables, table_reason = TABLE_STATES[tables_name]
    status, body = readiness(model_version, tables)
    expected = ([NO_MODEL] if model_version is None else []) + ([table_reason] if table_reason else [])
    assert body["ready"] is (not expected)
    assert status == (200 if not expected else 503)
    assert body.get("reasons", []) == expected
    assert body["model_version"] == model_version
    assert body["tables"]["recovery_remaining"] == tables.remaining


def test_the_body_of_a_worker_that_is_not_ready_names_both_reasons():
    status, body = readiness(None, TABLE_STATES["recovering"][0])
    assert status == 503
    assert body["ready"] is False and body["reasons"] == ["no model loaded", "recovering tables"]
    assert body["tables"] == {
        "actives_ready": False,
        "in_recovery": True,
        "rebalancing": True,
        "recovery_remaining": 1234,
    }


def test_recovery_names_one_reason_even_while_rebalancing():
    """Faust's recovery runs inside the rebalance: the more specific reason is given."""
    _, body = readiness("1", TablesState(actives_ready=False, in_recovery=True, rebalancing=True))
    assert body["reasons"] == [RECOVERING]


@pytest.fixture
def churn_app(tmp_path):
    from stream.app.build import create_app

    settings = Settings(bootstrap_servers="127.0.0.1:9", data_dir=tmp_path, web_port=6072)
    return create_app(settings, tansu_quirks=False)


async def test_a_real_app_reads_its_state_from_faust_and_exports_it(churn_app):
    """Read from Faust's public state, moved as Faust moves it; ``churn_ready`` follows at each scrape."""
    app, metrics = churn_app.app, churn_app.metrics

    def gauge() -> float:
        return metrics.registry.get_sample_value("churn_ready")

    # Before any assignment
    assert tables_state(app) == TablesState(actives_ready=False, in_recovery=False, rebalancing=False, remaining=0)
    assert gauge() == 0.0
    # A rebalance starts (Faust's consumer calls this on revocation), then recovery reads changelogs
    app.on_rebalance_start()
    assert tables_state(app).rebalancing and not tables_state(app).actives_ready
    app.in_recovery = True  # what Recovery sets while it reads the changelogs
    assert tables_state(app).in_recovery
    app.in_recovery = False
    # Recovery completed: actives ready, rebalance over
    app.tables.on_actives_ready()
    app.on_rebalance_end()
    assert tables_state(app) == READY_TABLES
    assert gauge() == 0.0  # still no model
    churn_app.holder.current = type("Model", (), {"version": "7"})()
    assert gauge() == 1.0
    assert readiness("7", tables_state(app)) == (200, readiness("7", READY_TABLES)[1])
