"""Times given on the command line: ISO 8601 with a zone, as epoch seconds."""

from __future__ import annotations

from datetime import datetime

from stream.errors import ConfigError


def parse_instant(option: str, text: str) -> float | None:
    """``text`` given to ``option`` (ISO 8601 with a zone) as epoch seconds; empty means none.

    >>> parse_instant("--as-of", "2026-03-01T00:00:00Z")
    1772323200.0
    >>> parse_instant("--since", "")
    """
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{option} {text!r} is not an ISO 8601 time (e.g. 2026-03-01T00:00:00Z)") from exc
    if moment.tzinfo is None:
        raise ConfigError(f"{option} {text!r} has no time zone; add one, e.g. Z or +00:00")
    return moment.timestamp()
