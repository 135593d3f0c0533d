"""Replay account events from JSONL, CSV or Parquet files.

:func:`read_events` yields one :class:`ReplayRow` per record, in file order: the
mapping read from the file and the validated event, or the reason it is invalid.
Bad rows never raise, so a caller can count and report them and go on; only a file
that cannot be opened at all raises :class:`~stream.errors.ConfigError`.

CSV cells are text, so they are coerced by the event schema: empty cells are
dropped (a column that only some event types have), boolean fields accept
``true/false/1/0/yes/no``, numeric fields become numbers, and everything else stays
a string, so an id such as ``00123`` keeps its zeros. A cell that does not convert
is left as text for validation to reject with the field's name.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "ev.csv"
>>> _ = path.write_text("event_type,event_id,customer_id,ts,enabled,amount\\n"
...                     "autopay_changed,e1,007,2026-01-01T00:00:00Z,yes,\\n"
...                     "usage,e2,007,2026-01-01T00:00:01Z,,-1\\n")
>>> rows = list(read_events(path))
>>> rows[0].event.enabled, rows[0].event.customer_id
(True, '007')
>>> rows[1].row, rows[1].error
(2, 'usage.amount: Input should be greater than or equal to 0')
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args, get_origin

import orjson
from pydantic import BaseModel, ValidationError

from producers.publisher import Publisher, validation_reason
from schemas.events import AccountEvent, dump_event, parse_event_obj
from stream.errors import ConfigError

log = logging.getLogger(__name__)

Format = Literal["jsonl", "csv", "parquet"]
_SUFFIXES: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


@dataclass(frozen=True)
class ReplayRow:
    """One record of a file: ``row`` is its 1-based number (for JSONL, the line number)."""

    row: int
    obj: dict[str, object] | None
    event: AccountEvent | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _field_kinds() -> dict[str, str]:
    """Field name -> "bool" | "float" | "int" for the non-text fields of every event type."""
    kinds: dict[str, str] = {}
    for cls in get_args(get_args(AccountEvent)[0]):
        for name, info in cls.model_fields.items():
            ann = info.annotation
            if ann is bool:
                kinds[name] = "bool"
            elif ann is float:
                kinds[name] = "float"
            elif ann is int or (get_origin(ann) is Literal and all(type(a) is int for a in get_args(ann))):
                kinds[name] = "int"
    return kinds


_KINDS = _field_kinds()


def _coerce(name: str, text: str) -> object:
    kind = _KINDS.get(name)
    value = text.strip()
    if kind == "bool":
        low = value.lower()
        return True if low in _TRUE else False if low in _FALSE else text
    try:
        if kind == "float":
            return float(value)
        if kind == "int":
            number = float(value)
            return int(number) if number.is_integer() else text
    except ValueError:
        return text
    return text


def detect_format(path: Path) -> Format:
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"{path}: unknown event file type {path.suffix!r}; use .jsonl, .csv or .parquet")
    return fmt


def _jsonl_objects(path: Path) -> Iterator[tuple[int, dict[str, object] | None, str | None]]:
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield number, None, f"not JSON: {exc}"
                continue
            if isinstance(obj, dict):
                yield number, obj, None
            else:
                yield number, None, f"not a JSON object but {type(obj).__name__}"


def _csv_objects(path: Path) -> Iterator[tuple[int, dict[str, object] | None, str | None]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        for number, record in enumerate(reader, start=1):
            if None in record:
                yield number, None, f"{len(record[None])} more cells than the header has columns"  # type: ignore[index]
                continue
            yield number, {k: _coerce(k, v) for k, v in record.items() if v not in (None, "")}, None


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _parquet_objects(path: Path) -> Iterator[tuple[int, dict[str, object] | None, str | None]]:
    import pyarrow.parquet as pq  # deferred: heavy, and only Parquet needs it

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
        for record in batch.to_pylist():
            number += 1
            yield number, {k: v for k, v in record.items() if not _is_missing(v)}, None


_READERS = {"jsonl": _jsonl_objects, "csv": _csv_objects, "parquet": _parquet_objects}


def read_events(path: str | Path, fmt: Format | None = None) -> Iterator[ReplayRow]:
    """Every record of ``path`` (format from the extension unless ``fmt``), validated."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    records = _READERS[fmt](path)
    try:
        for number, obj, error in records:
            if obj is None:
                yield ReplayRow(number, None, error=error)
                continue
            try:
                yield ReplayRow(number, obj, event=parse_event_obj(obj))
            except ValidationError as exc:
                yield ReplayRow(number, obj, error=validation_reason(exc))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        # The file as a whole is unreadable (missing, not UTF-8, not Parquet ...).
        raise ConfigError(f"cannot read events from {path}: {exc}") from exc


def write_jsonl(events: Iterable[AccountEvent | Mapping[str, object]], path: str | Path) -> int:
    """Write events (models or mappings) one JSON object per line; the number written."""
    count = 0
    with Path(path).open("wb") as fh:
        for event in events:
            fh.write(dump_event(event) if isinstance(event, BaseModel) else orjson.dumps(dict(event)))
            fh.write(b"\n")
            count += 1
    return count


@dataclass(frozen=True)
class ReplayReport:
    """Outcome of :func:`replay_file`: rows read, events handed to the publisher, bad rows."""

    rows: int
    published: int
    invalid: int
    errors: tuple[str, ...]


def replay_file(
    path: str | Path, publisher: Publisher, *, fmt: Format | None = None, keep_errors: int = 10
) -> ReplayReport:
    """Publish every valid event of ``path``; bad rows are counted, logged and skipped."""
    rows = published = invalid = 0
    errors: list[str] = []
    for item in read_events(path, fmt):
        rows += 1
        if item.event is not None:
            publisher.publish(item.event)
            published += 1
            continue
        invalid += 1
        message = f"{path} row {item.row}: {item.error}"
        if len(errors) < keep_errors:
            errors.append(message)
            log.warning("skipping %s", message)
    return ReplayReport(rows=rows, published=published, invalid=invalid, errors=tuple(errors))
