"""The one place the worker's Faust app changes each consumer it creates.

Faust builds its consumer in ``App._new_consumer`` and starts it later. The
modules that adapt it (exact end offsets, fetch wait, inline delivery, seek guard)
each register a function here; every consumer the app creates passes through them
in the order they were registered, before Faust starts it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def adapt_consumers(app, adapt: Callable[[Any], None]) -> None:
    """Run ``adapt(consumer)`` on every consumer ``app`` creates, right after it is created."""
    new_consumer = app._new_consumer

    def _new_consumer():
        consumer = new_consumer()
        adapt(consumer)
        return consumer

    app._new_consumer = _new_consumer
