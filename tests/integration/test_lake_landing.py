"""A lander on the real broker and a real Iceberg catalog: a mixed load lands exactly.

Records go straight to the valid topic (what ingestion forwards), including the copies
ingestion forwards again after a crash (same key and seq, later offset) and rows that
cannot land (a value that does not cast, an oversized field): they go to the landing DLQ.
"""

from __future__ import annotations

import asyncio
import decimal
import json
import random
import urllib.request

import orjson
import pytest

from streamlake.core.dlq import H
from streamlake.lake.info import landing_lag, list_tables, newest_event_time, table_history, table_offsets
from streamlake.lake.query import query_lake
from streamlake.lake.verify import verify_table
from streamlake.partitioner import partition_for_key
from tests.kafka_fixtures import create_topics, produce, read_topic, wait_for
from tests.lake_fixtures import lake_env, lander_factory, wait_rows  # noqa: F401

PARTITIONS = 8
# each test starts a lander process and runs CLI subprocesses; on a loaded machine that alone takes minutes
pytestmark = pytest.mark.timeout(600)
DAY_MS = 86_400_000
BASE_MS = 1_700_000_000_000


def order(key: str, seq: int, n: int, **fields) -> dict:
    doc = {"order_id": key, "seq": seq, "customer_id": f"c{n % 7}", "amount": round(10 + n * 0.25, 2),
           "currency": ("EUR", "USD", "GBP")[n % 3], "status": "paid", "ts": BASE_MS + (n % 3) * DAY_MS, **fields}
    return {"key": key.encode(), "value": orjson.dumps(doc)}


def build_load(n: int, seed: int = 3) -> tuple[list[dict], set[tuple[str, int]], int, list[dict]]:
    """n valid records over 40 keys, ~3% repeated later (ingestion's duplicates), 2 hostile rows."""
    rnd = random.Random(seed)
    records, pairs, repeats = [], set(), 0
    next_seq: dict[str, int] = {}
    for i in range(n):
        key = f"k{rnd.randrange(40)}"
        seq = next_seq.get(key, 1)
        next_seq[key] = seq + 1
        records.append(order(key, seq, i, note=f"n{i}"))
        pairs.add((key, seq))
        if i > 10 and rnd.random() < 0.03:
            records.append(dict(records[rnd.randrange(max(0, i - 30), i)]))  # re-forwarded copy
            repeats += 1
    hostile = [order("bad1", 1, 0, amount="twelve"), order("bad2", 1, 1, customer_id="x" * 200_000)]
    return records, pairs, repeats, hostile


def test_mixed_load_lands_exactly_with_typed_columns_and_landing_dlq(lake_env, lander_factory):  # noqa: F811
    env = lake_env.env
    bootstrap = env.broker.bootstrap
    topic = lake_env.valid_topic
    asyncio.run(create_topics(bootstrap, [topic], PARTITIONS))
    records, pairs, repeats, hostile = build_load(1500)
    half = len(records) // 2
    asyncio.run(produce(bootstrap, topic, records[:half] + hostile[:1], PARTITIONS))
    lander = lander_factory("lander0")
    asyncio.run(produce(bootstrap, topic, records[half:] + hostile[1:], PARTITIONS))
    wait_rows(lake_env, len(pairs))
    settings, lake = env.settings(), lake_env.lake

    # every record landed once: verify against Kafka, then the figures one by one
    def verified():
        report = verify_table(settings, lake_env.table, lake)
        return report if report.records == len(records) + len(hostile) else None

    report = wait_for(verified, timeout=60, interval=1.0, what="every record to be accounted for")
    assert report.ok, report.as_dict()
    assert report.rows == report.landed == len(pairs)
    assert report.duplicates_dropped == repeats and report.dlq == 2 and report.duplicate_rows == 0

    # typed columns, _extra, partitions by day of the event time
    result = query_lake(settings, f"SELECT typeof(amount) t, typeof(ts) ts_t, count(*) n, "
                                  f"count(DISTINCT (_key, _seq)) d, count(_extra) e FROM {lake_env.table} GROUP BY 1, 2",
                        lake)
    assert result.rows == [("DECIMAL(12,2)", "TIMESTAMP WITH TIME ZONE", len(pairs), len(pairs), len(pairs))]
    first = order("k0", 1, 0)
    row = query_lake(settings, f"SELECT amount, _extra FROM {lake_env.table} WHERE _key = 'k0' AND _seq = 1", lake)
    assert row.rows and isinstance(row.rows[0][0], decimal.Decimal)
    assert json.loads(row.rows[0][1])["note"].startswith("n") and first["key"] == b"k0"
    per_currency = query_lake(settings, f"SELECT currency, count(*) FROM {lake_env.table} GROUP BY 1 ORDER BY 1", lake)
    assert [c for c, _ in per_currency.rows] == ["EUR", "GBP", "USD"]
    info = {t.name: t for t in list_tables(settings, lake)}[lake_env.table]
    assert info.partition_spec == "day(ts)" and info.properties["commit.retry.num-retries"] == "0"
    days = query_lake(settings, f"SELECT count(DISTINCT date_trunc('day', ts)) FROM {lake_env.table}", lake)
    assert days.rows == [(3,)]
    assert newest_event_time(settings, lake_env.table, lake).timestamp() * 1000 == BASE_MS + 2 * DAY_MS

    # offsets in the table equal the topic's ends; lag 0
    ends: dict[int, int] = {}
    for rec in records + hostile:
        p = partition_for_key(rec["key"], PARTITIONS)
        ends[p] = ends.get(p, 0) + 1
    assert table_offsets(settings, lake_env.table, lake) == ends
    assert all(p.lag == 0 for p in landing_lag(settings, lake) if p.topic == topic)
    assert all(s.landed_by for s in table_history(settings, lake_env.table, lake=lake))

    # the landing DLQ: same header contract, stage land
    dlq = asyncio.run(read_topic(bootstrap, f"{topic}.dlq", min_count=2))
    reasons = sorted(d.header(H.REASON) for d in dlq)
    assert reasons == ["land-cast-failed", "land-field-too-large"]
    assert {d.header(H.STAGE) for d in dlq} == {"land"} and all(d.header(H.ORIGIN_TOPIC) == topic for d in dlq)
    assert {d.key for d in dlq} == {b"bad1", b"bad2"}

    # the CLI over the same lake: query --json and verify --json (exit 0)
    import subprocess
    import sys

    from tests.kafka_fixtures import ROOT

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "streamlake", "lake", *args], cwd=ROOT, env=env.environ(),
                              capture_output=True, text=True, timeout=180)

    out = cli("query", "--json", f"SELECT _key, _seq, amount FROM {lake_env.table} WHERE _key = 'k0' AND _seq = 1")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"_key": "k0", "_seq": 1, "amount": str(row.rows[0][0])}]
    verified = cli("verify", "--json", lake_env.table)
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True, verified.stdout + verified.stderr

    # the lander's endpoints
    base = f"http://127.0.0.1:{lander.web_port}"
    with urllib.request.urlopen(f"{base}/ready", timeout=5) as resp:
        assert resp.status == 200 and json.loads(resp.read())["ready"] is True
    with urllib.request.urlopen(f"{base}/health", timeout=5) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    assert f'streamlake_lake_rows_total{{table="{lake_env.table}"}} {float(len(pairs))}' in metrics
    assert f'streamlake_lake_duplicates_dropped_total{{table="{lake_env.table}"}} {float(repeats)}' in metrics
    for name in ("streamlake_lake_files_total", "streamlake_lake_commits_total", "streamlake_lake_bytes_total",
                 "streamlake_lake_commit_seconds_bucket", "streamlake_lake_lag{"):
        assert name in metrics


def test_a_restarted_lander_resumes_from_the_table_not_the_group(lake_env, lander_factory):  # noqa: F811
    """Group offsets are only for lag: reset them to 0 and a new lander still lands nothing twice."""
    from tests.faults.support import committed_offsets

    env = lake_env.env
    bootstrap = env.broker.bootstrap
    topic = lake_env.valid_topic
    asyncio.run(create_topics(bootstrap, [topic], PARTITIONS))
    records, pairs, _repeats, _hostile = build_load(300, seed=5)
    asyncio.run(produce(bootstrap, topic, records, PARTITIONS))
    first = lander_factory("first")
    wait_rows(lake_env, len(pairs))
    wait_for(lambda: sum(asyncio.run(committed_offsets(bootstrap, f"{env.app_id}-land")).values()) == len(records),
             timeout=30, what="group offsets to follow the table (lag only)")
    first.stop()
    # the group forgets: offsets back to 0 (as a reset would), yet the table's offsets win
    from streamlake.kafka.offsets import commit_group_offsets

    asyncio.run(commit_group_offsets(env.settings(), f"{env.app_id}-land", {(topic, p): 0 for p in range(PARTITIONS)}))
    more = [order("late-key", s, 5000 + s) for s in range(1, 21)]
    asyncio.run(produce(bootstrap, topic, more, PARTITIONS))
    lander_factory("second")
    wait_rows(lake_env, len(pairs) + 20)
    report = verify_table(env.settings(), lake_env.table, lake_env.lake)
    assert report.ok and report.rows == len(pairs) + 20 and report.duplicate_rows == 0, report.as_dict()
