"""Faults injected into the worker processes a test starts with ``PYTHONPATH`` set to this folder.

Python imports ``sitecustomize`` at start-up, so the worker runs with these changes
from its first line. Each fault is off unless its variable is set.

``FAULT_SEEK_PAUSE_S``: after the consumer has sought its partitions to their
committed offsets, it pauses this many seconds before Faust's recovery goes on to
resume flow control (which clears the agents' queues). A scheduling delay there is
what lost events after a rebalance; the pause makes that window wide enough for a
test to hit every time.
"""

import os
import sys

_seek_pause_s = float(os.environ.get("FAULT_SEEK_PAUSE_S") or 0)

if _seek_pause_s > 0:
    import asyncio

    from faust.transport.consumer import Consumer

    _perform_seek = Consumer.perform_seek

    async def _perform_seek_then_pause(self) -> None:
        await _perform_seek(self)
        await asyncio.sleep(_seek_pause_s)

    Consumer.perform_seek = _perform_seek_then_pause
    print(
        f"fault injected: a {_seek_pause_s:g} s pause after each seek to committed offsets", file=sys.stderr, flush=True
    )

# ``FAULT_NO_CODECS``: compression codecs (comma-separated: snappy, lz4, zstd) the worker's
# aiokafka consumer behaves as if it had no library for, as it did before cramjam was a
# dependency: a batch in one of them cannot be decoded.
_no_codecs = {c.strip() for c in os.environ.get("FAULT_NO_CODECS", "").split(",") if c.strip()}

if _no_codecs:
    import aiokafka.codec

    for _codec in _no_codecs:
        setattr(aiokafka.codec, f"has_{_codec}", lambda: False)
    print(f"fault injected: no {', '.join(sorted(_no_codecs))} codec in the consumer", file=sys.stderr, flush=True)
