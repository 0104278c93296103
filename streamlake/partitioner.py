"""Key -> partition exactly as Kafka's Java producer does it by default.

``BuiltInPartitioner.partitionForKey``: ``toPositive(murmur2(key)) % partitions``,
where ``toPositive`` is ``& 0x7fffffff``. Producers in any language that use
this rule put a key on the same partition as StreamLake does, so per-key order
holds end to end. Pure: no Kafka client is imported here.
"""

from __future__ import annotations

import functools

__all__ = ["murmur2", "partition_for_key", "cached_partition_for_key"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Return Kafka's ``Utils.murmur2`` of *data* as a signed 32-bit int, as Java has it."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    # Java's switch falls through: case 3 also runs cases 2 and 1.
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


def partition_for_key(key: bytes, num_partitions: int) -> int:
    """Return the partition the Java client's default partitioner picks for *key*.

    An empty key hashes like any other; StreamLake rejects missing or empty keys
    (to the DLQ) before it partitions, so this never picks a random partition.

    Raises:
        ValueError: if *num_partitions* is not positive.
    """
    if num_partitions < 1:
        raise ValueError(f"num_partitions must be at least 1, got {num_partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


#: The hot path sees the same keys again and again: remember their partitions.
cached_partition_for_key = functools.lru_cache(maxsize=1 << 16)(partition_for_key)
