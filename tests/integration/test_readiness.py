"""``/ready`` on a real broker: 503 ("recovering tables") while a worker restores a large changelog, 200 after.

Worker 1 (the memory store) scores enough events that the ``customer-state`` and
``latest-score`` changelogs hold tens of thousands of records, and stops. Worker 2 (the memory
store again: it keeps nothing on disk) must restore both from the beginning. Its ``/ready`` is
polled from the moment its web port answers. The changelog's size is what makes recovery long
enough to observe; nothing in the worker is slowed or patched.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from support import WorkerProcess, lookup, produce, provision, simulated, wait_caught_up, wait_for

from schemas.events import dump_event
from stream.pipeline.features import CustomerState, apply, feature_values

pytestmark = pytest.mark.integration

# About two changelog records per event (customer-state and latest-score): some 50,000 to restore. On a
# loaded two-core machine Apache Kafka's took half a minute or more; a fast one still takes seconds,
# and /ready is polled every 20 ms.
EVENTS = 25_000
CUSTOMERS = 2_500


def probe(port: int, path: str) -> tuple[int, dict] | None:
    """``(status, JSON body)`` of ``path``; None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return None


# On Apache Kafka only: the embedded broker's recovery (its end offsets) is covered by the fault tests.
@pytest.mark.tiers("kafka")
def test_ready_is_503_while_tables_recover_and_200_once_recovered(stream_env, tmp_path, record_property):
    settings = provision(stream_env)
    bootstrap = settings.resolved_bootstrap()
    events = simulated(EVENTS, CUSTOMERS, seed=41, prefix="ready")
    assert len(events) == EVENTS

    first = WorkerProcess(stream_env, tmp_path / "first.log").start()
    try:
        first.wait_serving()
        wait_for(lambda: (probe(first.web_port, "/ready") or (0,))[0] == 200, 120, 0.2, "worker 1 ready")
        assert probe(first.web_port, "/live") == (200, {"live": True})
        produce(bootstrap, settings.topic("account-events"), [(e.customer_id.encode(), dump_event(e)) for e in events])
        wait_caught_up(bootstrap, stream_env["CHURN_APP_ID"], settings.topic("account-events"), timeout=300)
    finally:
        first.stop()

    second = WorkerProcess(stream_env, tmp_path / "second.log").start()
    seen: list[tuple[float, int, dict]] = []
    try:
        # From the moment the web port answers, every answer until the worker is ready.
        wait_for(lambda: second.check_alive() or probe(second.web_port, "/live"), 120, 0.02, "the web port answers")
        started = time.monotonic()
        live_while_recovering = None
        deadline = started + 300
        while True:
            second.check_alive()
            answer = probe(second.web_port, "/ready")
            if answer is not None:
                seen.append((time.monotonic() - started, *answer))
                if answer[0] == 200:
                    break
                if "recovering tables" in answer[1]["reasons"] and live_while_recovering is None:
                    live_while_recovering = probe(second.web_port, "/live")
            assert time.monotonic() < deadline, f"not ready within 300 s; last answers {seen[-3:]}"
            time.sleep(0.02)

        recovering = [body for _, status, body in seen if status == 503 and "recovering tables" in body["reasons"]]
        window = [t for t, status, body in seen if status == 503 and "recovering tables" in body["reasons"]]
        reasons = [tuple(body.get("reasons", ())) for _, _, body in seen]
        summary = [r for i, r in enumerate(reasons) if i == 0 or r != reasons[i - 1]]
        record_property("ready_after_s", round(seen[-1][0], 2))
        record_property("recovering_answers", len(recovering))
        assert recovering, f"/ready never said 'recovering tables': {summary}"
        most_left = max(body["tables"]["recovery_remaining"] for body in recovering)
        print(
            f"/ready answers in order (deduplicated): {summary}; 'recovering tables' from {window[0]:.1f} s to "
            f"{window[-1]:.1f} s ({len(window)} answers, at most {most_left} "
            f"records left); ready after {seen[-1][0]:.1f} s"
        )
        assert most_left > 0, recovering[:3]
        assert live_while_recovering == (200, {"live": True})  # liveness does not wait for the tables
        assert seen[-1][2]["ready"] is True and "reasons" not in seen[-1][2]
        assert seen[-1][2]["tables"] == {
            "actives_ready": True,
            "in_recovery": False,
            "rebalancing": False,
            "recovery_remaining": 0,
        }

        # Ready means recovered: every customer's features, from the changelog alone (no new events came).
        states: dict[str, CustomerState] = {}
        for e in events:
            apply(states.setdefault(e.customer_id, CustomerState()), e)
        for customer, state in list(states.items())[:: max(1, len(states) // 200)]:
            expected = feature_values(state, state.last_ts)
            got = lookup(second.web_port, customer)["features"]
            assert {k: got[k] for k in expected} == expected, customer
        assert second.metrics().get("churn_ready") == 1.0
    finally:
        second.stop()
