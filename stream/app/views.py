"""The worker's web pages, served by Faust's web server.

``/metrics``                 the Prometheus registry, in the text format.
``/ready``                   200 once a verified model is loaded and the tables of the current
                             assignment are recovered, else 503 naming the reasons
                             (:mod:`stream.app.readiness`); readiness probes.
``/live``                    200 while the event loop runs, whatever else; liveness probes.
``/customers/{customer_id}`` a customer's current features and latest score, read from
                             the tables; Faust forwards the request to the worker that
                             owns the customer's partition.
``/score`` (POST)            scores posted feature vectors (one or a list) with the
                             serving model, without touching topics or tables.

Error answers are JSON with a 4xx status; the limits (body size, customer ids) and the
middleware that keeps every error JSON are in :mod:`stream.app.http_edge`.
"""

from __future__ import annotations

import faust
import orjson
from prometheus_client import generate_latest
from pydantic import ValidationError

from schemas.features import FeatureVector
from schemas.outputs import risk_band
from stream.app.http_edge import customer_id_problem, read_body, too_large
from stream.app.readiness import readiness, tables_state
from stream.metrics import StreamMetrics
from stream.pipeline.features import CustomerState, features
from stream.serving.model_holder import ModelHolder
from stream.serving.scoring import REASON_DIGITS
from stream.settings import Settings

# The Prometheus text format; aiohttp takes the charset separately.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"
# Problems reported for one /score request at most: a large body of bad items is refused without listing each.
MAX_PROBLEMS = 20


def register(
    app: faust.App,
    settings: Settings,
    metrics: StreamMetrics,
    holder: ModelHolder,
    state_table: faust.Table,
    score_table: faust.Table,
) -> None:
    """Register the pages on ``app``."""

    def ready_now() -> tuple[int, dict]:
        model = holder.current
        return readiness(model.version if model is not None else None, tables_state(app))

    # Evaluated at each scrape: the gauge says what /ready would answer then.
    metrics.ready.set_function(lambda: 1.0 if ready_now()[0] == 200 else 0.0)

    @app.page("/ready")
    async def ready_page(web, request):
        status, body = ready_now()
        return web.json(body, status=status)

    @app.page("/live")
    async def live_page(web, request):
        return web.json({"live": True})

    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(generate_latest(metrics.registry), content_type=METRICS_CONTENT_TYPE)

    def checked_id(page):
        """Refuse an id no event could carry before the lookup is routed to the key's owner."""

        async def checked(web, request, customer_id):
            problem = customer_id_problem(customer_id)
            if problem is not None:
                return web.json({"error": problem}, status=400)
            return await page(web, request, customer_id=customer_id)

        return checked

    @app.page("/customers/{customer_id}")
    @checked_id
    @app.table_route(table=state_table, match_info="customer_id")
    async def customer_page(web, request, customer_id):
        key = customer_id.encode()
        raw = state_table.get(key)
        if raw is None:
            return web.json({"error": f"unknown customer {customer_id}"}, status=404)
        state = CustomerState.from_bytes(raw)
        body = {
            "customer_id": customer_id,
            "features": features(state, state.last_ts).model_dump(mode="json"),
            "score": orjson.loads(score_table[key]) if key in score_table else None,
        }
        return web.json(body)

    @app.page("/score")
    class ScoreView(faust.web.View):
        async def post(self, request):
            return await score_request(self, request, holder, settings)


async def score_request(view, request, holder: ModelHolder, settings: Settings):
    """Answer a ``/score`` POST: the probability, risk band and reasons of each posted feature vector."""
    model = holder.current
    if model is None:
        return view.json({"error": "no model loaded yet"}, status=503)
    body = await read_body(request, settings.http_max_body_bytes)
    if body is None:
        return too_large(settings.http_max_body_bytes)
    try:
        payload = orjson.loads(body)  # also refuses non-UTF-8, NaN and nesting past 1024 levels
    except orjson.JSONDecodeError as exc:
        return view.json({"error": f"body is not JSON: {exc}"}, status=400)
    items = payload if isinstance(payload, list) else [payload]
    vectors, problems = [], []
    for i, item in enumerate(items):
        try:
            vectors.append(FeatureVector.model_validate(item))
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                problems.append({"index": i, "field": ".".join(str(p) for p in err["loc"]), "error": err["msg"]})
        if len(problems) >= MAX_PROBLEMS:
            del problems[MAX_PROBLEMS:]
            break
    if problems:
        return view.json({"error": "invalid feature vectors", "detail": problems}, status=422)
    if not vectors:
        return view.json([])
    columns = {name: [v.model_input()[name] for v in vectors] for name in vectors[0].model_input()}
    probabilities, reasons = model.explain_columns(columns, settings.score_reasons, REASON_DIGITS)
    out = [
        {
            "customer_id": v.customer_id,
            "event_id": v.event_id,
            "probability": float(p),
            "risk_band": risk_band(float(p), settings.risk_medium, settings.risk_high),
            "model_name": model.name,
            "model_version": model.version,
        }
        for v, p in zip(vectors, probabilities)
    ]
    if reasons is not None:
        for answer, row in zip(out, reasons):
            answer["reasons"] = row
    return view.json(out if isinstance(payload, list) else out[0])
