"""``python -m bench producer``: the producer SDK (validate + key + partition + send) against a raw aiokafka loop.

Both sides send the same records (JSON objects with a key field and a per-key
seq) to their own fresh topic with the same client settings (idempotent,
acks=all, linger 5 ms, 256 KiB batches) and stop the clock when every send is
acknowledged. The raw loop serialises with orjson and lets aiokafka's default
partitioner (murmur2, as Java's) place the key; it checks nothing. Runs
alternate (raw, SDK, raw, SDK, ...) so both see the same machine load; the
median of each is reported, with the load average.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from streamlake.catalog import TopicRole, TopicSpec
from streamlake.config import Settings
from streamlake.kafka.admin import create_topics
from streamlake.producer import StreamProducer
from streamlake.topology import Stream

from .common import delete_topics_with, run_tag

PRODUCER_OPTIONS: dict[str, Any] = {"acks": "all", "enable_idempotence": True, "linger_ms": 5,
                                    "max_batch_size": 256 * 1024}
STREAM = Stream(domain="bench", dataset="orders", key_field="order_id", sequence_field="seq")


def make_records(records: int, keys: int) -> list[dict]:
    seqs = [0] * keys
    out = []
    for i in range(records):
        k = (i * 7919) % keys
        seqs[k] += 1
        out.append({"order_id": f"order-{k}", "seq": seqs[k], "amount": i % 1000, "currency": "EUR"})
    return out


async def raw_loop(bootstrap: str, topic: str, docs: list[dict]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_OPTIONS)
    await producer.start()
    try:
        started = time.monotonic()
        pending = []
        for doc in docs:
            pending.append(await producer.send(topic, orjson.dumps(doc), key=doc["order_id"].encode()))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return time.monotonic() - started
    finally:
        await producer.stop()


async def sdk_loop(settings: Settings, partitions: int, docs: list[dict]) -> float:
    producer = StreamProducer(STREAM, settings, partitions=partitions, client_id="bench-sdk")
    await producer.start()
    try:
        started = time.monotonic()
        for doc in docs:
            await producer.send(doc)
        await producer.flush()
        seconds = time.monotonic() - started
    finally:
        await producer.close()
    if producer.metrics.delivered != len(docs):
        raise RuntimeError(f"the SDK delivered {producer.metrics.delivered} of {len(docs)}")
    return seconds


async def measure_producer(url: str, records: int, keys: int, partitions: int, repeat: int,
                           say: Callable[[str], None]) -> dict:
    tag = run_tag()
    prefix = f"bench{tag}"
    settings = Settings(broker=url, topic_prefix=prefix)
    bootstrap = settings.bootstrap_servers
    docs = make_records(records, keys)
    runs: dict[str, list[float]] = {"raw": [], "sdk": []}
    loads = []
    try:
        for i in range(repeat):
            for side in ("raw", "sdk"):
                topic = str(STREAM.source_topic(f"{prefix}-{side}{i}"))
                await create_topics(settings, [TopicSpec(topic, STREAM.name, TopicRole.SOURCE, partitions, 1)])
                if side == "raw":
                    seconds = await raw_loop(bootstrap, topic, docs)
                else:
                    side_settings = Settings(broker=url, topic_prefix=f"{prefix}-{side}{i}")
                    seconds = await sdk_loop(side_settings, partitions, docs)
                runs[side].append(seconds)
                loads.append(os.getloadavg()[0])
                say(f"{side} run {i + 1}: {records / seconds:,.0f} records/s (load {loads[-1]:.2f})")
    finally:
        await delete_topics_with(url, tag)
    raw = statistics.median(runs["raw"])
    sdk = statistics.median(runs["sdk"])
    return {
        "records": records, "keys": keys, "partitions": partitions, "repeat": repeat,
        "raw_records_per_second": round(records / raw), "sdk_records_per_second": round(records / sdk),
        "ratio": round(raw / sdk, 3), "runs_seconds": runs, "load_average": [round(x, 2) for x in os.getloadavg()],
        "load_during_runs": [round(x, 2) for x in loads],
    }


def print_producer(report: dict, markdown: bool) -> None:
    r = report
    if markdown:
        print("| path | records/s | × raw |\n|---|---:|---:|")
        print(f"| raw aiokafka producer loop | {r['raw_records_per_second']:,} | 1.00 |")
        print(f"| streamlake.producer (validate + send) | {r['sdk_records_per_second']:,} | {r['ratio']:.2f} |")
        print(f"\n`{r['command']}` · load average {r['load_average']} · {r['records']:,} records, "
              f"{r['keys']:,} keys, {r['partitions']} partitions, median of {r['repeat']}")
        return
    print(f"raw aiokafka producer loop     {r['raw_records_per_second']:>9,} records/s")
    print(f"streamlake.producer (SDK)      {r['sdk_records_per_second']:>9,} records/s   {r['ratio']:.2f}x raw "
          f"(target >= 0.80x)")
    print(f"{r['records']:,} records, {r['keys']:,} keys, {r['partitions']} partitions, median of {r['repeat']}; "
          f"load average {r['load_average']} (during runs {r['load_during_runs']})")
