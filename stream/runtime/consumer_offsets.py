"""The offsets a worker has consumed, as Faust's consumer knows them (for the consumer-lag gauge).

Lag is counted, as Kafka's own tools count it, from the committed offset: the next
record the worker has not yet finished (processed, its outputs and state
acknowledged, acked and committed). Faust keeps that per partition on its consumer,
in ``Consumer._committed_offset``, which it updates on every commit and on the seek
to the committed offsets after an assignment. There is no public reader: aiokafka's
``committed`` asks the group coordinator (a broker round trip per partition), and
the monitor's ``tp_committed_offsets`` misses the seek after an assignment, so a
partition assigned with nothing new to commit would have no offset there.
"""

from __future__ import annotations

from collections.abc import Iterable

from faust.types import TP

NEEDED = ("_committed_offset",)


def committed_offsets(consumer, partitions: Iterable[TP]) -> dict[TP, int]:
    """The committed offset of each of ``partitions`` that has one (none before its first commit)."""
    known = consumer._committed_offset  # a defaultdict: .get does not add the partitions asked for
    found = {}
    for tp in partitions:
        offset = known.get(tp)
        if offset is not None:
            found[tp] = offset
    return found
