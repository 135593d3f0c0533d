"""Decoded customer states kept beside the state table, reused while the table holds their bytes.

Decoding a state from the table's bytes and encoding it back took a large share of
the featurize step's CPU. The table stays the source of truth: a cached state is
reused only while the table still holds the very bytes it was encoded to, so a table
restored from its changelog, or changed by anything else, is decoded afresh (this is
exact because ``CustomerState.from_bytes(state.to_bytes()) == state``).

A state is taken out of the cache while a batch changes it and put back only with
the bytes written to the table, so a batch that fails half-way never leaves a
changed state behind. The cache holds at most ``limit`` states, dropping the least
recently used.
"""

from __future__ import annotations

from stream.pipeline.features import CustomerState


class StateCache:
    """Decoded :class:`CustomerState` objects by key, each with the table bytes it matches."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._entries: dict[bytes, tuple[bytes, CustomerState]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, key: bytes, raw: bytes | None) -> CustomerState | None:
        """The state the table's ``raw`` bytes encode; the cache gives it up until :meth:`put`."""
        entry = self._entries.pop(key, None)
        if raw is None:
            return None
        if entry is not None and (entry[0] is raw or entry[0] == raw):
            return entry[1]
        return CustomerState.from_bytes(raw)

    def put(self, key: bytes, raw: bytes, state: CustomerState) -> None:
        """Remember ``state``, which the table now holds as ``raw``."""
        entries = self._entries
        if len(entries) >= self.limit and key not in entries:
            del entries[next(iter(entries))]
        entries[key] = (raw, state)
