"""Faust's aiokafka transport with the worker's changes written as methods of its consumer.

Faust builds its consumer with ``app.transport.create_consumer(...)``, from the
transport's ``Consumer`` class, and the consumer builds its aiokafka thread with
``_new_consumer_thread``. :class:`Transport` names :class:`Consumer`, a subclass of
Faust's aiokafka consumer whose methods carry the changes (docs/runtime.md):

- ``getmany`` and ``perform_seek`` go through the seek guard (:mod:`stream.runtime.seek_guard`);
- ``_drain_messages`` is the worker's fetch loop (:mod:`stream.runtime.drain`);
- the conductor's callback is the direct handler (:mod:`stream.runtime.inline_delivery`);
- with the embedded broker's quirks, ``highwaters`` reads exact end offsets
  (:mod:`stream.runtime.end_offsets`) and the aiokafka client fetches with the set max
  wait (:class:`ConsumerThread`).

:func:`stream.runtime.install.install` sets an instance of :class:`Transport` as the
app's transport before anything asks for one, so every consumer the app makes is one
of these. The constructor checks every name the changes read and raises
:class:`~stream.errors.RuntimeMismatch` when one is missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

from stream.errors import RuntimeMismatch
from stream.runtime.consumer_offsets import NEEDED as OFFSETS_NEEDED
from stream.runtime.drain import NEEDED as DRAIN_NEEDED
from stream.runtime.drain import drain_messages
from stream.runtime.end_offsets import exact_end_offsets
from stream.runtime.inline_delivery import CONDUCTOR_NEEDED, direct_handler, lean_waits
from stream.runtime.seek_guard import NEEDED as GUARD_NEEDED
from stream.runtime.seek_guard import SeekGuard
from stream.runtime.versions import require


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread; its client fetches with the transport's max wait when one is set.

    A fetch request names how long the broker may hold it when it has no new data.
    Apache Kafka answers as soon as data arrives; the embedded broker holds a fetch for
    about half its max wait whatever arrives, so Faust's fixed 1,500 ms delayed every
    event by that (docs/runtime.md). aiokafka reads the value when the client starts,
    so setting it right after Faust creates the client is enough.
    """

    def _create_worker_consumer(self, transport):
        client = super()._create_worker_consumer(transport)
        wait = getattr(transport, "fetch_max_wait_ms", None)
        if wait is not None:
            require(client, ("_fetch_max_wait_ms",), "the fetch wait (stream.runtime.transport)")
            client._fetch_max_wait_ms = wait  # read by aiokafka when the client starts
        return client


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with the seek guard, the worker's fetch loop and direct delivery."""

    def __init__(self, transport, callback, *args: Any, **kwargs: Any) -> None:
        super().__init__(transport, callback, *args, **kwargs)
        require(
            self, (*DRAIN_NEEDED, *GUARD_NEEDED, *OFFSETS_NEEDED), "the worker's consumer (stream.runtime.transport)"
        )
        conductor = self.app.topics
        require(conductor, CONDUCTOR_NEEDED, "inline delivery (stream.runtime.inline_delivery)")
        if self.callback != conductor.on_message:
            raise RuntimeMismatch(
                "inline delivery (stream.runtime.inline_delivery) cannot be attached: "
                "the consumer's callback is not the conductor's on_message"
            )
        self.callback = direct_handler(conductor)
        lean_waits(self.app)
        self.seek_guard = SeekGuard(self, super().getmany, super().perform_seek)

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def getmany(self, timeout: float):
        return self.seek_guard.getmany(timeout)

    async def perform_seek(self) -> None:
        await self.seek_guard.perform_seek()

    async def _drain_messages(self, fetcher) -> None:
        await drain_messages(self, fetcher, self.seek_guard)

    async def highwaters(self, *partitions):
        reported = await super().highwaters(*partitions)
        config = getattr(self.transport, "end_offsets_config", None)
        if config is None:
            return reported
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, exact_end_offsets, config, reported)


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport making :class:`Consumer` s; the embedded broker's quirks as arguments."""

    Consumer = Consumer

    def __init__(
        self,
        url,
        app,
        *,
        end_offsets_config: Mapping[str, str] | None = None,
        fetch_max_wait_ms: int | None = None,
    ) -> None:
        super().__init__(url, app)
        self.end_offsets_config = dict(end_offsets_config) if end_offsets_config is not None else None
        self.fetch_max_wait_ms = fetch_max_wait_ms
