"""Parity of :func:`partition_for_key` with Kafka's own Java code.

The expected values come from the Kafka 4.x client jar (``Utils.murmur2`` and
``BuiltInPartitioner.partitionForKey``), run by a tiny Java program compiled
at test time; never from our own function.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from streamlake.broker.local import DEFAULT_KAFKA_VERSION, resolve_jars
from streamlake.partitioner import murmur2, partition_for_key

JAVA_SOURCE = Path(__file__).parent / "java" / "PartitionVectors.java"
PARTITION_COUNTS = (1, 2, 3, 7, 8, 12, 16, 100, 1000, 2**31 - 1)


def _keys() -> list[bytes]:
    rng = random.Random(20240603)  # fixed: the same vectors every run
    texts = [
        "order-1", "order-2", "a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg",
        "customer:42", "ORDER-XYZ-000001", "12345678901234567890",
        "café", "naïve-ключ", "日本語のキー", "emoji-🚀🔥", "Ωmega", "\u0000nul-inside",
        "x" * 1000, "long-" + "αβγ" * 400,
    ]
    keys = [t.encode("utf-8") for t in texts]
    keys.append(b"")  # the empty key
    keys += [bytes([b]) for b in (0x00, 0x7F, 0x80, 0xFF)]  # sign-extension edge cases in Java's byte
    keys += [rng.randbytes(rng.randint(1, 64)) for _ in range(200)]
    keys.append(rng.randbytes(10_000))
    return keys


@pytest.fixture(scope="module")
def java_vectors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[int]]:
    javac = shutil.which("javac")
    assert javac, "javac (JDK 17+) is required for the partitioner parity test"
    libs = resolve_jars(DEFAULT_KAFKA_VERSION)
    build = tmp_path_factory.mktemp("java")
    classpath = f"{libs}/*"
    subprocess.run([javac, "-cp", classpath, "-d", str(build), str(JAVA_SOURCE)], check=True, capture_output=True)
    proc = subprocess.run(
        ["java", "-cp", f"{build}:{classpath}", "PartitionVectors", *map(str, PARTITION_COUNTS)],
        input="\n".join(k.hex() for k in _keys()) + "\n", capture_output=True, text=True, check=True,
    )
    vectors = {}
    for line in proc.stdout.splitlines():
        hexkey, *numbers = line.split("\t")
        vectors[hexkey] = [int(n) for n in numbers]
    return vectors


def test_java_program_returned_a_vector_for_every_key(java_vectors: dict[str, list[int]]) -> None:
    assert set(java_vectors) == {k.hex() for k in _keys()}


@pytest.mark.parametrize("key", _keys(), ids=lambda k: k[:12].hex() or "empty")
def test_murmur2_and_partition_match_kafka_java_client(key: bytes, java_vectors: dict[str, list[int]]) -> None:
    java_hash, *java_partitions = java_vectors[key.hex()]
    assert murmur2(key) == java_hash
    assert [partition_for_key(key, n) for n in PARTITION_COUNTS] == java_partitions


def test_keys_spread_over_partitions_like_java(java_vectors: dict[str, list[int]]) -> None:
    # Guards against a vacuous parity: the vectors must actually use many partitions.
    used = {vector[PARTITION_COUNTS.index(8) + 1] for vector in java_vectors.values()}
    assert used == set(range(8))
