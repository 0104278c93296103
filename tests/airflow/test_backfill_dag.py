"""streamlake_backfill end to end with dag.test(): a window replayed through a running worker, once."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from tests.airflow.support import load_dag, order, run_dag, source_partitions
from tests.kafka_fixtures import produce, read_topic


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def test_backfill_replays_the_window_and_a_rerun_of_the_same_date_sends_nothing(pipeline):
    env = pipeline.env
    raw = f"{env.prefix}.sales.orders.raw.v1"
    pipeline.start_worker()
    base = int(time.time() * 1000) - 2 * 3600_000
    inside = [order(f"k{i}", 1, base + 1_000 + i) for i in range(6)]
    after = [order(f"k{i}", 2, base + 60_000 + i) for i in range(3)]  # after the window's end
    asyncio.run(produce(env.broker.bootstrap, raw, inside + after, partitions=source_partitions(env)))

    dag = load_dag("streamlake_backfill")
    conf = {"topic": raw, "start": _iso(base), "end": _iso(base + 30_000), "execute": True, "stream": "sales.orders"}
    day = datetime(2026, 3, 2, tzinfo=UTC)
    first = run_dag(dag, day, conf)
    assert first.state == "success", first.tasks
    assert first.xcom["replay_window"]["outcome"] == "replayed"
    assert first.xcom["replay_window"]["replayed"] == 6
    assert first.xcom["wait_consumed"]["lag"] == 0

    again = run_dag(dag, day, conf)
    assert again.state == "success", again.tasks
    assert again.xcom["replay_window"]["outcome"] == "already-done"
    records = asyncio.run(read_topic(env.broker.bootstrap, raw, min_count=15))
    copies = [r for r in records if r.header("streamlake.replay.id")]
    assert len(records) == 15 and len(copies) == 6
    assert {r.header("streamlake.replay.id") for r in copies} == {first.xcom["replay_window"]["replay_id"]}
