"""Load that arrives while a new group is still rebalancing must not lose records.

Found by the kill -9 suite: three workers start together and the producer
starts as soon as the first is ready. The batch fast path (like Faust's own
getmany) discards a fetched batch when flow is stopped for a rebalance and
relies on "seek back to the committed offsets" to read it again. A partition
with no committed offset yet is not sought at all (aiokafka's
``seek_to_committed`` skips offsets that are None or 0), so its fetch position
stays after the discarded records; the next batch is acked and, because
Faust's ``_new_offset`` checks for a gap at the head only when a committed
offset is truthy, committed past them. The first records of those partitions
never reach the output or the DLQ. The fast path's ``perform_seek`` now sends
such partitions back to their beginning; this test keeps it that way.
"""

from __future__ import annotations

from tests.faults.support import SteadyProducer, account, diagnose, plan_workload, read_all, topics, wait_all_landed
from tests.kafka_fixtures import wait_for


def test_load_during_the_first_rebalances_loses_nothing(test_env, worker_factory):
    workers = [worker_factory(f"w{i}", wait=False) for i in range(3)]
    bootstrap = test_env.broker.bootstrap
    source, output, dlq_topic = topics(test_env)
    planned = plan_workload(1500, keys=100, seed=21)
    wait_for(lambda: "Ready" in workers[0].log(), timeout=120, what="the first worker")
    producer = SteadyProducer(bootstrap, source, planned, rate=150.0)
    producer.start()  # the other two are still joining: the group rebalances under load
    for worker in workers:
        worker.wait_ready()
    producer.join(60)
    assert producer.error is None and producer.acked == len(planned)
    out, dlq = wait_all_landed(bootstrap, planned, output, dlq_topic, timeout=30)
    acc = account("load during the first rebalances", planned, read_all(bootstrap, source), out, dlq)
    acc.report()
    diagnose(test_env, acc, bootstrap, source)
    acc.assert_complete()
