"""What the worker's HTTP server does with hostile requests: bounded bodies, checked ids, JSON errors.

Every error answer of the worker's pages is JSON, ``{"error": "..."}``, with a 4xx status:

- a body larger than ``CHURN_HTTP_MAX_BODY_BYTES`` is refused with 413 before it is read,
  whether its ``Content-Length`` declares it (:func:`error_middleware`, for every path) or it
  comes chunked without one (:func:`read_body` stops reading at the limit); the connection is
  closed after a 413 rather than the rest of the body drained;
- a customer id in a path that an event could not carry (the rule of
  :data:`schemas.fields.Id`: 1-128 characters, no whitespace at either end) or that is not
  Unicode text (a ``%ff`` or a lone surrogate decoded from the path) is refused with 400
  before the lookup is routed to the key's owner (:func:`customer_id_problem`);
- aiohttp's own refusals (404 unknown path, 405 method not allowed, 413 from
  ``client_max_size``) keep their status but get a JSON body (:func:`error_middleware`).

Anything a page raises beyond that is a bug: the middleware logs it with its traceback and
answers 500 ``{"error": "internal error"}`` without details, and the server goes on serving.
Requests aiohttp's HTTP parser refuses (a malformed request line or header) never reach the
pages; aiohttp answers those 400 itself, in text.

Faust builds the aiohttp application from its public ``web_application_options`` setting,
which is how :func:`web_application_options` puts the middleware and aiohttp's own
``client_max_size`` in place (:mod:`stream.app.build`). ``client_max_size`` alone would
not bound a page: aiohttp checks it only in ``request.read()`` and ``request.post()``,
while Faust's ``View.read_request_content`` reads ``request.content`` to its end, however
long; the pages read bodies with :func:`read_body` instead.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from schemas.fields import Id

log = logging.getLogger(__name__)

_ID = TypeAdapter(Id)
INTERNAL_ERROR = "internal error"


def error_json(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error answer, ``{"error": message}``."""
    return web.json_response({"error": message}, status=status, headers=headers)


def too_large(limit: int) -> web.Response:
    """413 for a body over ``limit`` bytes; the connection is closed instead of drained."""
    response = error_json(413, f"request body larger than {limit} bytes (CHURN_HTTP_MAX_BODY_BYTES)")
    response.force_close()
    return response


def declared_length(request: web.Request) -> int | None:
    """The body length the request declares (``Content-Length``), if any."""
    try:
        return request.content_length
    except ValueError:  # aiohttp's parser refuses most malformed values before a page sees them
        return None


async def read_body(request: web.Request, limit: int) -> bytes | None:
    """The request's body, or ``None`` when it is larger than ``limit`` bytes (declared or as it arrives).

    Reads what arrives in chunks and stops as soon as the total passes ``limit``, so a chunked
    body without a length never holds more than ``limit`` bytes (plus one chunk) in memory.
    """
    declared = declared_length(request)
    if declared is not None and declared > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def customer_id_problem(customer_id: str) -> str | None:
    """Why ``customer_id`` (as decoded from a path) cannot name a customer, or ``None`` when it can.

    >>> customer_id_problem("cust-00042") is None
    True
    >>> customer_id_problem("x" * 129)
    'customer id: Input should be a string of 1 to 128 characters with no whitespace at either end'
    >>> customer_id_problem("c\\udcff")
    'customer id: not UTF-8 text'
    """
    try:
        customer_id.encode("utf-8")
    except UnicodeEncodeError:
        return "customer id: not UTF-8 text"
    try:
        _ID.validate_python(customer_id)
    except ValidationError as exc:
        return "customer id: " + "; ".join(err["msg"] for err in exc.errors(include_url=False))
    return None


def error_middleware(max_body_bytes: int):
    """The aiohttp middleware: 413 for a declared body over the limit, JSON bodies for every error."""

    @web.middleware
    async def json_errors(request: web.Request, handler) -> web.StreamResponse:
        declared = declared_length(request)
        if declared is not None and declared > max_body_bytes:
            return too_large(max_body_bytes)
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return error_json(exc.status, exc.reason, headers)
        except Exception:  # noqa: BLE001 - a page's bug answers 500 and the server goes on
            log.exception("%s %s failed", request.method, request.rel_url.raw_path[:200])
            return error_json(500, INTERNAL_ERROR)

    return json_errors


def web_application_options(max_body_bytes: int) -> dict[str, Any]:
    """Faust's ``web_application_options``: aiohttp's ``client_max_size`` and the error middleware."""
    return {"client_max_size": max_body_bytes, "middlewares": [error_middleware(max_body_bytes)]}
