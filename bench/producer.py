"""``python -m bench producer``: the producer SDK against a raw aiokafka loop, and the repartition path.

Part 1, the SDK (validate + key + partition + send) against a raw aiokafka loop.

Both sides send the same records (JSON objects with a key field and a per-key
seq) to their own fresh topic with the same client settings (idempotent,
acks=all, linger 5 ms, 256 KiB batches) and stop the clock when every send is
acknowledged. The raw loop serialises with orjson and lets aiokafka's default
partitioner (murmur2, as Java's) place the key; it checks nothing. Runs
alternate (raw, SDK, raw, SDK, ...) so both see the same machine load; the
median of each is reported, with the load average.

Part 2, the repartition path: a StreamLake worker fed records that all sit
on another partition than their key's (every one goes through
``<source>.repartition``) against a worker fed the same records on their
keys' partitions (the direct path). Each side gets its own topics and a fresh
worker; the clock runs from the worker's start until every record is in the
output topic, and the rate after the first output is reported too.
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
from streamlake.partitioner import partition_for_key
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


async def _output_count(kafka: OffsetAdmin, topic: str, partitions: int) -> int:
    _, ends = await kafka.log_offsets([(topic, p) for p in range(partitions)])
    return sum(ends.values())


async def _worker_run(url: str, tag: str, side: str, rep: int, docs: list[dict], partitions: int,
                      misplace: bool, run_dir: Path) -> tuple[float, float]:
    """Seconds from the worker's start to its first output and to its last."""
    prefix = f"bench-{tag}-{side}-r{rep}"
    port = free_port()
    env = streamlake_env(dict(os.environ) | {"PYTHONUNBUFFERED": "1"}, url, prefix, prefix, port,
                         run_dir / f"{side}-r{rep}-data", streamlake_home(partitions, run_dir))
    await apply_streamlake_catalog(env)
    bootstrap = broker_settings(url).bootstrap_servers
    records = []
    for doc in docs:
        key = doc["order_id"].encode()
        partition = partition_for_key(key, partitions)
        records.append(((partition + 1) % partitions if misplace else partition, key, orjson.dumps(doc)))
    await produce_workload(bootstrap, f"{prefix}.sales.orders.raw.v1", records)
    output = f"{prefix}.sales.orders.valid.v1"
    child = Child.spawn(f"{side}-r{rep}", streamlake_argv(port), env, run_dir / f"{side}-r{rep}.log")
    first = None
    try:
        async with OffsetAdmin(broker_settings(url)) as kafka:
            deadline = time.monotonic() + 120 + len(docs) / 200
            while True:
                if not child.alive():
                    raise RuntimeError(f"{side} worker exited: {child.tail()}")
                written = await _output_count(kafka, output, partitions)
                now = time.monotonic() - child.started
                if written and first is None:
                    first = now
                if written >= len(docs):
                    return first or now, now
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{side}: {written} of {len(docs)} forwarded before the deadline")
                await asyncio.sleep(0.05)
    finally:
        child.stop()


async def measure_repartition(url: str, records: int, keys: int, partitions: int, repeat: int,
                              say: Callable[[str], None]) -> dict:
    tag = run_tag()
    run_dir = RUNS_DIR / tag
    docs = make_records(records, keys)
    runs: dict[str, list[tuple[float, float]]] = {"direct": [], "repartition": []}
    loads = []
    try:
        for rep in range(repeat):
            for side in ("direct", "repartition"):
                first, done = await _worker_run(url, tag, side, rep, docs, partitions, side == "repartition", run_dir)
                runs[side].append((first, done))
                loads.append(os.getloadavg()[0])
                say(f"{side} run {rep + 1}: {records} records forwarded {done:.1f}s after the worker started "
                    f"({records / max(done - first, 1e-9):,.0f}/s after the first output; load {loads[-1]:.2f})")
    finally:
        await delete_topics_with(url, tag)
        shutil.rmtree(run_dir, ignore_errors=True)

    def rates(side: str) -> tuple[float, float]:
        total = statistics.median(records / done for _, done in runs[side])
        steady = statistics.median(records / max(done - first, 1e-9) for first, done in runs[side])
        return total, steady

    direct, direct_steady = rates("direct")
    moved, moved_steady = rates("repartition")
    return {
        "records": records, "keys": keys, "partitions": partitions, "repeat": repeat,
        "direct_records_per_second": round(direct), "repartition_records_per_second": round(moved),
        "ratio": round(moved / direct, 3),
        "direct_after_first_output": round(direct_steady), "repartition_after_first_output": round(moved_steady),
        "ratio_after_first_output": round(moved_steady / direct_steady, 3),
        "runs_seconds": {k: [[round(a, 2), round(b, 2)] for a, b in v] for k, v in runs.items()},
        "load_average": [round(x, 2) for x in os.getloadavg()], "load_during_runs": [round(x, 2) for x in loads],
    }


def print_repartition(report: dict, markdown: bool) -> None:
    r = report
    if markdown:
        print("| path | records/s (from worker start) | × direct | records/s after first output | × direct |")
        print("|---|---:|---:|---:|---:|")
        print(f"| direct (records on their key's partition) | {r['direct_records_per_second']:,} | 1.00 | "
              f"{r['direct_after_first_output']:,} | 1.00 |")
        print(f"| repartition (100% on another partition) | {r['repartition_records_per_second']:,} | "
              f"{r['ratio']:.2f} | {r['repartition_after_first_output']:,} | {r['ratio_after_first_output']:.2f} |")
        print(f"\nload average {r['load_average']} · {r['records']:,} records, {r['keys']:,} keys, "
              f"{r['partitions']} partitions, median of {r['repeat']}")
        return
    print(f"direct path                    {r['direct_records_per_second']:>9,} records/s "
          f"({r['direct_after_first_output']:,}/s after the first output)")
    print(f"repartition path (100% moved)  {r['repartition_records_per_second']:>9,} records/s "
          f"({r['repartition_after_first_output']:,}/s after the first output)   {r['ratio']:.2f}x direct "
          f"({r['ratio_after_first_output']:.2f}x after the first output; target >= 0.50x)")
    print(f"{r['records']:,} records, {r['keys']:,} keys, {r['partitions']} partitions, median of {r['repeat']}; "
          f"load average {r['load_average']} (during runs {r['load_during_runs']})")
