"""Replay of events from JSONL, CSV and Parquet files."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import orjson
import pandas as pd
import pytest
from support.events import sample_events

from producers.replay import ReplayRow, read_events, replay_file, write_jsonl
from stream.errors import ConfigError

pytestmark = pytest.mark.unit

EVENTS = sample_events(120, customers=20)
VALID = {"event_type": "usage", "event_id": "e1", "customer_id": "c1", "ts": "2026-01-01T00:00:00Z", "amount": 1.0}


def events_of(rows: list[ReplayRow]) -> list:
    assert [r.error for r in rows if not r.ok] == []
    return [r.event for r in rows]


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    assert write_jsonl(EVENTS, path) == len(EVENTS)
    rows = list(read_events(path))
    assert events_of(rows) == EVENTS
    assert [r.row for r in rows] == list(range(1, len(EVENTS) + 1))


def test_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    pd.DataFrame([e.model_dump(mode="json") for e in EVENTS]).to_csv(path, index=False)
    assert events_of(list(read_events(path))) == EVENTS


def test_parquet_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pd.DataFrame([e.model_dump() for e in EVENTS]).to_parquet(path, index=False)
    assert events_of(list(read_events(path))) == EVENTS


def test_csv_coerces_by_schema_and_keeps_ids_as_text(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "event_type,event_id,customer_id,ts,plan,monthly_charges,has_autopay,schema_version\n"
        "signup,000123,00042,2026-01-01T00:00:00+01:00,basic,19,TRUE,1\n"
        "signup,000124,00043,2026-01-01T00:00:00Z,basic,19.5,no,1.0\n"
    )
    first, second = list(read_events(path))
    assert first.obj == {
        "event_type": "signup",
        "event_id": "000123",
        "customer_id": "00042",
        "ts": "2026-01-01T00:00:00+01:00",
        "plan": "basic",
        "monthly_charges": 19.0,
        "has_autopay": True,
        "schema_version": 1,
    }
    assert first.event.customer_id == "00042"
    assert second.event.has_autopay is False and second.event.monthly_charges == 19.5


def test_bad_jsonl_rows_are_reported_with_row_and_reason(tmp_path: Path) -> None:
    lines = [
        orjson.dumps(VALID),
        b"{not json",
        b"[1, 2]",
        b"",  # blank lines are skipped but still count as lines
        orjson.dumps({**VALID, "amount": -1}),
        orjson.dumps({**VALID, "color": "red"}),
        orjson.dumps({**VALID, "ts": "2026-01-01T00:00:00"}),
        orjson.dumps({k: v for k, v in VALID.items() if k != "customer_id"}),
        orjson.dumps({**VALID, "event_type": "teleport"}),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    rows = list(read_events(path))
    assert [(r.row, r.ok) for r in rows] == [
        (1, True),
        (2, False),
        (3, False),
        (5, False),
        (6, False),
        (7, False),
        (8, False),
        (9, False),
    ]
    reasons = {r.row: r.error for r in rows}
    assert reasons[2].startswith("not JSON")
    assert "not a JSON object" in reasons[3]
    assert "amount" in reasons[5] and "greater than or equal to 0" in reasons[5]
    assert "color" in reasons[6] and "Extra inputs" in reasons[6]
    assert "ts" in reasons[7] and "timezone" in reasons[7]
    assert "customer_id" in reasons[8] and "Field required" in reasons[8]
    assert "teleport" in reasons[9]


def test_bad_csv_rows_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "event_type,event_id,customer_id,ts,amount\n"
        "usage,e1,c1,2026-01-01T00:00:00Z,abc\n"
        "usage,e2,c1,2026-01-01T00:00:00Z,1,surplus\n"
        "usage,e3,c1,2026-01-01T00:00:00Z,2.5\n"
    )
    rows = list(read_events(path))
    assert [r.row for r in rows] == [1, 2, 3]
    assert "amount" in rows[0].error and "number" in rows[0].error
    assert "more cells than the header" in rows[1].error
    assert rows[2].ok and rows[2].event.amount == 2.5


def test_naive_parquet_timestamps_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "naive.parquet"
    frame = pd.DataFrame([{**VALID, "ts": datetime(2026, 1, 1)}, {**VALID, "event_id": "e2"}])
    frame["ts"] = [datetime(2026, 1, 1), None]
    frame.to_parquet(path, index=False)
    first, second = list(read_events(path))
    assert "ts" in first.error and "timezone" in first.error
    assert "ts" in second.error and "Field required" in second.error


def test_unknown_or_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown event file type"):
        list(read_events(tmp_path / "events.xml"))
    with pytest.raises(ConfigError, match="cannot read events"):
        list(read_events(tmp_path / "missing.jsonl"))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match="cannot read events"):
        list(read_events(tmp_path / "junk.parquet"))


def test_replay_file_publishes_valid_events_and_counts_bad_rows(tmp_path: Path) -> None:
    class FakePublisher:
        def __init__(self) -> None:
            self.events: list = []

        def publish(self, event) -> None:  # type: ignore[no-untyped-def]
            self.events.append(event)

    path = tmp_path / "mixed.jsonl"
    write_jsonl([*EVENTS[:5], {**VALID, "amount": "lots"}], path)
    publisher = FakePublisher()
    report = replay_file(path, publisher)  # type: ignore[arg-type]
    assert (report.rows, report.published, report.invalid) == (6, 5, 1)
    assert publisher.events == EVENTS[:5]
    assert report.errors[0].startswith(f"{path} row 6: usage.amount")
