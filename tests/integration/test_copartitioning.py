"""A worker refuses to start when a source topic and its state table are not co-partitioned."""

from __future__ import annotations

import asyncio

from tests.kafka_fixtures import create_topics, wait_for


def test_worker_refuses_to_start_when_the_source_has_another_partition_count(test_env, worker_factory):
    source = f"{test_env.prefix}.sales.orders.raw.v1"
    asyncio.run(create_topics(test_env.broker.bootstrap, [source], 4))  # the catalog says 8
    worker = worker_factory("mismatch", wait=False)
    wait_for(lambda: worker.proc.poll() is not None, timeout=120, what="the worker to refuse to start")
    assert worker.proc.returncode != 0
    log = worker.log()
    assert "not co-partitioned" in log
    assert f"{source} has 4 partitions but its sequence table has 8" in log
    assert "Ready" not in log
