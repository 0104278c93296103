"""The completeness sensor and streamlake_lake_daily end to end: worker, lander, Iceberg lake, dag.test().

One pipeline (a worker and, later, a lander of the test's own app and lake) shows, in order:
1. blocking: with ingestion through but no lander, the check says ``landing``, records pending;
2. a clean timeout: the DAG's sensor fails with the evidence once its deadline passes;
3. success: a lander catches up and the same DAG run completes, the summary lands in the lake;
4. idempotence: running the DAG for the same date again leaves the same summary;
5. streamlake_lake_maintenance on that table: compaction keeps the rows, a second run has nothing to do.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from streamlake.airflow.hooks import StreamLakeHook
from streamlake.airflow.triggers import LakeCompleteTrigger, lake_completeness
from streamlake.core.completeness import Phase
from tests.airflow.support import load_dag, order, run_dag, source_partitions
from tests.kafka_fixtures import produce, wait_for

IN_DAY = 24      # records stamped inside the interval
AFTER = 5        # records stamped after its end


def _load(env, base_ms: int) -> None:
    raw = f"{env.prefix}.sales.orders.raw.v1"
    currencies = ("EUR", "USD", "GBP")
    inside = [order(f"o{i}", 1, base_ms + i * 10, amount=f"{i + 1}.50", currency=currencies[i % 3])
              for i in range(IN_DAY)]
    later = [order(f"o{i}", 2, base_ms + 3_600_000 + i, currency="EUR") for i in range(AFTER)]
    asyncio.run(produce(env.broker.bootstrap, raw, inside + later, partitions=source_partitions(env)))


def test_completeness_blocks_times_out_then_succeeds_and_the_daily_summary_is_idempotent(pipeline):
    env = pipeline.env
    table = f"{env.prefix}.sales.orders_v1"
    base = int(time.time() * 1000) - 3 * 3600_000
    until = datetime.fromtimestamp((base + 60_000) / 1000, tz=UTC)  # after IN_DAY, before AFTER
    pipeline.start_worker()
    _load(env, base)
    deployment = StreamLakeHook().get_deployment()
    until_ms = int(until.timestamp() * 1000)

    # 1. blocking: ingestion gets through, landing cannot (no lander yet)
    def landing_phase():
        report = asyncio.run(lake_completeness(deployment, table, until_ms))
        return report if report.phase is Phase.LANDING else None
    report = wait_for(landing_phase, timeout=120, interval=0.5, what="ingestion to pass the source bounds")
    ingestion, repartition, landing = report.hops  # sales.orders repartitions (the default)
    assert [p.bound for p in ingestion.partitions] and ingestion.pending == 0 and repartition.pending == 0
    assert landing.pending >= IN_DAY  # every forwarded record still waits for the lake

    # 2. a clean timeout, from the trigger the sensor defers to, with the evidence
    async def first_event():
        trigger = LakeCompleteTrigger(table=table, until_ms=until_ms, streamlake_conn_id="streamlake_default",
                                      poll_interval=0.5, timeout_at=time.time() + 3)
        async for event in trigger.run():
            return event.payload
    timed_out = asyncio.run(first_event())
    assert timed_out["status"] == "timeout"
    assert "landing of" in timed_out["message"] and timed_out["evidence"]["phase"] == "landing"

    dag = load_dag("streamlake_lake_daily")
    dag.get_task("wait_complete").timeout = 4
    dag.get_task("wait_complete").poke_interval = 1
    blocked = run_dag(dag, until, {"table": table})
    assert blocked.state == "failed" and blocked.tasks["wait_complete"] == "failed"
    assert blocked.tasks["daily_summary"] == "upstream_failed"

    # 3. success once a lander catches up
    dag.get_task("wait_complete").timeout = 180
    pipeline.start_lander()
    done = run_dag(dag, until, {"table": table})
    assert done.state == "success", done.tasks
    evidence = done.xcom["wait_complete"]
    assert evidence["phase"] == "complete" and all(h["pending"] == 0 for h in evidence["hops"])
    summary = done.xcom["daily_summary"]
    assert summary["table"] == f"{table}_daily" and summary["rows"] == 3

    # 4. the same date again: the same rows, not twice as many
    again = run_dag(dag, until, {"table": table})
    assert again.state == "success" and again.xcom["daily_summary"]["rows"] == 3
    from streamlake.lake.tables import open_catalog
    written = open_catalog(deployment.lake()).load_table(tuple(f"{table}_daily".split("."))).scan().to_arrow()
    rows = sorted(written.to_pylist(), key=lambda r: r["currency"])
    expected = {c: [i for i in range(IN_DAY) if ("EUR", "USD", "GBP")[i % 3] == c] for c in ("EUR", "GBP", "USD")}
    assert [(r["currency"], r["orders"]) for r in rows] == [(c, len(ids)) for c, ids in sorted(expected.items())]
    assert [float(r["amount"]) for r in rows] == [sum(i + 1.5 for i in ids) for _, ids in sorted(expected.items())]

    # 5. nightly maintenance: compact (rows unchanged), expire; the second night finds nothing to do.
    # Two more small loads after the first make three commits, so three files for the day.
    from streamlake.lake.info import row_count
    rows = IN_DAY + AFTER
    for batch in range(2):
        rows += 3
        more = [order(f"m{batch}-{i}", 1, base + 5_000 + i) for i in range(3)]
        asyncio.run(produce(env.broker.bootstrap, f"{env.prefix}.sales.orders.raw.v1", more,
                            partitions=source_partitions(env)))
        wait_for(lambda n=rows: row_count(deployment.settings, table, deployment.lake()) == n, timeout=120,
                 interval=0.5, what=f"{rows} rows in the table")
    maintenance = load_dag("streamlake_lake_maintenance")
    conf = {"table": table, "min_files": 2}
    night = run_dag(maintenance, until, conf)
    assert night.state == "success", night.tasks
    (compacted,) = night.xcom["compact"]["tables"]
    assert compacted["rows_before"] == compacted["rows_after"] == rows
    assert any(r["done"] for r in compacted["rewrites"]), compacted
    next_night = run_dag(maintenance, until, conf)
    (again_compacted,) = next_night.xcom["compact"]["tables"]
    assert not any(r["done"] for r in again_compacted["rewrites"])
    assert next_night.xcom["expire"]["tables"][0]["snapshots_expired"] == 0
