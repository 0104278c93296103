"""Operators run twice with dag.test(): topics apply converges, a reset finds its target; an active group is refused."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from streamlake.airflow.operators import ResetOffsetsOperator, TopicsApplyOperator
from tests.airflow.support import run_dag
from tests.kafka_fixtures import wait_for

DAY = datetime(2026, 3, 3, tzinfo=UTC)


def _dag(env) -> DAG:
    raw = f"{env.prefix}.sales.orders.raw.v1"
    with DAG(dag_id=f"ops_{env.prefix}", schedule=None, start_date=DAY, catchup=False) as dag:
        plan = TopicsApplyOperator(task_id="plan")
        apply = TopicsApplyOperator(task_id="apply", dry_run=False)
        reset = ResetOffsetsOperator(task_id="reset", group=env.app_id, topics=[raw], to_earliest=True,
                                     dry_run=False)
        plan >> apply >> reset
    return dag


class _Member:
    """A consumer of the group in a thread of its own: the group is active while it runs."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.joined = threading.Event()
        self._stop = threading.Event()
        self._args = (bootstrap, group, topic)
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        bootstrap, group, topic = self._args
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, session_timeout_ms=6000)
        await consumer.start()
        try:
            while not self._stop.is_set():
                await consumer.getmany(timeout_ms=200)
                if consumer.assignment():
                    self.joined.set()
        finally:
            await consumer.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def test_topics_apply_and_offset_reset_are_idempotent_and_an_active_group_is_refused(streamlake_conn):
    env = streamlake_conn
    dag = _dag(env)

    first = run_dag(dag, DAY)
    assert first.state == "success", first.tasks
    assert first.xcom["plan"]["dry_run"] is True and first.xcom["plan"]["in_sync"] is False
    assert first.xcom["apply"]["outcome"] == "applied"
    partitions = len(first.xcom["reset"]["rows"])
    assert first.xcom["reset"]["outcome"] == "applied" and first.xcom["reset"]["committed"] == partitions >= 1

    second = run_dag(dag, DAY)
    assert second.state == "success", second.tasks
    assert second.xcom["plan"]["in_sync"] is True
    assert second.xcom["apply"]["outcome"] == "up-to-date"
    assert second.xcom["reset"]["outcome"] == "already-at-target" and second.xcom["reset"]["committed"] == 0

    member = _Member(env.broker.bootstrap, env.app_id, f"{env.prefix}.sales.orders.raw.v1")
    try:
        wait_for(member.joined.is_set, timeout=60, what="a member to join the group")
        refused = run_dag(dag, DAY)
        # the message the task fails with (Airflow's task log is not captured here): StreamLake's own
        with pytest.raises(AirflowFailException) as failure:
            dag.get_task("reset").execute({})
    finally:
        member.stop()
    assert refused.tasks["apply"] == "success" and refused.tasks["reset"] == "failed"
    assert "reset" not in refused.xcom
    message = str(failure.value)
    assert message.startswith(f"reset: consumer group {env.app_id!r} is ")
    assert "with 1 active member(s); offsets can only be reset while the group is inactive" in message
    assert "Stop its workers first" in message
