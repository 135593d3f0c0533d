"""murmur2 partitioning matches Kafka's Java client (and so Faust's aiokafka)."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from stream.kafka.partitioning import murmur2, partition_for

pytestmark = pytest.mark.unit

# org.apache.kafka.common.utils.UtilsTest#testMurmur2, plus the empty array.
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"": 275646681,
}


@pytest.mark.parametrize(("data", "expected"), JAVA_VECTORS.items())
def test_murmur2_matches_kafka_java_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_partition_uses_the_positive_hash() -> None:
    assert partition_for(b"foobar", 50) == 16
    assert partition_for("21", 4) == ((-973932308) & 0x7FFFFFFF) % 4


def test_agrees_with_faust_partitioner_on_random_keys() -> None:
    rng = random.Random(1)
    for _ in range(2000):
        key = rng.randbytes(rng.randrange(0, 40))
        assert murmur2(key) & 0x7FFFFFFF == aiokafka_murmur2(key) & 0x7FFFFFFF


def test_str_keys_are_utf8() -> None:
    assert partition_for("kündigung-42", 12) == partition_for("kündigung-42".encode(), 12)


def test_partitions_must_be_positive() -> None:
    with pytest.raises(ValueError):
        partition_for(b"k", 0)
