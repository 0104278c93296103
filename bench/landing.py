"""``python -m bench landing``: rows/s into the lake from a prefilled valid topic, side by side.

Paths, all against the same topic, each into its own table of one SQLite catalog:

1. **raw** — an aiokafka → pyarrow → pyiceberg ``append`` loop in this process: JSON decoded,
   columns inferred by pyarrow, one append per commit interval; no offsets, no de-duplication,
   no typed casting (the floor a lander is measured against);
2. **streamlake** — a :class:`~streamlake.lake.lander.Lander` in this process: typed columns,
   offsets in every snapshot, the ``(key, seq)`` window, the landing DLQ;
3. **quix** — Quix Streams' ``IcebergSink`` in a child process (``bench/quix_landing.py``).

Then **commit latency over N commits** (default 1,000) of small batches through StreamLake's
commit step, with and without snapshot expiry: the first and last hundred commits' median.
Also reported: data files per GB landed. Every figure is from this run (see the load average).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from aiokafka import AIOKafkaConsumer, TopicPartition
from pyiceberg.catalog.sql import SqlCatalog

from streamlake.config import load_settings
from streamlake.core.lake_progress import RecentWindow
from streamlake.core.records import SourceRecord
from streamlake.lake.lander import Lander
from streamlake.lake.maintenance import expire_tables
from streamlake.lake.settings import load_lake_settings
from streamlake.lake.tables import arrow_schema_for, ensure_table, open_catalog, table_offsets_of, target_for
from streamlake.lake.writer import PartitionBatch, TableWriter
from streamlake.topology import discover_streams

from .common import PYTHON, ROOT, Child, load_average
from .workload import create_topics, make_workload, produce_workload

__all__ = ["measure_landing", "print_landing"]


def _stream():
    return next(s for s in discover_streams(ROOT / "topologies") if s.name == "sales.orders")


async def _raw_loop(bootstrap: str, topic: str, partitions: int, records: int, catalog: SqlCatalog,
                    commit_interval: float) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024)
    await consumer.start()
    table = None
    t0 = time.monotonic()
    taken = commits = 0
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        docs: list[dict[str, Any]] = []
        meta: dict[str, list[Any]] = {"_key": [], "_kafka_partition": [], "_kafka_offset": [], "_kafka_timestamp": []}
        last = time.monotonic()
        while taken < records or docs:
            batch = await consumer.getmany(timeout_ms=100, max_records=20_000)
            for tp, msgs in batch.items():
                for m in msgs:
                    docs.append(orjson.loads(m.value))
                    meta["_key"].append(m.key.decode())
                    meta["_kafka_partition"].append(tp.partition)
                    meta["_kafka_offset"].append(m.offset)
                    meta["_kafka_timestamp"].append(m.timestamp)
                    taken += 1
            if docs and (time.monotonic() - last >= commit_interval or taken >= records):
                arrow = pa.Table.from_pylist(docs)
                for name, values in meta.items():
                    arrow = arrow.append_column(name, pa.array(values))
                if table is None:
                    catalog.create_namespace_if_not_exists("raw")
                    table = catalog.create_table(("raw", f"orders_{uuid.uuid4().hex[:6]}"), schema=arrow.schema)
                table.append(arrow)
                commits += 1
                docs = []
                meta = {k: [] for k in meta}
                last = time.monotonic()
    finally:
        await consumer.stop()
    seconds = time.monotonic() - t0
    return {"path": "raw", "what": "aiokafka → pyarrow → pyiceberg append (no offsets, no dedup)",
            "rows": taken, "seconds": round(seconds, 2), "rows_per_s": round(taken / seconds),
            "commits": commits, **_files(table)}


def _files(table: Any) -> dict[str, Any]:
    if table is None or table.current_snapshot() is None:
        return {"data_files": 0, "data_bytes": 0, "files_per_gb": None}
    summary = table.refresh().current_snapshot().summary.additional_properties
    files, size = int(summary.get("total-data-files", 0)), int(summary.get("total-files-size", 0))
    return {"data_files": files, "data_bytes": size, "files_per_gb": round(files / (size / 1e9), 1) if size else None}


async def _streamlake(url: str, prefix: str, lake_dir: Path, records: int, commit_interval: float,
                      limit_s: float) -> dict[str, Any]:
    env = {"STREAMLAKE_BROKER": url, "STREAMLAKE_TOPIC_PREFIX": prefix, "STREAMLAKE_APP_ID": f"bench-{prefix}",
           "STREAMLAKE_LAKE_CATALOG_URI": f"sqlite:///{lake_dir}/catalog.db",
           "STREAMLAKE_LAKE_WAREHOUSE": f"file://{lake_dir}/warehouse",
           "STREAMLAKE_LAKE_COMMIT_INTERVAL": str(commit_interval)}
    settings = load_settings(env="dev", root=ROOT, environ=env)
    lake = load_lake_settings(settings, environ=env)
    stream = _stream()
    target = target_for(stream, prefix)
    from streamlake.catalog import load_catalog

    lander = Lander(settings, lake, [target], load_catalog(settings, [stream]), web_port=None, lander_id="bench")
    t0 = time.monotonic()
    task = asyncio.create_task(lander.run())
    landed = 0
    try:
        while landed < records:
            await asyncio.sleep(0.2)
            if task.done():
                task.result()
            writer = lander.landings.get(target.topic)
            if writer is not None:
                landed = sum(o for (t, _p), o in (await asyncio.to_thread(writer.writer.landed_offsets)).items()
                             if t == target.topic)
            if time.monotonic() - t0 > limit_s:
                raise TimeoutError(f"streamlake landed {landed} of {records} rows in {limit_s:.0f}s")
        seconds = time.monotonic() - t0
    finally:
        lander.stop()
        await task
    table = open_catalog(lake).load_table(target.identifier)
    counters = lander.counters.table(target.name)
    return {"path": "streamlake", "what": "Lander: typed columns, offsets in snapshots, (key, seq) window",
            "rows": landed, "seconds": round(seconds, 2), "rows_per_s": round(landed / seconds),
            "commits": counters.commits, **_files(table)}


async def _quix(url: str, topic: str, lake_dir: Path, records: int, commit_interval: float,
                limit_s: float, log_dir: Path) -> dict[str, Any]:
    try:
        import quixstreams  # noqa: F401
    except ImportError:
        return {"path": "quix", "what": "Quix Streams IcebergSink", "error": "quixstreams is not installed "
                "(pip install -e '.[bench]')"}
    name = f"quix.orders_{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "BENCH_BROKER": url, "BENCH_APP_ID": f"bench-quix-{uuid.uuid4().hex[:6]}",
           "BENCH_SOURCE": topic, "BENCH_CATALOG_URI": f"sqlite:///{lake_dir}/catalog.db",
           "BENCH_WAREHOUSE": f"file://{lake_dir}/warehouse", "BENCH_TABLE": name,
           "BENCH_COMMIT_INTERVAL": str(commit_interval)}
    child = Child.spawn("quix", [PYTHON, "-m", "bench.quix_landing"], env, log_dir / "quix-landing.log")
    catalog = SqlCatalog("quix", uri=env["BENCH_CATALOG_URI"], warehouse=env["BENCH_WAREHOUSE"])
    rows = 0
    table = None
    error = None
    try:
        while rows < records:
            await asyncio.sleep(0.5)
            if not child.alive():
                error = f"exited with {child.proc.returncode}: {child.tail(5)}"
                break
            if time.monotonic() - child.started > limit_s:
                error = f"landed {rows} of {records} rows in {limit_s:.0f}s (stopped)"
                break
            try:
                table = catalog.load_table(name)
            except Exception:  # not created yet
                continue
            snapshot = table.current_snapshot()
            rows = int(snapshot.summary.additional_properties.get("total-records", 0)) if snapshot else 0
        seconds = time.monotonic() - child.started
    finally:
        child.stop()
    return {"path": "quix", "what": "Quix Streams IcebergSink (identity(_key) + day partitions, no offsets)",
            "rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds) if seconds else None,
            "error": error, **_files(table)}


def _commit_latency(lake_dir: Path, commits: int, rows_per_commit: int, expire_every: int | None,
                    say=lambda line: None) -> dict[str, Any]:
    env = {"STREAMLAKE_TOPIC_PREFIX": f"lat{uuid.uuid4().hex[:6]}",
           "STREAMLAKE_LAKE_CATALOG_URI": f"sqlite:///{lake_dir}/catalog.db",
           "STREAMLAKE_LAKE_WAREHOUSE": f"file://{lake_dir}/warehouse"}
    settings = load_settings(env="dev", root=ROOT, environ=env)
    lake = load_lake_settings(settings, environ=env)
    stream = _stream()
    target = target_for(stream, settings.topic_prefix)
    writer = TableWriter(ensure_table(open_catalog(lake), target), arrow_schema_for(stream), "bench")
    from streamlake.core.lake_rows import RowBuilder

    builder = RowBuilder(stream.lake_columns, "seq", None, stream.event_time_field)
    window = RecentWindow(10)
    latencies = []
    for c in range(commits):
        rows = builder.new_buffer()
        start = c * rows_per_commit
        for offset in range(start, start + rows_per_commit):
            value = orjson.dumps({"order_id": f"o{offset % 97}", "seq": offset, "amount": 12.5, "currency": "EUR",
                                  "ts": 1_700_000_000_000 + offset})
            builder.build(SourceRecord(target.topic, 0, offset, 1_700_000_000_000, b"o%d" % (offset % 97), value),
                          0, rows, window)
        outcome = writer.commit({(target.topic, 0): PartitionBatch(start, start + rows_per_commit, rows)})
        latencies.append(outcome.seconds)
        if (c + 1) % 100 == 0:
            say(f"  {c + 1} commits: p50 of the last 100 {statistics.median(latencies[-100:]) * 1000:.0f} ms, "
                f"load {load_average()}")
        if expire_every and (c + 1) % expire_every == 0:
            expire_tables(settings, target.name, execute=True, older_than=0, retain_last=10, lake=lake)
    head, tail = latencies[:100], latencies[-100:]
    table = writer.table.refresh()
    assert table_offsets_of(table)[(target.topic, 0)] == commits * rows_per_commit
    return {"expiry": f"every {expire_every} commits, keep 10" if expire_every else "none",
            "commits": commits, "first_100_p50_ms": round(statistics.median(head) * 1000, 1),
            "last_100_p50_ms": round(statistics.median(tail) * 1000, 1),
            "growth": round(statistics.median(tail) / statistics.median(head), 2),
            "snapshots_at_end": len(table.snapshots())}


async def measure_landing(url: str, records: int, partitions: int, keys: int, commit_interval: float,
                          commits: int, paths: tuple[str, ...], say) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    prefix = f"bench{tag}"
    topic = f"{prefix}.sales.orders.valid.v1"
    bootstrap = url.split("://", 1)[-1]
    workload = make_workload(records, partitions, keys, dup_rate=0.0, malformed_rate=0.0)
    await create_topics(bootstrap, [topic], partitions)
    say(f"prefilling {topic} with {records:,} records ...")
    await produce_workload(bootstrap, topic, workload.records)
    limit_s = 120 + records / 2_000
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-landing-") as tmp:
        lake_dir = Path(tmp)
        catalog = SqlCatalog("bench", uri=f"sqlite:///{lake_dir}/catalog.db", warehouse=f"file://{lake_dir}/warehouse")
        for path in paths:
            say(f"path {path} ...")
            try:
                if path == "raw":
                    results.append(await _raw_loop(bootstrap, topic, partitions, records, catalog, commit_interval))
                elif path == "streamlake":
                    results.append(await _streamlake(url, prefix, lake_dir, records, commit_interval, limit_s))
                else:
                    results.append(await _quix(url, topic, lake_dir, records, commit_interval, limit_s,
                                               ROOT / ".streamlake" / "bench-runs"))
            except Exception as exc:  # report it in the table, keep the other paths
                results.append({"path": path, "error": f"{type(exc).__name__}: {exc}"})
            say(f"  {results[-1]}")
        raw = next((r for r in results if r["path"] == "raw" and r.get("rows_per_s")), None)
        for r in results:
            r["ratio_to_raw"] = round(r["rows_per_s"] / raw["rows_per_s"], 2) if raw and r.get("rows_per_s") else None
        latency = []
        if commits:
            for expire_every in (None, 100):
                say(f"commit latency over {commits} commits (expiry: {expire_every or 'none'}) ...")
                latency.append(await asyncio.to_thread(_commit_latency, lake_dir, commits, 100, expire_every, say))
    return {"workload": {"records": records, "partitions": partitions, "keys": keys,
                         "mean_value_bytes": round(workload.mean_value_bytes), "commit_interval_s": commit_interval},
            "results": results, "commit_latency": latency, "load_avg": load_average()}


def print_landing(report: dict[str, Any], markdown: bool) -> None:
    from .report import markdown_table, text_table

    headers = ["path", "what", "rows/s", "÷ raw", "rows", "seconds", "data files", "files per GB", "note"]
    rows = [[r["path"], r.get("what", ""), f"{r['rows_per_s']:,}" if r.get("rows_per_s") else "—",
             f"{r['ratio_to_raw']:.2f}" if r.get("ratio_to_raw") else "—", f"{r.get('rows', 0):,}",
             str(r.get("seconds", "—")), str(r.get("data_files", "—")), str(r.get("files_per_gb", "—")),
             r.get("error") or ""] for r in report["results"]]
    lat_headers = ["expiry", "commits", "p50 first 100 (ms)", "p50 last 100 (ms)", "growth", "snapshots at end"]
    lat = [[x["expiry"], str(x["commits"]), str(x["first_100_p50_ms"]), str(x["last_100_p50_ms"]),
            f"{x['growth']}×", str(x["snapshots_at_end"])] for x in report["commit_latency"]]
    w = report["workload"]
    line = (f"{w['records']:,} records, {w['partitions']} partitions, {w['keys']:,} keys, ~{w['mean_value_bytes']} "
            f"bytes/value, commit interval {w['commit_interval_s']} s; load average at the end {report['load_avg']}")
    if markdown:
        print(f"Command: `{report['command']}`\n\nWorkload: {line}\n")
        print(markdown_table(headers, rows))
        if lat:
            print()
            print(markdown_table(lat_headers, lat))
    else:
        print(f"\nworkload: {line}\n")
        print(text_table(headers, rows))
        if lat:
            print("\ncommit latency (StreamLake's commit step, 100-row commits):")
            print(text_table(lat_headers, lat))
    sys.stdout.flush()
