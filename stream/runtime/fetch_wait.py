"""The consumer's fetch max-wait, which Faust fixes at 1,500 ms.

A Kafka fetch request names a max wait: how long the broker may hold the request
when it has no new data. Apache Kafka answers as soon as any data arrives, so the
wait only bounds idle polling there. The embedded broker (Tansu 0.6) does not: it
holds a fetch for about half its max wait whatever arrives meanwhile. Measured
with aiokafka on loopback, one message every 37 ms, produce-to-consume latency was
p50 349 ms at a max wait of 1,500 ms, 122 ms at 500, 25 ms at 100 and 3 ms at 10.
With Faust's fixed 1,500 ms an event therefore waited about 0.4 s on average before
the worker even saw it.

:func:`install` makes a Faust app's aiokafka consumer use ``CHURN_FETCH_MAX_WAIT_MS``
instead (default 1,500 ms as in Faust; compose and Kubernetes, on Kafka, set 500).
aiokafka reads the value when the consumer starts, so setting it on the client right
after Faust creates it (and before Faust starts it) is enough.
"""

from __future__ import annotations

import logging

from stream.runtime.consumer_hooks import adapt_consumers
from stream.runtime.versions import require

log = logging.getLogger(__name__)


def install(app, fetch_max_wait_ms: int) -> None:
    """Make ``app``'s worker consumer ask the broker for ``fetch_max_wait_ms`` fetches."""

    def adapt(consumer) -> None:
        require(consumer, ("_thread",), "the fetch wait (stream.runtime.fetch_wait)")
        thread = consumer._thread
        require(thread, ("_create_worker_consumer",), "the fetch wait (stream.runtime.fetch_wait)")
        create = thread._create_worker_consumer

        def _create_worker_consumer(transport):
            client = create(transport)
            require(client, ("_fetch_max_wait_ms",), "the fetch wait (stream.runtime.fetch_wait)")
            client._fetch_max_wait_ms = fetch_max_wait_ms
            return client

        thread._create_worker_consumer = _create_worker_consumer

    adapt_consumers(app, adapt)
