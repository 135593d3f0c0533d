"""Field types of the contracts, each validated by pydantic exactly as its JSON Schema says.

Producers in other languages validate against the exported JSON Schemas and the
worker validates with pydantic: a document one accepts and the other rejects is
an event lost to the DLQ that its producer believed valid, or a schema that
forbids what the worker takes. So every constrained type here carries both
halves, written side by side: a pydantic-core schema (Rust, no Python call per
value) and the JSON Schema it exports. ``tests/schemas/test_schema_agreement.py``
runs a corpus of good and bad documents through both.

The rules
---------
Text keys (:data:`Id`, :data:`PlanName`)
    1 to 128 (64) characters; neither the first nor the last is whitespace, and
    nothing is stripped. pydantic used to strip and then count, so ``" c1"`` was
    read as ``"c1"`` while JSON Schema, which cannot strip, judged ``" c1"``; and
    an id that differs from the message key by a blank is a producer bug worth
    surfacing. "Whitespace" is :data:`WHITESPACE`, the characters
    ``str.isspace`` accepts (exactly what ``strip()`` used to remove), spelled
    out because ``\\s`` matches different sets in Python, ECMAScript, Go and Java.
    The schema states the rule as ``pattern: ^[^WS]`` plus
    ``not: {pattern: "[WS]$"}`` instead of one ``^...$`` pattern: in Python's
    ``re`` (the ``jsonschema`` package) and Java, ``$`` also matches before a
    final newline, so ``"c1\\n"`` would pass there and fail in ECMAScript; with
    the whitespace at the end forbidden, every engine gives the same verdict.
    pydantic checks one equivalent Rust regex, whose ``$`` is the end of text.
Numbers
    Strict: a JSON number, never a numeric string such as ``"3.5"``. A float
    field takes integers (JSON has one number type). An :func:`integer` also takes a
    float with no fraction (``1.0``, ``1e2``), because JSON Schema's ``integer``
    does (in JavaScript ``1.0`` *is* ``1``), and rejects ``true``, which
    pydantic's lax ``int`` reads as 1. Every model sets ``allow_inf_nan=False``:
    ``NaN`` and ``Infinity`` are not JSON, and a number that overflows a double
    is rejected too.
Booleans
    Strict: ``true`` or ``false`` only, not ``1``, ``"true"`` or ``"yes"``.
Versions (:func:`version`)
    An :func:`integer` equal to the constant: ``1`` and ``1.0``, not ``true``
    (which ``Literal[1]`` alone takes) nor ``"1"``.
Times (:data:`Timestamp`)
    In JSON, a string in RFC 3339 ``date-time`` form with seconds and an offset
    or ``Z``: ``2026-01-01T00:00:00Z``, ``2026-01-01T02:00:00.25+02:00``.
    pydantic alone would also take epoch numbers, ``"1700000000"``, a missing
    seconds field, a space or ``t`` for ``T``, ``+0200`` and ``,5``. The schema
    says ``format: date-time``, but format is only an annotation for most 2020-12
    validators, so :data:`TIMESTAMP_PATTERN` carries the whole rule, calendar
    included (no 30 February, 29 February in leap years only, no year 0), and
    pydantic checks the same pattern before parsing. Fractional seconds may have
    any number of digits and are kept to the microsecond. In Python a
    timezone-aware ``datetime`` is accepted as is; a naive one never is.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import CoreSchema, core_schema

#: The characters ``str.isspace`` accepts (what ``str.strip`` removes), as a regex class body.
WHITESPACE = "\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: Exported with every constrained string: no whitespace at the end, in any regex engine.
NO_TRAILING_WHITESPACE: dict[str, Any] = {"not": {"pattern": f"[{WHITESPACE}]$"}}

_YEAR = "([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_MONTH_DAY = "((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))"
_LEAP_DAY = "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)-02-29"
_TIME = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]+)?"
_OFFSET = "(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
#: An RFC 3339 date-time with seconds and an offset, valid in the proleptic Gregorian calendar.
TIMESTAMP_PATTERN = f"^({_YEAR}-{_MONTH_DAY}|{_LEAP_DAY})T{_TIME}{_OFFSET}$"


class _Exact:
    """``Annotated`` metadata: validate with ``core``, export ``json_schema``."""

    def __init__(self, core: CoreSchema, json_schema: dict[str, Any]) -> None:
        self.core = core
        self.json_schema = json_schema

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return self.core

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return copy.deepcopy(self.json_schema)

    def __repr__(self) -> str:
        return f"_Exact({self.json_schema!r})"


def _trimmed_text(max_length: int) -> _Exact:
    """A string of 1..max_length characters whose first and last are not whitespace."""
    core = core_schema.custom_error_schema(
        core_schema.str_schema(
            min_length=1, max_length=max_length, pattern=f"^[^{WHITESPACE}](?s:.*[^{WHITESPACE}])?$", strict=True
        ),
        custom_error_type="string_trimmed",
        custom_error_message=f"Input should be a string of 1 to {max_length} characters"
        " with no whitespace at either end",
    )
    return _Exact(
        core,
        {
            "type": "string",
            "minLength": 1,
            "maxLength": max_length,
            "pattern": f"^[^{WHITESPACE}]",
            **NO_TRAILING_WHITESPACE,
        },
    )


Id = Annotated[str, _trimmed_text(128)]
PlanName = Annotated[str, _trimmed_text(64)]

_WHOLE_NUMBER = core_schema.union_schema(
    [
        core_schema.int_schema(strict=True),
        core_schema.chain_schema(
            [core_schema.float_schema(strict=True, allow_inf_nan=False), core_schema.int_schema()]
        ),
    ],
    mode="left_to_right",
    custom_error_type="integer_type",
    custom_error_message="Input should be a valid integer",
)


def integer(ge: int | None = None, le: int | None = None) -> _Exact:
    """``Annotated[int, integer(ge, le)]``: a JSON integer, or a float with no fraction, in [ge, le]."""
    core = core_schema.chain_schema([_WHOLE_NUMBER, core_schema.int_schema(ge=ge, le=le, strict=True)])
    bounds = {k: v for k, v in (("minimum", ge), ("maximum", le)) if v is not None}
    return _Exact(core, {"type": "integer", **bounds})


Count = Annotated[int, integer(ge=0)]


def version(value: int) -> _Exact:
    """``Annotated[Literal[value], version(value)]``: the integer ``value`` and nothing else."""
    return _Exact(
        core_schema.chain_schema([_WHOLE_NUMBER, core_schema.literal_schema([value])]),
        {"const": value, "type": "integer"},
    )


_TIMESTAMP_TEXT = core_schema.chain_schema(
    [
        core_schema.custom_error_schema(
            core_schema.str_schema(pattern=TIMESTAMP_PATTERN, strict=True),
            custom_error_type="datetime_rfc3339",
            custom_error_message="Input should be an RFC 3339 date-time string with seconds and an offset,"
            " like 2026-01-01T00:00:00Z",
        ),
        core_schema.datetime_schema(tz_constraint="aware"),
    ]
)
Timestamp = Annotated[
    datetime,
    _Exact(
        core_schema.json_or_python_schema(
            json_schema=_TIMESTAMP_TEXT,
            python_schema=core_schema.union_schema(
                [core_schema.datetime_schema(strict=True, tz_constraint="aware"), _TIMESTAMP_TEXT],
                mode="left_to_right",
                custom_error_type="datetime_rfc3339",
                custom_error_message="Input should be a timezone-aware datetime or an RFC 3339 date-time string"
                " with seconds and an offset, like 2026-01-01T00:00:00Z",
            ),
            serialization=core_schema.simple_ser_schema("datetime"),
        ),
        {"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN, **NO_TRAILING_WHITESPACE},
    ),
]

__all__ = [
    "NO_TRAILING_WHITESPACE",
    "TIMESTAMP_PATTERN",
    "WHITESPACE",
    "Count",
    "Id",
    "PlanName",
    "Timestamp",
    "integer",
    "version",
]
