"""The default partitioner against Kafka's published murmur2 vectors.

The vectors are those of Kafka's own ``UtilsTest.testMurmur2``; the full
parity run against the Kafka jar is ``tests/integration/test_partitioner_parity.py``.
"""

from __future__ import annotations

import pytest

from streamlake.partitioner import murmur2, partition_for_key

# From apache/kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java
KAFKA_MURMUR2_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("key, expected", KAFKA_MURMUR2_VECTORS.items(), ids=lambda v: str(v))
def test_murmur2_matches_kafka_published_vectors(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_partition_is_positive_hash_modulo_count() -> None:
    # -973932308 & 0x7fffffff = 1173551340, and 1173551340 % 8 = 4
    assert partition_for_key(b"21", 8) == 4
    assert partition_for_key(b"21", 1) == 0


def test_same_key_always_gets_the_same_partition() -> None:
    assert len({partition_for_key("order-17".encode(), 12) for _ in range(5)}) == 1


def test_partition_count_must_be_positive() -> None:
    with pytest.raises(ValueError):
        partition_for_key(b"k", 0)
