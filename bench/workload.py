"""The benchmark workload: sales.orders-shaped JSON, keyed and partitioned like Java's producer."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamlake.partitioner import partition_for_key

STATUSES = ("created", "paid", "packed", "shipped", "delivered")
CHANNELS = ("web", "app", "store", "phone")


@dataclass(frozen=True)
class Workload:
    """The records to prefill, in produce order, with their partitions."""

    records: list[tuple[int, bytes, bytes]]  # (partition, key, value)
    partitions: int
    keys: int
    duplicates: int
    malformed: int

    @property
    def mean_value_bytes(self) -> float:
        return sum(len(v) for _, _, v in self.records) / max(1, len(self.records))

    def describe(self) -> dict:
        return {"records": len(self.records), "partitions": self.partitions, "keys": self.keys,
                "duplicates": self.duplicates, "malformed": self.malformed,
                "mean_value_bytes": round(self.mean_value_bytes, 1)}


def order_value(key: str, seq: int, rng: random.Random) -> bytes:
    """About 150 bytes of order JSON (the sales.orders shape: order_id and seq, plus padding fields)."""
    return orjson.dumps({
        "order_id": key, "seq": seq,
        "customer_id": f"c-{rng.randrange(10**6):06d}",
        "amount": round(rng.uniform(1, 999), 2), "currency": "EUR",
        "status": STATUSES[seq % len(STATUSES)], "channel": rng.choice(CHANNELS),
        "sku": f"sku-{rng.randrange(10**5):05d}", "qty": rng.randrange(1, 9),
    })


def make_workload(records: int, partitions: int, keys: int, dup_rate: float = 0.01,
                  malformed_rate: float = 0.01, seed: int = 8) -> Workload:
    """Build *records* records: in-order ``seq`` per key, ~1% duplicates, ~1% malformed.

    A duplicate repeats a key's previous record byte for byte; a malformed
    record is an extra, truncated JSON value under a real key (it does not
    use up a sequence number). Deterministic for a given *seed*.
    """
    rng = random.Random(seed)
    names = [f"o-{i:07d}" for i in range(keys)]
    key_bytes = [n.encode() for n in names]
    part = [partition_for_key(k, partitions) for k in key_bytes]
    next_seq = [0] * keys
    last: list[bytes | None] = [None] * keys
    out: list[tuple[int, bytes, bytes]] = []
    dups = bad = 0
    for _ in range(records):
        i = rng.randrange(keys)
        roll = rng.random()
        if roll < dup_rate and last[i] is not None:
            value = last[i]
            dups += 1
        elif roll < dup_rate + malformed_rate:
            value = order_value(names[i], next_seq[i], rng)[:-9]  # truncated: not JSON
            bad += 1
        else:
            value = order_value(names[i], next_seq[i], rng)
            next_seq[i] += 1
            last[i] = value
        out.append((part[i], key_bytes[i], value))
    return Workload(out, partitions, keys, dups, bad)


async def create_topics(bootstrap: str, names: list[str], partitions: int,
                        configs: dict[str, str] | None = None) -> None:
    """Create *names* with *partitions* partitions each (replication 1); existing ones are left."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resp = await admin.create_topics([NewTopic(n, partitions, 1, topic_configs=dict(configs or {})) for n in names])
        for t in resp.to_object()["topic_errors"]:
            if t["error_code"] and t["error_code"] != TopicAlreadyExistsError.errno:
                raise RuntimeError(f"creating {t['topic']} failed: error {t['error_code']} {t['error_message']}")
        deadline = time.monotonic() + 30
        while True:  # wait until metadata shows every partition with a leader
            meta = {t["topic"]: t for t in await admin.describe_topics(names)}
            if all(n in meta and meta[n]["error_code"] == 0 and len(meta[n]["partitions"]) == partitions
                   and all(p["leader"] >= 0 for p in meta[n]["partitions"]) for n in names):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"topics {names} not ready after 30s")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def produce_workload(bootstrap: str, topic: str, records: list[tuple[int, bytes, bytes]],
                           timestamps: list[int] | None = None) -> float:
    """Produce *records* (fast: batched, acks=1, awaited in bulk); return the seconds it took."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=10,
                                max_batch_size=512 * 1024, max_request_size=4 * 1024 * 1024)
    await producer.start()
    t0 = time.monotonic()
    try:
        pending = []
        for i, (partition, key, value) in enumerate(records):
            ts = timestamps[i] if timestamps is not None else None
            pending.append(await producer.send(topic, value, key=key, partition=partition, timestamp_ms=ts))
            if len(pending) >= 20000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - t0
