"""Recovery of the sequence table: time to restore N tracked keys, and memory per 1M keys.

The changelog topic ``<app id>-<source>.seq-changelog`` is prefilled directly
with N keys (each on the partition the Java partitioner gives it, with the
value format the runtime writes), then a StreamLake worker is started and
timed until Faust logs ``Recovery complete``. Per store it measures:

* a **cold** start (empty data dir: everything is read from the changelog),
* a **restart** on the same data dir (``memory://`` replays everything again;
  ``rocksdb://`` keeps its state and offsets and replays only the delta),
* a **baseline** worker with an empty changelog, whose RSS is subtracted to
  get memory per 1M keys;
* a **raw read** of the same changelog by a bare aiokafka consumer in the
  harness (no decoding, no store), in the same run: the ceiling a restore can
  approach on this machine, reported as a ratio.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from streamlake.broker.local import free_port

from .common import Child, ChildFailed
from .prefilled import STORES, prefill_group, prefilled_run
from .report import print_simple
from .throughput import streamlake_argv

DONE_LINE = "Recovery complete"


async def time_raw_read(bootstrap: str, topic: str, partitions: int) -> dict:
    """Read *topic* from start to end with a bare aiokafka consumer; the records/s a restore could approach."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        started = time.monotonic()
        records, done = 0, {tp for tp in tps if not ends[tp]}
        while len(done) < len(tps):
            for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
                records += len(batch)
                if batch[-1].offset + 1 >= ends[tp]:
                    done.add(tp)
        seconds = time.monotonic() - started
        return {"records": records, "seconds": round(seconds, 2), "records_per_s": round(records / seconds)}
    finally:
        await consumer.stop()


def dir_size_mb(path: Path) -> float:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0
    return round(total / 1024 / 1024, 1)


async def time_recovery(name: str, env: dict[str, str], run_dir: Path, limit_s: float) -> dict:
    """Start a worker, wait for its first ``Recovery complete``, note time and memory, stop it."""
    port = free_port()
    env = env | {"STREAMLAKE_WEB_PORT": str(port)}
    child = Child.spawn(name, streamlake_argv(port, "info"), env, run_dir / f"{name}.log")
    try:
        while True:
            if not child.alive():
                raise ChildFailed(f"{name} exited with {child.proc.returncode}:\n{child.tail()}")
            if DONE_LINE in child.log():
                seconds = time.monotonic() - child.started
                await asyncio.sleep(0.5)  # let the last batch settle before reading memory
                return {"seconds": round(seconds, 2), "rss_mb": child.rss_mb(), "peak_rss_mb": child.peak_rss_mb()}
            if time.monotonic() - child.started > limit_s:
                raise ChildFailed(f"{name}: no '{DONE_LINE}' within {limit_s:.0f}s:\n{child.tail()}")
            await asyncio.sleep(0.1)
    finally:
        child.stop(timeout=60)


async def measure_recovery(url: str, keys: int, stores: tuple[str, ...], partitions: int,
                           say: Callable[[str], None]) -> dict:
    rows = []
    timeout = 120 + keys / 2000
    async with prefilled_run(url, keys, partitions, say) as run:
        for store in stores:
            row: dict = {"store": STORES[store], "keys": keys}
            for label, n in (("baseline", 0), ("tracked", keys)):
                datadir = run.run_dir / f"{store}-{label}-data"
                group = await prefill_group(run, f"rec-{store}-{label}", store, prefill=bool(n), datadir=datadir)
                env = group.env
                if n:
                    say(f"{store}: prefilled {group.changelog} with {n:,} keys in {group.prefill_s:.1f}s")
                    row["raw_read"] = await time_raw_read(run.bootstrap, group.changelog, partitions)
                    say(f"{store}: a bare consumer read it in {row['raw_read']['seconds']}s "
                        f"({row['raw_read']['records_per_s']:,}/s)")
                cold = await time_recovery(f"{store}-{label}-cold", env, run.run_dir, timeout)
                say(f"{store} {label}: cold start recovered in {cold['seconds']}s, RSS {cold['rss_mb']} MB")
                if label == "baseline":
                    row["baseline"] = cold
                    continue
                row["cold"] = cold
                row["datadir_mb"] = dir_size_mb(datadir)
                restart = await time_recovery(f"{store}-{label}-restart", env, run.run_dir, timeout)
                say(f"{store} {label}: restart recovered in {restart['seconds']}s, RSS {restart['rss_mb']} MB")
                row["restart"] = restart
            base = row["baseline"]
            row["recovery_s_cold"] = round(row["cold"]["seconds"] - base["seconds"], 2)
            raw = row["raw_read"]
            row["cold_restore_per_s"] = round(keys / row["recovery_s_cold"]) if row["recovery_s_cold"] > 0 else None
            row["cold_restore_vs_raw_read"] = (round(row["cold_restore_per_s"] / raw["records_per_s"], 2)
                                               if row["cold_restore_per_s"] and raw["records_per_s"] else None)
            row["recovery_s_restart"] = round(row["restart"]["seconds"] - base["seconds"], 2)
            if row["cold"]["rss_mb"] is not None and base["rss_mb"] is not None:
                row["rss_mb_per_1m_keys"] = round((row["cold"]["rss_mb"] - base["rss_mb"]) * 1_000_000 / keys, 1)
            rows.append(row)
    return {"run": run.tag, "results": rows}


def print_recovery(report: dict, markdown: bool) -> None:
    headers = ["store", "tracked keys", "cold start to recovered", "restart to recovered",
               "empty-table start", "cold restore rate (÷ bare read, same run)", "RSS after recovery",
               "RSS per 1M keys", "data dir"]
    rows = []
    for r in report["results"]:
        rate = r.get("cold_restore_per_s")
        rows.append([r["store"], f"{r['keys']:,}", f"{r['cold']['seconds']} s", f"{r['restart']['seconds']} s",
                     f"{r['baseline']['seconds']} s",
                     "—" if rate is None else f"{rate:,}/s ({r['cold_restore_vs_raw_read']}× of "
                                              f"{r['raw_read']['records_per_s']:,}/s)",
                     f"{r['cold']['rss_mb']} MB (empty: {r['baseline']['rss_mb']} MB)",
                     f"{r.get('rss_mb_per_1m_keys', '—')} MB", f"{r.get('datadir_mb', '—')} MB"])
    print_simple("Sequence-table recovery (worker start to Faust's 'Recovery complete'; "
                 "the empty-table start is the same worker with nothing to recover)", headers, rows, markdown)
