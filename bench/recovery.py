"""Recovery of the sequence table: time to restore N tracked keys, and memory per 1M keys.

The changelog topic ``<app id>-<source>.seq-changelog`` is prefilled directly
with N keys (each on the partition the Java partitioner gives it, with the
value format the runtime writes), then a StreamLake worker is started and
timed until Faust logs ``Recovery complete``. Per store it measures:

* a **cold** start (empty data dir: everything is read from the changelog),
* a **restart** on the same data dir (``memory://`` replays everything again;
  ``rocksdb://`` keeps its state and offsets and replays only the delta),
* a **baseline** worker with an empty changelog, whose RSS is subtracted to
  get memory per 1M keys.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from streamlake.broker.local import free_port
from streamlake.naming import changelog_topic_for, table_name_for
from streamlake.partitioner import partition_for_key

from .common import RUNS_DIR, Child, ChildFailed, broker_settings, delete_topics_with, run_tag
from .report import print_simple
from .throughput import apply_streamlake_catalog, streamlake_argv, streamlake_env, streamlake_home
from .workload import create_topics, produce_workload

DONE_LINE = "Recovery complete"
STORES = {"memory": "memory://", "rocksdb": "rocksdb://"}


def tracked_keys(n: int, partitions: int) -> list[tuple[int, bytes, bytes]]:
    """N changelog records: distinct keys, each with a KeyState ``[next_seq, gaps, horizon]``."""
    out = []
    for i in range(n):
        key = f"o-{i:09d}".encode()
        out.append((partition_for_key(key, partitions), key, orjson.dumps([(i % 97) + 1, [], 0])))
    return out


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
    tag = run_tag()
    run_dir = RUNS_DIR / tag
    bootstrap = broker_settings(url).bootstrap_servers
    home = streamlake_home(partitions, run_dir)
    records = tracked_keys(keys, partitions)
    say(f"{keys:,} tracked keys generated")
    rows = []
    timeout = 120 + keys / 2000
    try:
        for store in stores:
            row: dict = {"store": STORES[store], "keys": keys}
            for label, n in (("baseline", 0), ("tracked", keys)):
                prefix = app_id = f"bench-{tag}-rec-{store}-{label}"
                datadir = run_dir / f"{store}-{label}-data"
                env = streamlake_env(dict(os.environ), url, prefix, app_id, 0, datadir, home)
                env["STREAMLAKE_STORE"] = STORES[store]
                await apply_streamlake_catalog(env)
                source = f"{prefix}.sales.orders.raw.v1"
                changelog = changelog_topic_for(app_id, table_name_for(source, "seq"))
                await create_topics(bootstrap, [changelog], partitions, {"cleanup.policy": "compact"})
                if n:
                    took = await produce_workload(bootstrap, changelog, records)
                    say(f"{store}: prefilled {changelog} with {n:,} keys in {took:.1f}s")
                cold = await time_recovery(f"{store}-{label}-cold", env, run_dir, timeout)
                say(f"{store} {label}: cold start recovered in {cold['seconds']}s, RSS {cold['rss_mb']} MB")
                if label == "baseline":
                    row["baseline"] = cold
                    continue
                row["cold"] = cold
                row["datadir_mb"] = dir_size_mb(datadir)
                restart = await time_recovery(f"{store}-{label}-restart", env, run_dir, timeout)
                say(f"{store} {label}: restart recovered in {restart['seconds']}s, RSS {restart['rss_mb']} MB")
                row["restart"] = restart
            base = row["baseline"]
            row["recovery_s_cold"] = round(row["cold"]["seconds"] - base["seconds"], 2)
            row["recovery_s_restart"] = round(row["restart"]["seconds"] - base["seconds"], 2)
            if row["cold"]["rss_mb"] is not None and base["rss_mb"] is not None:
                row["rss_mb_per_1m_keys"] = round((row["cold"]["rss_mb"] - base["rss_mb"]) * 1_000_000 / keys, 1)
            rows.append(row)
    finally:
        await delete_topics_with(url, tag)
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"run": tag, "results": rows}


def print_recovery(report: dict, markdown: bool) -> None:
    headers = ["store", "tracked keys", "cold start to recovered", "restart to recovered",
               "empty-table start", "RSS after recovery", "RSS per 1M keys", "data dir"]
    rows = []
    for r in report["results"]:
        rows.append([r["store"], f"{r['keys']:,}", f"{r['cold']['seconds']} s", f"{r['restart']['seconds']} s",
                     f"{r['baseline']['seconds']} s", f"{r['cold']['rss_mb']} MB (empty: {r['baseline']['rss_mb']} MB)",
                     f"{r.get('rss_mb_per_1m_keys', '—')} MB", f"{r.get('datadir_mb', '—')} MB"])
    print_simple("Sequence-table recovery (worker start to Faust's 'Recovery complete'; "
                 "the empty-table start is the same worker with nothing to recover)", headers, rows, markdown)
