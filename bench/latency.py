"""Produce-to-forward latency through the StreamLake worker at a steady offered load.

The harness produces at a fixed rate, stamping each record with its produce
time, and reads the worker's output topic in the same process. The worker
forwards with the source record's timestamp, so latency = time read − timestamp.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamlake.broker.local import free_port
from streamlake.kafka.offsets import OffsetAdmin

from .common import RUNS_DIR, Child, ChildFailed, broker_settings, delete_topics_with, run_tag
from .report import print_simple
from .throughput import apply_streamlake_catalog, streamlake_argv, streamlake_env, streamlake_home
from .workload import make_workload


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[i]


async def wait_group_stable(kafka: OffsetAdmin, group: str, child: Child, limit_s: float = 120) -> float:
    deadline = time.monotonic() + limit_s
    while True:
        if not child.alive():
            raise ChildFailed(f"worker exited with {child.proc.returncode}:\n{child.tail()}")
        try:
            desc = await kafka.describe_group(group)
            if desc.state.value.lower() == "stable" and desc.members:
                return time.monotonic() - child.started
        except Exception:  # the coordinator may not be there yet
            pass
        if time.monotonic() > deadline:
            raise ChildFailed(f"the worker's group did not become stable in {limit_s:.0f}s:\n{child.tail()}")
        await asyncio.sleep(0.2)


async def measure_latency(url: str, rate: int, seconds: float, warmup: float, partitions: int, keys: int,
                          say: Callable[[str], None]) -> dict:
    tag = run_tag()
    run_dir = RUNS_DIR / tag
    bootstrap = broker_settings(url).bootstrap_servers
    prefix = app_id = f"bench-{tag}-lat"
    source, output = f"{prefix}.sales.orders.raw.v1", f"{prefix}.sales.orders.valid.v1"
    port = free_port()
    env = streamlake_env(dict(os.environ), url, prefix, app_id, port, run_dir / "worker-data",
                         streamlake_home(partitions, run_dir))
    total = int(rate * seconds)
    workload = make_workload(total, partitions, keys, dup_rate=0.0, malformed_rate=0.0)
    await apply_streamlake_catalog(env)
    child = Child.spawn("latency-worker", streamlake_argv(port), env, run_dir / "latency-worker.log")
    latencies: list[tuple[int, float]] = []  # (produce timestamp ms, latency ms)
    try:
        async with OffsetAdmin(broker_settings(url)) as kafka:
            ready_s = await wait_group_stable(kafka, app_id, child)
        say(f"worker joined its group after {ready_s:.1f}s; offering {rate}/s for {seconds:.0f}s")
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                    fetch_max_wait_ms=20)
        await consumer.start()
        tps = [TopicPartition(output, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
        await producer.start()
        done = asyncio.Event()

        async def read() -> None:
            while not (done.is_set() and len(latencies) >= total):
                batch = await consumer.getmany(timeout_ms=50)
                now_ms = time.time() * 1000
                for msgs in batch.values():
                    latencies.extend((m.timestamp, now_ms - m.timestamp) for m in msgs)

        reader = asyncio.create_task(read())
        tick = 0.01
        per_tick = rate * tick
        start = time.monotonic()
        sent = 0
        while sent < total:
            due = min(total, int((time.monotonic() - start) / tick * per_tick) + int(per_tick))
            while sent < due:
                part, key, value = workload.records[sent]
                await producer.send(source, value, key=key, partition=part, timestamp_ms=int(time.time() * 1000))
                sent += 1
            if not child.alive():
                raise ChildFailed(f"worker exited with {child.proc.returncode}:\n{child.tail()}")
            await asyncio.sleep(max(0.0, start + (sent / rate) - time.monotonic()))
        offered_s = time.monotonic() - start
        await producer.flush()
        done.set()
        try:
            await asyncio.wait_for(reader, timeout=60)
        except TimeoutError:
            say(f"only {len(latencies)} of {total} records came out within 60s of the end")
        await producer.stop()
        await consumer.stop()
        peak = child.peak_rss_mb()
    finally:
        child.stop()
        await delete_topics_with(url, tag)
        shutil.rmtree(run_dir, ignore_errors=True)
    cutoff = (min(ts for ts, _ in latencies) + warmup * 1000) if latencies else 0
    steady = sorted(lat for ts, lat in latencies if ts >= cutoff)
    return {
        "run": tag,
        "offered_rate": rate, "achieved_rate": round(total / offered_s), "seconds": seconds, "warmup_s": warmup,
        "records": total, "received": len(latencies), "measured": len(steady),
        "p50_ms": round(percentile(steady, 50), 1), "p90_ms": round(percentile(steady, 90), 1),
        "p99_ms": round(percentile(steady, 99), 1), "max_ms": round(steady[-1], 1) if steady else None,
        "mean_ms": round(statistics.fmean(steady), 1) if steady else None,
        "worker_peak_rss_mb": peak, "worker_join_s": round(ready_s, 2),
        "fast_path_env": env.get("STREAMLAKE_FAST_PATH"),
    }


def print_latency(report: dict, markdown: bool) -> None:
    headers = ["offered", "achieved", "records out", "p50", "p90", "p99", "max", "worker peak RSS"]
    row = [f"{report['offered_rate']:,}/s", f"{report['achieved_rate']:,}/s",
           f"{report['received']:,}/{report['records']:,}", f"{report['p50_ms']} ms", f"{report['p90_ms']} ms",
           f"{report['p99_ms']} ms", f"{report['max_ms']} ms", f"{report['worker_peak_rss_mb']} MB"]
    print_simple(f"Produce-to-forward latency through the StreamLake worker "
                 f"({report['seconds']:.0f}s, first {report['warmup_s']:.0f}s left out)", headers, [row], markdown)
