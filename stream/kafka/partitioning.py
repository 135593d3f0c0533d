"""Kafka's default key partitioner (murmur2), as the Java client computes it.

librdkafka's ``murmur2_random`` partitioner, aiokafka's (and so Faust's) default
partitioner and the Java client all send a key to
``(murmur2(key) & 0x7fffffff) % partitions``. That partition is a customer's home: its
state's changelog records go there, and the worker that owns it keeps the state.
librdkafka's own default (``consistent_random``, CRC32) sends most keys elsewhere; the
worker re-publishes such events to their home (:class:`HomePartitions` tells it where).

>>> murmur2(b"21")
-973932308
>>> partition_for(b"foobar", 50)
16
"""

from __future__ import annotations

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """The 32-bit murmur2 hash of ``data`` as a signed int, like ``Utils.murmur2`` in Java."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    rest = length & 3
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes | str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a non-null ``key``."""
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    data = key.encode() if isinstance(key, str) else key
    return (murmur2(data) & 0x7FFFFFFF) % partitions


class HomePartitions:
    """``partition_for(key, partitions)``, remembered for the keys seen most recently.

    Computing murmur2 in Python costs far more than a dict lookup; a worker asks once
    per event, and customers' keys repeat. The memo is dropped whole when it reaches
    ``capacity`` keys (about 100 bytes each).

    >>> home = HomePartitions(50)
    >>> home(b"foobar"), home(b"foobar")
    (16, 16)
    """

    __slots__ = ("partitions", "capacity", "_memo")

    def __init__(self, partitions: int, capacity: int = 200_000) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.partitions = partitions
        self.capacity = capacity
        self._memo: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        home = self._memo.get(key)
        if home is None:
            if len(self._memo) >= self.capacity:
                self._memo.clear()
            home = self._memo[key] = (murmur2(key) & 0x7FFFFFFF) % self.partitions
        return home
