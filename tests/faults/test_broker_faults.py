"""Broker faults on a broker of the test's own (the shared session broker is never touched).

* Broker restart: stopped and started on the same port and data dir mid-run;
  the workers resume on their own and nothing is lost.
* Unwritable DLQ: auto-creation off and the DLQ topic deleted under a running
  worker; a bad record stalls its partition with a clear, repeated error,
  nothing is dropped or skipped, and once the topic is back every record is
  accounted for.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from streamlake.partitioner import partition_for_key
from tests.faults.support import (
    PARTITIONS,
    Planned,
    SteadyProducer,
    account,
    committed_offsets,
    diagnose,
    plan_workload,
    read_all,
    topics,
    wait_all_landed,
)
from tests.kafka_fixtures import create_topics, produce, wait_for


def test_broker_restart_mid_run_loses_nothing(dedicated_broker, test_env, worker_factory):
    broker = dedicated_broker()
    broker.use_for(test_env)
    workers = [worker_factory(f"w{i}", wait=False) for i in range(2)]
    for worker in workers:
        worker.wait_ready()
    source, output, dlq_topic = topics(test_env)
    planned = plan_workload(3000, keys=100, seed=31)
    producer = SteadyProducer(broker.bootstrap, source, planned, rate=120.0)
    producer.start()
    try:
        wait_for(lambda: producer.acked >= 600 or producer.error, timeout=60, what="load before the restart")
        assert producer.error is None, producer.error
        acked_at_stop = producer.acked
        port = broker.state.port
        broker.restart()  # SIGTERM, then start again on the same port and data dir
        assert broker.state.port == port
        restarted_at = time.monotonic()
        wait_for(lambda: producer.acked >= acked_at_stop + 600 or producer.error, timeout=120,
                 what="the producer to get through to the restarted broker")
        producer.join(timeout=len(planned) / 120.0 + 90)
        assert producer.error is None, producer.error
        assert producer.acked == len(planned)
        out, dlq = wait_all_landed(broker.bootstrap, planned, output, dlq_topic, timeout=150)
        resumed_in = time.monotonic() - restarted_at
    finally:
        producer.cancel()
    for worker in workers:
        assert worker.proc.poll() is None, f"worker {worker.name} exited:\n{worker.log()[-3000:]}"
    acc = account("broker restart", planned, read_all(broker.bootstrap, source), out, dlq)
    acc.report()
    print(f"[broker restart] restarted after {acked_at_stop} records acked; every record landed "
          f"{resumed_in:.0f}s after the restart, with no worker restarted", flush=True)
    diagnose(test_env, acc, broker.bootstrap, source)
    acc.assert_complete()


async def delete_topic(bootstrap: str, name: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name])
        for _ in range(100):  # deletion is asynchronous: wait until it is gone
            if name not in await admin.list_topics():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"topic {name} still exists")
    finally:
        await admin.close()


def test_unwritable_dlq_stalls_then_resumes_without_loss(dedicated_broker, test_env, worker_factory):
    broker = dedicated_broker(auto_create=False)
    broker.use_for(test_env)
    worker = worker_factory("dlq-stall")  # creates the catalog topics, the DLQ included
    source, output, dlq_topic = topics(test_env)
    asyncio.run(delete_topic(broker.bootstrap, dlq_topic))

    # valid records on every partition, then one bad record on partition `stalled`, then more valid ones
    before = [p for p in plan_workload(400, keys=40, seed=41, bad=0.0, dup=0.0)]
    bad_key = next(p.key for p in before if partition_for_key(p.key, PARTITIONS) == 3)
    stalled = partition_for_key(bad_key, PARTITIONS)
    bad = Planned(bad_key, b'{"order_id": "%s", "seq": "not a number"}' % bad_key, "invalid-sequence")
    next_seq = max(p.seq for p in before if p.key == bad_key) + 1
    after = [Planned(bad_key, orjson.dumps({"order_id": bad_key.decode(), "seq": next_seq + i}), "valid",
                     next_seq + i) for i in range(20)]
    planned = before + [bad] + after
    coords = asyncio.run(produce(broker.bootstrap, source, [{"key": p.key, "value": p.value} for p in planned],
                                 PARTITIONS))
    bad_offset = coords[len(before)][1]

    # The DLQ write fails and the partition waits. (The binding's own clear error, "DLQ topic ... not
    # writable", only comes once the producer gives up on a batch: see the end of the test.)
    error = f"DLQ topic {dlq_topic} not writable"
    refused = f"topic='{dlq_topic}'"
    wait_for(lambda: error in worker.log() or any(refused in line and "UnknownTopicOrPartition" in line
                                                  for line in worker.log().splitlines()),
             timeout=60, what="the DLQ write to be refused")
    # Records of the batch the bad record came in may be forwarded already; nothing is committed past
    # it, and a record produced after the stall began is not processed while the DLQ is missing.
    later = [Planned(bad_key, orjson.dumps({"order_id": bad_key.decode(), "seq": next_seq + 20 + i}), "valid",
                     next_seq + 20 + i) for i in range(5)]
    asyncio.run(produce(broker.bootstrap, source, [{"key": p.key, "value": p.value} for p in later], PARTITIONS))
    planned += later
    later_values = {p.value for p in later}
    window_end = time.monotonic() + 5.0  # a negative check needs a window: nothing of `later` in 5 s
    while time.monotonic() < window_end:
        out = read_all(broker.bootstrap, output)
        assert not later_values & {o.value for o in out}, "a record behind the stalled batch was processed"
    # The stall says so, clearly and repeatedly (conf/test.toml: request_timeout = 5 s).
    wait_for(lambda: worker.log().count(error) >= 2, timeout=60, what="the stall's error to repeat")
    committed = asyncio.run(committed_offsets(broker.bootstrap, test_env.app_id)).get((source, stalled))
    assert committed is None or committed <= bad_offset, (
        f"offset {committed} committed past the record waiting for the DLQ (offset {bad_offset})")
    assert worker.proc.poll() is None
    errors_while_stalled = worker.log().count(error)
    sample = next((line for line in worker.log().splitlines() if error in line or refused in line), "")

    # The DLQ comes back: processing resumes on its own and everything is accounted for.
    asyncio.run(create_topics(broker.bootstrap, [dlq_topic], PARTITIONS))
    out, dlq = wait_all_landed(broker.bootstrap, planned, output, dlq_topic, timeout=90)
    acc = account("unwritable DLQ", planned, read_all(broker.bootstrap, source), out, dlq)
    acc.report()
    print(f"[unwritable DLQ] partition {stalled} stalled at offset {bad_offset} (committed {committed}); "
          f"{errors_while_stalled} error lines while stalled, e.g.: {sample.split('] ', 3)[-1][:240]}", flush=True)
    diagnose(test_env, acc, broker.bootstrap, source)
    acc.assert_complete()
    assert acc.dlq == 1 and acc.duplicates_forwarded == 0 and acc.dlq_duplicates == 0
    assert worker.proc.poll() is None
    assert errors_while_stalled >= 2


def test_dlq_record_too_large_for_its_topic_is_written_without_its_value(test_env, worker_factory):
    """A DLQ topic that cannot hold the original value must not stall the partition forever."""
    bootstrap = test_env.broker.bootstrap
    source, output, dlq_topic = topics(test_env)
    asyncio.run(create_topics(bootstrap, [dlq_topic], PARTITIONS))  # broker defaults: 1 MB records, not the catalog's 4 MB
    worker_factory("small-dlq")
    big = b'{"order_id":"big","seq":1,"pad":"' + b"x" * 1_048_000  # truncated JSON: goes to the DLQ
    ok = orjson.dumps({"order_id": "big", "seq": 1})
    asyncio.run(produce(bootstrap, source, [{"key": b"big", "value": big}, {"key": b"big", "value": ok}], PARTITIONS))
    dlq = wait_for(lambda: read_all(bootstrap, dlq_topic), timeout=90, what="the shrunken DLQ record")
    (record,) = dlq
    headers = dict(record.headers)
    assert record.key == b"big" and record.value is None
    assert headers["streamlake.dlq.value-omitted"] == str(len(big)).encode()
    assert headers["streamlake.dlq.reason"] == b"invalid-json"
    assert headers["streamlake.dlq.exception.stacktrace"] == b""
    out = wait_for(lambda: read_all(bootstrap, output), timeout=60, what="the record behind it")
    assert [o.value for o in out] == [ok], "the partition keeps flowing"
