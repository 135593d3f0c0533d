"""Hostile requests to the worker's real pages, served by a real aiohttp server in this process.

The app is the one :func:`stream.app.build.create_app` builds (its views, its middleware, its
``web_application_options``), with a fitted model in the holder and one customer in the state
table; no broker: the table router is told this worker owns every key (as a worker that holds
every partition is), so ``/customers`` lookups are answered here instead of being forwarded.
Requests are written as raw bytes on a socket, so nothing a client library would refuse or
normalise is kept from the server: bodies with and without ``Content-Length``, chunked bodies,
percent-encoded path tricks, NUL bytes and invalid UTF-8.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter

import orjson
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.models import fitted

from schemas.events import Signup, parse_event_obj
from schemas.features import FeatureVector
from stream.app.http_edge import customer_id_problem
from stream.pipeline.features import CustomerState, apply_checked
from stream.serving.model_holder import LoadedModel
from stream.settings import Settings

pytestmark = pytest.mark.unit

LIMIT = 4096  # CHURN_HTTP_MAX_BODY_BYTES of the app under test
CUSTOMER = "cust-00042"
HTTP_FUZZ_CASES = 1000
VECTOR = dict(FeatureVector.EXAMPLES[0])
STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
TIMEOUT_S = 10.0


class Served:
    """The app's aiohttp server on a loop of its own, and raw HTTP/1.1 requests to it."""

    def __init__(self, churn_app) -> None:
        self.churn = churn_app
        self.loop = asyncio.new_event_loop()
        web = churn_app.app.web
        web.init_server()
        self.server = TestServer(web.web_app, host="127.0.0.1")
        self.loop.run_until_complete(self.server.start_server())
        self.port = self.server.port

    def request(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send ``raw`` as it is; the answer's status, headers (lower-case names) and body."""
        return self.loop.run_until_complete(asyncio.wait_for(self._exchange(raw), TIMEOUT_S))

    async def _exchange(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(raw)
            try:
                await writer.drain()
            except ConnectionError:  # the server answered (413) and closed before all of it was sent
                pass
            head = await reader.readuntil(b"\r\n\r\n")
            while head.startswith(b"HTTP/1.1 100 "):  # the interim answer to Expect: 100-continue
                head = await reader.readuntil(b"\r\n\r\n")
            match = STATUS.match(head)
            assert match is not None, head[:200]
            headers = {}
            for line in head[:-4].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
            if raw.startswith(b"HEAD "):
                body = b""
            elif "content-length" in headers:  # read what the answer declares, not until the server closes
                body = await reader.readexactly(int(headers["content-length"]))
            else:
                body = await reader.read()  # every request says Connection: close
                if headers.get("transfer-encoding") == "chunked":
                    body = dechunk(body)
        finally:
            writer.close()
        return int(match[1]), headers, body

    def close(self) -> None:
        self.loop.run_until_complete(self.server.close())
        self.loop.close()


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


def http(method: str, path: bytes, body: bytes | None = None, chunks: list[bytes] | None = None, **headers) -> bytes:
    """A raw HTTP/1.1 request: ``body`` with its Content-Length, or ``chunks`` chunked without one."""
    lines = [f"{method} ".encode() + path + b" HTTP/1.1", b"Host: worker", b"Connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}".encode("latin-1") for name, value in headers.items()]
    if chunks is not None:
        lines.append(b"Transfer-Encoding: chunked")
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c) + b"0\r\n\r\n"
    else:
        payload = body or b""
        if body is not None:
            lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from stream.app.build import create_app

    settings = Settings(
        bootstrap_servers="127.0.0.1:9",
        data_dir=tmp_path_factory.mktemp("http-edge"),
        web_port=6073,
        http_max_body_bytes=LIMIT,
    )
    churn = create_app(settings, tansu_quirks=False)
    churn.holder.current = LoadedModel("churn-model", "3", fitted())
    churn.app.router.key_store = lambda table, key: churn.app.conf.canonical_url  # this worker owns every key
    state = CustomerState(customer_id=CUSTOMER)
    apply_checked(state, parse_event_obj(Signup.EXAMPLES[0]))
    churn.state_table.data[CUSTOMER.encode()] = state.to_bytes()  # the store, as recovery fills it
    churn.app.tables.on_actives_ready()  # recovered: /ready answers 200
    served = Served(churn)
    yield served
    served.close()


def error_of(status: int, headers: dict[str, str], body: bytes) -> str:
    """The error message of a JSON error answer (fails when the answer is not one)."""
    assert 400 <= status < 500, (status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, body[:300])
    error = orjson.loads(body)["error"]
    assert isinstance(error, str) and error
    return error


def still_serving(served: Served) -> None:
    status, _, body = served.request(http("GET", b"/metrics"))
    assert status == 200 and b"churn_" in body


# --- the pages answer well-formed requests ---------------------------------------------------------


def test_score_and_lookup_answer_well_formed_requests(served):
    status, _, body = served.request(http("POST", b"/score", orjson.dumps([VECTOR, VECTOR])))
    assert status == 200, body
    answers = orjson.loads(body)
    assert len(answers) == 2 and 0.0 <= answers[0]["probability"] <= 1.0
    status, _, body = served.request(
        http("POST", b"/score", chunks=[orjson.dumps(VECTOR)[:10], orjson.dumps(VECTOR)[10:]])
    )
    assert status == 200 and orjson.loads(body)["customer_id"] == VECTOR["customer_id"]
    status, _, body = served.request(http("GET", b"/customers/" + CUSTOMER.encode()))
    assert status == 200 and orjson.loads(body)["customer_id"] == CUSTOMER
    status, headers, body = served.request(http("GET", b"/customers/cust-unknown"))
    assert error_of(status, headers, body) == "unknown customer cust-unknown" and status == 404


# --- bodies ------------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_with_413_whether_declared_or_chunked(served):
    big = orjson.dumps([VECTOR] * 20)
    assert len(big) > LIMIT
    for raw in (
        http("POST", b"/score", big),
        http("POST", b"/score", chunks=[big[i : i + 500] for i in range(0, len(big), 500)]),
        http("POST", b"/score", chunks=[big]),
        http("POST", b"/metrics", big),  # declared: refused on every path, before any page runs
    ):
        status, headers, body = served.request(raw)
        assert "CHURN_HTTP_MAX_BODY_BYTES" in error_of(status, headers, body) and status == 413
    status, _, _ = served.request(http("POST", b"/score", orjson.dumps([VECTOR] * 3)))
    assert status == 200  # under the limit
    still_serving(served)


def test_a_declared_length_over_the_limit_is_refused_before_the_body_arrives(served):
    """A client that declares 1 GiB and sends none of it gets its 413 (nothing waits for the body)."""
    raw = b"POST /score HTTP/1.1\r\nHost: worker\r\nContent-Length: 1073741824\r\n\r\n"
    status, headers, body = served.request(raw)
    assert "CHURN_HTTP_MAX_BODY_BYTES" in error_of(status, headers, body) and status == 413
    assert headers.get("connection", "").lower() == "close"
    still_serving(served)


def with_number(literal: bytes) -> bytes:
    """The example vector with ``failed_payments_90d`` written as ``literal``."""
    return orjson.dumps({**VECTOR, "failed_payments_90d": "N"}).replace(b'"N"', literal)


BAD_BODIES = [
    ("not JSON", b"{customer_id: 1", 400, "body is not JSON"),
    ("not UTF-8", b'{"customer_id": "\xff\xfe"}', 400, "body is not JSON"),
    ("a NaN", b'{"tenure_months": NaN}', 400, "body is not JSON"),
    ("nested past orjson's limit", b"[" * 2000 + b"]" * 2000, 400, "body is not JSON"),
    ("wrong type of item", b"17", 422, "invalid feature vectors"),
    ("wrong type of field", orjson.dumps({**VECTOR, "tenure_months": "long"}), 422, "invalid feature vectors"),
    ("a number too large for a float", with_number(b"1e400"), 400, "body is not JSON"),
    ("an integer too large for a float", with_number(b"9" * 400), 400, "body is not JSON"),
    ("an integer past 64 bits", with_number(b"9" * 30), 422, "invalid feature vectors"),  # a float, > 1e6
    ("an unknown field", orjson.dumps({**VECTOR, "extra": [[[]]]}), 422, "invalid feature vectors"),
    ("empty", b"", 400, "body is not JSON"),
]


@pytest.mark.parametrize(("name", "body", "status", "says"), [pytest.param(*case, id=case[0]) for case in BAD_BODIES])
def test_a_malformed_score_body_is_a_4xx_with_a_json_error(served, name, body, status, says):
    got, headers, answer = served.request(http("POST", b"/score", body))
    assert says in error_of(got, headers, answer), name
    assert got == status, (name, answer[:300])


def test_many_bad_items_are_refused_without_listing_each(served):
    got, headers, answer = served.request(http("POST", b"/score", b"[" + b",".join([b"1"] * 2000) + b"]"))
    error_of(got, headers, answer)
    assert len(orjson.loads(answer)["detail"]) == 20


# --- paths ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (b"/customers/..%2f..%2fetc%2fpasswd", 404),  # one id (with slashes in it), unknown: nothing is opened
        (b"/customers/../../etc/passwd", 404),  # no such route once normalised
        (b"/customers/" + b"x" * 129, 400),  # longer than any event's customer_id
        (b"/customers/" + b"%41" * 200, 400),
        (b"/customers/c%00d", 404),  # a NUL is a character an event id may hold: looked up, unknown
        (b"/customers/%ff%fe", 404),  # not UTF-8: left encoded by the URL parser, an unknown id
        (b"/customers/%ed%a0%80", 404),  # an encoded lone surrogate: likewise
        (b"/customers/%20c1", 400),  # whitespace at an end, which no event id has
        (b"/customers/%E2%82%AC-%C3%A9", 404),  # unicode: a valid id, unknown
        (b"/customers/", 404),
        (b"/score/..%2f", 404),
        (b"/nowhere", 404),
    ],
    ids=lambda value: value[:40].decode("latin-1") if isinstance(value, bytes) else str(value),
)
def test_path_tricks_are_a_4xx_with_a_json_error(served, path, status):
    got, headers, body = served.request(http("GET", path))
    error_of(got, headers, body)
    assert got == status, (path, body[:300])


def test_what_the_http_parser_refuses_is_a_400_and_the_server_goes_on(served):
    """A raw non-ASCII byte in the path or a request line over 8 KiB never reaches a page: aiohttp's parser
    answers 400 itself (in text, not JSON: no middleware runs for a request that did not parse)."""
    for path in (b"/customers/\xe2\x82\xac", b"/customers/" + b"%41" * 5000):
        status, _, _ = served.request(http("GET", path))
        assert status == 400, path[:40]
    still_serving(served)


def test_a_wrong_method_is_405_with_a_json_error_naming_the_allowed_ones(served):
    status, headers, body = served.request(http("GET", b"/score"))
    error_of(status, headers, body)
    assert status == 405
    status, headers, body = served.request(http("DELETE", b"/metrics"))
    error_of(status, headers, body)
    assert status == 405 and "GET" in headers.get("allow", "")


def test_a_path_id_is_refused_on_the_event_rule():
    assert customer_id_problem("c" * 128) is None
    assert customer_id_problem("c" * 129) is not None
    assert customer_id_problem("") is not None
    assert customer_id_problem("c\udcff") == "customer id: not UTF-8 text"


# --- the fuzz run ----------------------------------------------------------------------------------------

METHODS = st.sampled_from(["GET", "POST", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "BREW"])
URL_SAFE = "ABCXYZabcxyz0189._~!$&'()*+,;=:@-"
SEGMENT = st.one_of(
    st.text(max_size=20).map(lambda s: "".join(f"%{b:02X}" for b in s.encode("utf-8", "surrogatepass"))),
    st.binary(max_size=20).map(lambda b: "".join(f"%{x:02X}" for x in b)),
    st.text(URL_SAFE, max_size=300),
    st.sampled_from(["..", ".", "%2e%2e", "..%2f..%2fetc", "%00", "cust-00042", "", "%ff", "%c0%af"]),
)
PATHS = st.one_of(
    st.sampled_from(["/score", "/customers/cust-00042", "/metrics", "/ready", "/live"]),
    st.builds(
        lambda head, segments, query: head + "/".join(segments) + query,
        st.sampled_from(["/score", "/customers/", "/metrics", "/ready", "/live", "/", "//", "/customers"]),
        st.lists(SEGMENT, max_size=3),
        st.sampled_from(["", "?", "?a=1&a=2", "?x=%ff", "#frag"]),
    ),
)


def dumps(value) -> bytes:
    """JSON as Python writes it: integers of any size, NaN and Infinity as bare words."""
    return json.dumps(value).encode()


LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities too: json.dumps writes them as NaN, Infinity (not JSON)
    | st.text(max_size=20)
    | st.sampled_from(list(VECTOR.values()))
)
JSONISH = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from([*VECTOR, "x"]), children, max_size=4)
    ),
    max_leaves=12,
)
BODIES = st.one_of(
    st.none(),
    st.binary(max_size=300),
    JSONISH.map(dumps),
    st.dictionaries(st.sampled_from(list(VECTOR)), LEAVES, max_size=2).map(lambda d: dumps({**VECTOR, **d})),
    st.lists(st.dictionaries(st.sampled_from(list(VECTOR)), LEAVES, max_size=1), min_size=1, max_size=4).map(
        lambda items: dumps([{**VECTOR, **d} for d in items])
    ),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(LIMIT - 2, LIMIT + 2).map(lambda n: b" " * n),
)
HEADERS = st.builds(
    lambda headers, expect: {**headers, "Expect": expect} if expect else headers,
    st.dictionaries(
        st.sampled_from(["Content-Type", "Accept", "Accept-Encoding", "X-Forwarded-For", "Cookie", "Origin"]),
        st.text("abcxyz/;=*-,. 019", max_size=40).map(str.strip),
        max_size=3,
    ),
    st.sampled_from([""] * 8 + ["100-continue", "nonsense"]),
)
# Half of them anything; half a POST to /score, where bodies are read and parsed.
REQUESTS = st.tuples(METHODS, PATHS, BODIES, st.booleans(), HEADERS) | st.tuples(
    st.just("POST"), st.just("/score"), BODIES, st.booleans(), HEADERS
)


def test_fuzz_no_request_gets_a_5xx_and_the_server_keeps_serving(served, record_property):
    """Random methods, paths, bodies (declared or chunked) and headers: every answer is below 500, every
    error answer (but a HEAD's, which has no body) is JSON, and /metrics answers afterwards. What aiohttp
    refuses before any page or middleware runs (a request its parser refuses, an unknown method say: 400;
    an ``Expect`` other than ``100-continue``: 417) is answered in text, and counted apart ("aiohttp 400")."""
    cases = []

    @settings(
        max_examples=HTTP_FUZZ_CASES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(REQUESTS)
    def one(request):
        method, path, body, chunked, headers = request
        if body is not None and chunked:
            raw = http(method, path.encode(), chunks=[body[:7], body[7:]], **headers)
        else:
            raw = http(method, path.encode(), body, **headers)
        status, answer_headers, answer = served.request(raw)
        # aiohttp answers in text, before any middleware: a request its parser refuses (400), an Expect
        # header other than 100-continue (417)
        before_pages = status in (400, 417) and answer_headers.get("content-type", "").startswith("text/plain")
        cases.append(f"aiohttp {status}" if before_pages else status)
        assert status < 500, (raw[:300], answer[:300])
        if status >= 400 and method != "HEAD" and not before_pages:
            error_of(status, answer_headers, answer)

    one()
    still_serving(served)
    by_status = Counter(str(status) for status in cases)
    record_property("http_fuzz_cases", len(cases))
    record_property("http_fuzz_statuses", str(sorted(by_status.items())))
    print(f"HTTP fuzz: {len(cases)} requests, statuses {sorted(by_status.items())}")
    assert len(cases) >= HTTP_FUZZ_CASES
    assert {"200", "400", "404", "405", "413", "422"} <= set(by_status)
