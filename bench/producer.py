"""``python -m bench producer``: the producer SDK against a raw aiokafka loop, and the repartition path.

Part 1, the SDK (validate + key + partition + send) against a raw aiokafka loop.

All sides send the same records (JSON objects with a key field and a per-key
seq) to their own fresh topic with the same client settings (idempotent,
acks=all, linger 5 ms, 256 KiB batches) and stop the clock when every send is
acknowledged. The raw loop serialises with orjson and lets aiokafka's default
partitioner (murmur2, as Java's, in pure Python) place the key; the second raw
loop is handed serialised values and computes partitions with StreamLake's
cached partitioner: the cheapest a loop can be. Neither checks anything. Runs
alternate (raw, SDK, raw, SDK, ...) so both see the same machine load; the
median of each is reported, with the load average.

Part 2, the repartition path: a StreamLake worker fed records that all sit
on another partition than their key's (every one goes through
``<source>.repartition``) against a worker fed the same records on their
keys' partitions (the direct path). Each side gets its own topics and a fresh
worker, warmed up with a few records first; the clock runs from the first
record produced until the last one is in the output topic.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streamlake.broker.local import free_port
from streamlake.catalog import TopicRole, TopicSpec
from streamlake.config import Settings
from streamlake.kafka.admin import create_topics
from streamlake.kafka.offsets import OffsetAdmin
from streamlake.partitioner import cached_partition_for_key, partition_for_key
from streamlake.producer import StreamProducer
from streamlake.topology import Stream

from .common import RUNS_DIR, Child, broker_settings, delete_topics_with, run_tag
from .throughput import apply_streamlake_catalog, streamlake_argv, streamlake_env, streamlake_home
from .workload import produce_workload

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


async def raw_loop(bootstrap: str, topic: str, docs: list[dict], partitions: int | None = None) -> float:
    """A plain aiokafka loop; with *partitions*, the partition is computed up front (no client partitioner)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_OPTIONS)
    placed = [(orjson.dumps(doc), doc["order_id"].encode()) for doc in docs] if partitions else None
    await producer.start()
    try:
        started = time.monotonic()
        pending = []
        if placed is not None and partitions:
            for value, key in placed:
                pending.append(await producer.send(topic, value, key=key,
                                                   partition=cached_partition_for_key(key, partitions)))
                if len(pending) >= 20_000:
                    await asyncio.gather(*pending)
                    pending.clear()
        else:
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
    runs: dict[str, list[float]] = {"raw": [], "raw-placed": [], "sdk": []}
    loads = []
    try:
        for i in range(repeat):
            for side in runs:
                topic = str(STREAM.source_topic(f"{prefix}-{side}{i}"))
                await create_topics(settings, [TopicSpec(topic, STREAM.name, TopicRole.SOURCE, partitions, 1)])
                if side == "raw":
                    seconds = await raw_loop(bootstrap, topic, docs)
                elif side == "raw-placed":
                    seconds = await raw_loop(bootstrap, topic, docs, partitions)
                else:
                    side_settings = Settings(broker=url, topic_prefix=f"{prefix}-{side}{i}")
                    seconds = await sdk_loop(side_settings, partitions, docs)
                runs[side].append(seconds)
                loads.append(os.getloadavg()[0])
                say(f"{side} run {i + 1}: {records / seconds:,.0f} records/s (load {loads[-1]:.2f})")
    finally:
        await delete_topics_with(url, tag)
    raw, placed, sdk = (statistics.median(runs[side]) for side in ("raw", "raw-placed", "sdk"))
    return {
        "records": records, "keys": keys, "partitions": partitions, "repeat": repeat,
        "raw_records_per_second": round(records / raw), "raw_placed_records_per_second": round(records / placed),
        "sdk_records_per_second": round(records / sdk),
        "ratio": round(raw / sdk, 3), "ratio_to_placed": round(placed / sdk, 3), "runs_seconds": runs,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "load_during_runs": [round(x, 2) for x in loads],
    }


def print_producer(report: dict, markdown: bool) -> None:
    r = report
    if markdown:
        print("| path | records/s | × raw loop | × raw loop, partition given |\n|---|---:|---:|---:|")
        print(f"| raw aiokafka loop (aiokafka's partitioner) | {r['raw_records_per_second']:,} | 1.00 | |")
        print(f"| raw aiokafka loop (partition given, no checks) | {r['raw_placed_records_per_second']:,} | | 1.00 |")
        print(f"| streamlake.producer (validate + send) | {r['sdk_records_per_second']:,} | {r['ratio']:.2f} | "
              f"{r['ratio_to_placed']:.2f} |")
        print(f"\n`{r['command']}` · load average {r['load_average']} · {r['records']:,} records, "
              f"{r['keys']:,} keys, {r['partitions']} partitions, median of {r['repeat']}")
        return
    print(f"raw aiokafka loop (aiokafka's partitioner)      {r['raw_records_per_second']:>9,} records/s")
    print(f"raw aiokafka loop (partition given, no checks)  {r['raw_placed_records_per_second']:>9,} records/s")
    print(f"streamlake.producer (validate + send)           {r['sdk_records_per_second']:>9,} records/s   "
          f"{r['ratio']:.2f}x the raw loop, {r['ratio_to_placed']:.2f}x the raw loop with partitions given "
          f"(target >= 0.80x)")
    print(f"{r['records']:,} records, {r['keys']:,} keys, {r['partitions']} partitions, median of {r['repeat']}; "
          f"load average {r['load_average']} (during runs {r['load_during_runs']})")


async def _output_count(kafka: OffsetAdmin, topic: str, partitions: int) -> int:
    _, ends = await kafka.log_offsets([(topic, p) for p in range(partitions)])
    return sum(ends.values())


def _placed(docs: list[dict], partitions: int, misplace: bool) -> list[tuple[int, bytes, bytes]]:
    records = []
    for doc in docs:
        key = doc["order_id"].encode()
        partition = partition_for_key(key, partitions)
        records.append(((partition + 1) % partitions if misplace else partition, key, orjson.dumps(doc)))
    return records


async def _wait_output(kafka: OffsetAdmin, child: Child, topic: str, partitions: int, count: int,
                       within: float) -> None:
    deadline = time.monotonic() + within
    while (written := await _output_count(kafka, topic, partitions)) < count:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited: {child.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{child.name}: {written} of {count} forwarded before the deadline")
        await asyncio.sleep(0.05)


async def _worker_run(url: str, tag: str, side: str, rep: int, docs: list[dict], partitions: int,
                      misplace: bool, run_dir: Path) -> float:
    """Seconds from the first record produced to the last one forwarded, on a warmed-up worker."""
    prefix = f"bench-{tag}-{side}-r{rep}"
    port = free_port()
    env = streamlake_env(dict(os.environ) | {"PYTHONUNBUFFERED": "1"}, url, prefix, prefix, port,
                         run_dir / f"{side}-r{rep}-data", streamlake_home(partitions, run_dir))
    await apply_streamlake_catalog(env)
    bootstrap = broker_settings(url).bootstrap_servers
    source, output = f"{prefix}.sales.orders.raw.v1", f"{prefix}.sales.orders.valid.v1"
    warmup = [{"order_id": f"warm-{i}", "seq": 1} for i in range(4 * partitions)]
    records = _placed(docs, partitions, misplace)
    child = Child.spawn(f"{side}-r{rep}", streamlake_argv(port), env, run_dir / f"{side}-r{rep}.log")
    try:
        async with OffsetAdmin(broker_settings(url)) as kafka:
            # The worker's start and first rebalance stay out of the figure: warm it up first.
            await produce_workload(bootstrap, source, _placed(warmup, partitions, misplace))
            await _wait_output(kafka, child, output, partitions, len(warmup), 300)
            started = time.monotonic()
            await produce_workload(bootstrap, source, records)
            await _wait_output(kafka, child, output, partitions, len(warmup) + len(records), 120 + len(docs) / 200)
            return time.monotonic() - started
    finally:
        child.stop()


async def measure_repartition(url: str, records: int, keys: int, partitions: int, repeat: int,
                              say: Callable[[str], None]) -> dict:
    tag = run_tag()
    run_dir = RUNS_DIR / tag
    docs = make_records(records, keys)
    runs: dict[str, list[float]] = {"direct": [], "repartition": []}
    loads = []
    try:
        for rep in range(repeat):
            for side in ("direct", "repartition"):
                seconds = await _worker_run(url, tag, side, rep, docs, partitions, side == "repartition", run_dir)
                runs[side].append(seconds)
                loads.append(os.getloadavg()[0])
                say(f"{side} run {rep + 1}: {records:,} records produced and forwarded in {seconds:.1f}s = "
                    f"{records / seconds:,.0f}/s (load {loads[-1]:.2f})")
    finally:
        await delete_topics_with(url, tag)
        shutil.rmtree(run_dir, ignore_errors=True)
    direct = statistics.median(records / x for x in runs["direct"])
    moved = statistics.median(records / x for x in runs["repartition"])
    return {
        "records": records, "keys": keys, "partitions": partitions, "repeat": repeat,
        "direct_records_per_second": round(direct), "repartition_records_per_second": round(moved),
        "ratio": round(moved / direct, 3), "runs_seconds": {k: [round(x, 2) for x in v] for k, v in runs.items()},
        "load_average": [round(x, 2) for x in os.getloadavg()], "load_during_runs": [round(x, 2) for x in loads],
    }


def print_repartition(report: dict, markdown: bool) -> None:
    r = report
    if markdown:
        print("| path | records/s | × direct |\n|---|---:|---:|")
        print(f"| direct (records on their key's partition) | {r['direct_records_per_second']:,} | 1.00 |")
        print(f"| repartition (100% on another partition) | {r['repartition_records_per_second']:,} | {r['ratio']:.2f} |")
        print(f"\nload average {r['load_average']} · {r['records']:,} records, {r['keys']:,} keys, "
              f"{r['partitions']} partitions, median of {r['repeat']}")
        return
    print(f"direct path                    {r['direct_records_per_second']:>9,} records/s")
    print(f"repartition path (100% moved)  {r['repartition_records_per_second']:>9,} records/s   "
          f"{r['ratio']:.2f}x direct (target >= 0.50x)")
    print(f"{r['records']:,} records, {r['keys']:,} keys, {r['partitions']} partitions, median of {r['repeat']}; "
          f"load average {r['load_average']} (during runs {r['load_during_runs']})")
