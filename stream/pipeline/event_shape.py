"""A look at an event's bytes before it is validated: one flat JSON object of a few members.

Every account event is one JSON object whose fields are strings, numbers, booleans or
null (``schemas/events.py``), eight of them at most. pydantic's JSON validation is fast
on such objects but thousands of times slower per payload on what no event looks like:
an unknown field holding thousands of small arrays or objects, or thousands of members.
A producer sending such payloads at ``CHURN_MAX_EVENT_BYTES`` would hold each of a
worker's batches for seconds (``tests/stream/pipeline/test_hostile_events.py`` bounds
it). :func:`shape_problem` refuses them first, in time linear in the payload with a
small constant, never per element:

- outside strings, the payload holds exactly one ``{`` and no ``[`` (no field holds an
  array or object, and the value is an object);
- outside strings, it holds at most :data:`MAX_MEMBERS` ``:``, and at most four times as
  many unescaped ``"`` (a name and a text value per member): members, repeated names
  included.

What it refuses, validation would refuse too (more slowly), with one exception: an object
of more than :data:`MAX_MEMBERS` members whose names repeat, which validation would take
with the last value of each name; no event has more than eight fields. A name given twice
(within the bound) is not refused: as in pydantic, orjson and Python's ``json``, the last
value counts. What it lets through is validated as before. Its own cost: a few byte counts,
and for a payload the counts do not settle, a copy or two of it.

>>> shape_problem(b'{"event_type": "usage", "ts": "2026-01-01T00:00:00Z", "reason": "a [b] {c}"}') is None
True
>>> shape_problem(b'{"event_type": "usage", "x": [1, 2]}')
'a field holds an array or an object; the fields of an event are strings, numbers and booleans'
>>> shape_problem(b'[{"event_type": "usage"}]')
'not a JSON object'
"""

from __future__ import annotations

MAX_MEMBERS = 16


def without_escapes(raw: bytes) -> bytes:
    r"""``raw`` without its escaped backslashes and quotes: each ``"`` left opens or closes a string.

    >>> without_escapes(b'{"a": "x\\\\", "b": "[\\"{"}')
    b'{"a": "x", "b": "[{"}'
    """
    if b"\\" not in raw:
        return raw
    return raw.replace(b"\\\\", b"").replace(b'\\"', b"")


def shape_problem(raw: bytes) -> str | None:
    """Why ``raw`` cannot be an event, from its shape alone; ``None`` when it may be one."""
    if b"[" not in raw and raw.count(b"{") == 1 and raw.count(b":") <= MAX_MEMBERS:
        return None  # the counts over the whole payload bound those outside its strings
    text = without_escapes(raw)
    if text.count(b'"') > 4 * MAX_MEMBERS:  # a name and a text value per member at most
        return f"more than {4 * MAX_MEMBERS} strings; an event has at most {MAX_MEMBERS} members"
    bare = b"".join(text.split(b'"')[::2])  # what is outside the strings
    if not bare.lstrip(b" \t\r\n").startswith(b"{"):
        return "not a JSON object"
    if b"[" in bare or bare.count(b"{") > 1:
        return "a field holds an array or an object; the fields of an event are strings, numbers and booleans"
    members = bare.count(b":")
    if members > MAX_MEMBERS:
        return f"{members} members; an event has at most {MAX_MEMBERS}"
    return None
