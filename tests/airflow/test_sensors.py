"""The sensors against a real broker (and lake): the repartition hop, DLQ depth per reason, consumer lag.

Each sensor is checked through the trigger it defers to (what ``dag.test()``
runs inline), so the events' messages, the evidence and the deadline are seen;
the DAG-level path (defer, ``execute_complete``) runs in the example-DAG tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from streamlake.airflow.hooks import StreamLakeHook
from streamlake.airflow.sensors import DlqDepthSensor
from streamlake.airflow.triggers import (
    ConsumerLagTrigger,
    DlqDepthTrigger,
    LakeCompleteTrigger,
    StreamLakeTrigger,
    lake_completeness,
)
from streamlake.core.completeness import Phase
from streamlake.core.repartition import REPARTITIONED_FROM
from streamlake.kafka.offsets import commit_group_offsets
from streamlake.naming import consumer_group_for
from streamlake.partitioner import partition_for_key
from tests.airflow.support import order, run_dag, source_partitions
from tests.airflow.test_dlq_triage_dag import _load_dlq
from tests.kafka_fixtures import produce, wait_for

DAY = datetime(2026, 3, 4, tzinfo=UTC)


def _first_event(trigger: StreamLakeTrigger) -> Mapping[str, Any]:
    async def first() -> Mapping[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")
    return asyncio.run(first())


def _deadline(seconds: float) -> dict[str, Any]:
    return {"streamlake_conn_id": "streamlake_default", "poll_interval": 0.5, "timeout_at": time.time() + seconds}


def test_a_record_held_in_the_repartition_topic_blocks_completeness_until_ingestion_reads_it(pipeline):
    """Source committed past the bound and landing caught up, yet one record waits in ``<source>.repartition``.

    That is the state a worker leaves when it moved a record (acknowledged)
    and committed the source, but has not read the record back yet: here the
    worker is stopped and that move is made by hand, exactly as a worker writes
    it. Starting a worker again releases it.
    """
    env = pipeline.env
    source = f"{env.prefix}.sales.orders.raw.v1"
    moved_topic = f"{source}.repartition"
    table = f"{env.prefix}.sales.orders_v1"
    partitions = source_partitions(env)
    base = int(time.time() * 1000) - 3 * 3600_000
    until_ms = base + 60_000
    worker = pipeline.start_worker("w0")
    pipeline.start_lander()
    asyncio.run(produce(env.broker.bootstrap, source, [order(f"o{i}", 1, base + i) for i in range(6)],
                        partitions=partitions))
    deployment = StreamLakeHook().get_deployment()

    def complete():
        report = asyncio.run(lake_completeness(deployment, table, until_ms))
        return report if report.complete else None
    report = wait_for(complete, timeout=180, interval=0.5, what="the first six records to land")
    assert [h.topic for h in report.hops] == [source, moved_topic, f"{env.prefix}.sales.orders.valid.v1"]

    # a record produced before `until` on another partition than its key's, moved but not read back
    worker.stop(timeout=60)
    key = b"moved"
    home = partition_for_key(key, partitions)
    misplaced = order("moved", 1, base + 30_000)
    [(read_on, offset)] = asyncio.run(produce(env.broker.bootstrap, source,
                                              [{**misplaced, "partition": (home + 1) % partitions}]))
    asyncio.run(produce(env.broker.bootstrap, moved_topic, [
        {**misplaced, "partition": home, "headers": [(REPARTITIONED_FROM, f"{read_on}:{offset}".encode())]}]))
    settings = env.settings()
    wait_for(lambda: _committed(settings, {(source, read_on): offset + 1}), timeout=60,
             what="the stopped worker to leave the group, so the move's source offset can be committed")

    blocked = asyncio.run(lake_completeness(deployment, table, until_ms))
    assert blocked.phase is Phase.INGESTING, blocked.describe()
    source_hop, moved_hop = blocked.hops
    assert source_hop.done  # the source alone would say: everything before `until` was handled
    assert moved_hop.topic == moved_topic and moved_hop.pending == 1
    assert [p.partition for p in moved_hop.partitions if p.pending] == [home]

    timed_out = _first_event(LakeCompleteTrigger(table=table, until_ms=until_ms, **_deadline(3)))
    assert timed_out["status"] == "timeout"
    assert f"ingestion of {moved_topic} is 1 record(s) behind" in timed_out["message"]

    # released: a worker reads the repartition topic, forwards the record, the lander lands it
    pipeline.start_worker("w1")
    done = _first_event(LakeCompleteTrigger(table=table, until_ms=until_ms, **_deadline(180)))
    assert done["status"] == "success", done
    evidence = done["evidence"]
    assert evidence["phase"] == "complete" and [h["pending"] for h in evidence["hops"]] == [0, 0, 0]
    from streamlake.lake.info import row_count
    assert row_count(deployment.settings, table, deployment.lake()) == 7


def _committed(settings: Any, offsets: Mapping[tuple[str, int], int]) -> bool:
    from streamlake.core.replay import ActiveGroupError

    try:
        asyncio.run(commit_group_offsets(settings, consumer_group_for(settings.app_id), offsets))
    except ActiveGroupError:
        return False
    return True


def test_dlq_depth_sensor_judges_each_reason_against_its_own_threshold(streamlake_conn):
    """The DLQ holds invalid-json 2 and transform-error 2 (the triage test's load)."""
    _load_dlq(streamlake_conn)
    stream = "sales.orders"

    alert = _first_event(DlqDepthTrigger(stream=stream, thresholds={"invalid-json": 1, "transform-error": 5},
                                         condition="exceeds", **_deadline(30)))
    assert alert["status"] == "success", alert
    depths = {d["reason"]: (d["depth"], d["threshold"], d["over"]) for d in alert["evidence"]["depths"]}
    assert depths == {"invalid-json": (2, 1, True), "transform-error": (2, 5, False)}

    # the same depths under per-reason thresholds that hold (stage/reason before reason): no alert, a deadline
    quiet = _first_event(DlqDepthTrigger(stream=stream, thresholds={"decode/invalid-json": 2, "invalid-json": 0, "*": 2},
                                         condition="exceeds", **_deadline(2)))
    assert quiet["status"] == "timeout" and "no reason over" in quiet["message"]

    # "within": waits while one reason is over its own threshold, and names it
    over = _first_event(DlqDepthTrigger(stream=stream, thresholds={"transform-error": 1, "*": 10},
                                        condition="within", **_deadline(2)))
    assert over["status"] == "timeout"
    assert "transform-error 2 > 1" in over["message"] and "invalid-json" not in over["message"]
    within = _first_event(DlqDepthTrigger(stream=stream, thresholds={"transform-error": 2, "*": 10},
                                          condition="within", **_deadline(30)))
    assert within["status"] == "success" and within["evidence"]["records"] == 4

    # the sensors themselves in a DAG: deferred (the alert fires), and poked in place (times out)
    with DAG(dag_id=f"dlq_depth_{streamlake_conn.prefix}", schedule=None, start_date=DAY, catchup=False) as dag:
        DlqDepthSensor(task_id="alert", stream=stream, thresholds={"invalid-json": 1, "*": 5}, poke_interval=0.5,
                       timeout=30)
        DlqDepthSensor(task_id="all_within", stream=stream, thresholds={"transform-error": 1, "*": 10},
                       condition="within", deferrable=False, poke_interval=0.5, timeout=2)
    run = run_dag(dag, DAY)
    assert run.tasks == {"alert": "success", "all_within": "failed"}, run.tasks
    assert [d["reason"] for d in run.xcom["alert"]["depths"] if d["over"]] == ["invalid-json"]

    # a threshold that is not a count fails the task before any wait, with the reason
    with pytest.raises(AirflowFailException, match=r"dlq_depth: thresholds must be whole numbers >= 0; got \{'\*': -1\}"):
        DlqDepthSensor(task_id="dlq_depth", stream=stream, thresholds={"*": -1}).execute({})


def test_consumer_lag_sensor_waits_until_the_group_is_within_max_lag(pipeline):
    """Five records on the source, no worker: lag 5 until the group's offsets reach the end."""
    env = pipeline.env
    source = f"{env.prefix}.sales.orders.raw.v1"
    coords = asyncio.run(produce(env.broker.bootstrap, source, [order(f"l{i}", 1, int(time.time() * 1000))
                                                                for i in range(5)],
                                 partitions=source_partitions(env)))

    blocked = _first_event(ConsumerLagTrigger(max_lag=4, stream="sales.orders", **_deadline(2)))
    assert blocked["status"] == "timeout" and "has lag 5" in blocked["message"]
    assert blocked["evidence"]["lag"] == 5
    assert _first_event(ConsumerLagTrigger(max_lag=5, stream="sales.orders", **_deadline(30)))["status"] == "success"

    # ingestion's commits (here: the group's offsets committed at the end) release the sensor
    ends: dict[tuple[str, int], int] = {}
    for partition, offset in coords:
        ends[(source, partition)] = max(ends.get((source, partition), 0), offset + 1)
    assert _committed(env.settings(), ends)
    caught_up = _first_event(ConsumerLagTrigger(max_lag=0, stream="sales.orders", **_deadline(30)))
    assert caught_up["status"] == "success" and caught_up["evidence"]["lag"] == 0

    unknown = _first_event(ConsumerLagTrigger(max_lag=0, stream="sales.nothing", **_deadline(30)))
    assert unknown["status"] == "error" and "sales.nothing" in unknown["message"]
