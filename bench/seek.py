"""Timestamp seek: the broker's time index (offsets_for_times) on a small and a large topic.

Each topic gets records 1 ms apart (so every lookup has a distinct answer),
then the harness times StreamLake's own lookup
(:meth:`streamlake.kafka.offsets.OffsetAdmin.offsets_for_time`, all
partitions in one request) at random timestamps inside the topic's span:
once with a fresh client (what a CLI command pays) and repeatedly with a warm one.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

from streamlake.kafka.offsets import OffsetAdmin

from .common import broker_settings, delete_topics_with, run_tag
from .report import print_simple
from .workload import create_topics, make_workload, produce_workload


async def measure_seek(url: str, sizes: list[int], partitions: int, lookups: int,
                       say: Callable[[str], None]) -> dict:
    tag = run_tag()
    bootstrap = broker_settings(url).bootstrap_servers
    settings = broker_settings(url)
    rng = random.Random(1)
    rows = []
    try:
        for size in sizes:
            topic = f"bench-{tag}.seek.n{size}"
            await create_topics(bootstrap, [topic], partitions)
            records = make_workload(size, partitions, keys=10_000, dup_rate=0, malformed_rate=0).records
            base = int(time.time() * 1000) - size - 60_000
            took = await produce_workload(bootstrap, topic, records, timestamps=[base + i for i in range(size)])
            say(f"{topic}: {size:,} records produced in {took:.1f}s")
            tps = [(topic, p) for p in range(partitions)]
            targets = [base + rng.randrange(size) for _ in range(lookups)]
            t0 = time.perf_counter()
            async with OffsetAdmin(settings) as kafka:
                first = await kafka.offsets_for_time(tps, targets[0])
                cold = time.perf_counter() - t0
                warm = []
                found = sum(1 for o in first.values() if o is not None)
                for ts in targets[1:]:
                    t1 = time.perf_counter()
                    answer = await kafka.offsets_for_time(tps, ts)
                    warm.append(time.perf_counter() - t1)
                    found += sum(1 for o in answer.values() if o is not None)
            warm.sort()
            rows.append({
                "records": size, "partitions": partitions, "lookups": lookups,
                "cold_ms": round(cold * 1000, 1),
                "warm_median_ms": round(statistics.median(warm) * 1000, 2) if warm else None,
                "warm_max_ms": round(warm[-1] * 1000, 2) if warm else None,
                "partition_answers_found": found, "partition_answers": lookups * partitions,
            })
    finally:
        await delete_topics_with(url, tag)
    return {"run": tag, "results": rows}


def print_seek(report: dict, markdown: bool) -> None:
    headers = ["topic size", "partitions", "lookups", "cold (new client + lookup)", "warm median", "warm max"]
    rows = [[f"{r['records']:,}", str(r["partitions"]), str(r["lookups"]), f"{r['cold_ms']} ms",
             f"{r['warm_median_ms']} ms", f"{r['warm_max_ms']} ms"] for r in report["results"]]
    print_simple("Timestamp seek (offsets_for_times over every partition in one request)", headers, rows, markdown)
