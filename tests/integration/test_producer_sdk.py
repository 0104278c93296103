"""The producer SDK against the real broker: keyed, Java-partitioned, checked, sequenced."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from streamlake.catalog import load_catalog
from streamlake.core.dlq import Reason, Stage
from streamlake.kafka.admin import apply_catalog
from streamlake.partitioner import partition_for_key
from streamlake.producer import (
    RecordRefused,
    SequenceSource,
    SequenceStoreError,
    StreamProducer,
    SyncStreamProducer,
    find_stream,
)
from tests.kafka_fixtures import read_topic


async def apply_topics(settings) -> None:
    await apply_catalog(settings, load_catalog(settings, [find_stream(settings, "sales.orders")]))


async def test_records_land_on_the_java_partition_of_their_key_and_refused_ones_are_never_sent(test_env):
    settings = test_env.settings()
    await apply_topics(settings)
    async with StreamProducer.for_stream("sales.orders", settings, max_in_flight=50) as producer:
        deliveries = [await producer.send({"order_id": f"k{i % 13}", "seq": i // 13 + 1, "n": i}) for i in range(400)]
        with pytest.raises(RecordRefused) as refused:
            await producer.send({"order_id": "k1", "seq": "7"})
        with pytest.raises(RecordRefused) as no_key:
            await producer.send(b'{"seq": 1}')
        results = [await d for d in deliveries]
    metrics = producer.metrics.as_dict()  # after close: every delivery is settled
    assert (refused.value.stage, refused.value.reason) == (Stage.SEQUENCE, Reason.INVALID_SEQUENCE)
    assert "stage sequence" in str(refused.value) and "invalid-sequence" in str(refused.value)
    assert (no_key.value.stage, no_key.value.reason) == (Stage.KEY, Reason.MISSING_KEY)
    assert metrics["delivered"] == 400 and metrics["refused"] == 2 and metrics["in_flight"] == 0
    assert metrics["backpressure_waits"] > 0  # 400 sends through a window of 50
    out = await read_topic(test_env.broker.bootstrap, producer.topic, min_count=400)
    assert len(out) == 400  # nothing refused reached the topic
    for o in out:
        assert o.partition == partition_for_key(o.key, 8)
        assert orjson.loads(o.value)["order_id"].encode() == o.key
    assert {(r.partition, r.offset) for r in results} == {(o.partition, o.offset) for o in out}
    per_key: dict[bytes, list[int]] = {}
    for o in sorted(out, key=lambda o: o.offset):
        per_key.setdefault(o.key, []).append(orjson.loads(o.value)["seq"])
    assert all(seqs == sorted(seqs) for seqs in per_key.values())


async def test_allocated_sequences_continue_after_a_restart_and_skip_refused_records(test_env):
    settings = test_env.settings()
    await apply_topics(settings)
    store = test_env.tmp / "orders.sequences.sqlite"
    options = {"sequence": SequenceSource.ALLOCATE, "sequence_store": store}
    async with StreamProducer.for_stream("sales.orders", settings, **options) as producer:
        first = [await producer.send({"order_id": key}) for key in ("a", "b", "a", "a")]
        with pytest.raises(RecordRefused):
            await producer.send({"order_id": 5})  # key-wrong-type: takes no number
        with pytest.raises(SequenceStoreError):  # one producer per key: the store is locked
            async with StreamProducer.for_stream("sales.orders", settings, **options):
                pass
        first_seqs = [(await d).seq for d in first]
    async with StreamProducer.for_stream("sales.orders", settings, **options) as producer:
        again = await producer.send_and_wait({"order_id": "a"})
    assert first_seqs == [1, 1, 2, 3]
    assert again.seq == 4
    out = await read_topic(test_env.broker.bootstrap, producer.topic, min_count=5)
    assert sorted(orjson.loads(o.value)["seq"] for o in out if o.key == b"a") == [1, 2, 3, 4]


async def test_sync_producer_refuses_in_the_callers_thread_and_flushes_on_close(test_env):
    settings = test_env.settings()
    await apply_topics(settings)
    with SyncStreamProducer.for_stream("sales.orders", settings) as producer:
        futures = [producer.send({"order_id": f"s{i}", "seq": 1}) for i in range(20)]
        with pytest.raises(RecordRefused) as refused:
            producer.send({"order_id": "s1"})
        delivered = [f.result(timeout=30) for f in futures]
    assert refused.value.reason is Reason.MISSING_SEQUENCE
    assert producer.metrics.delivered == 20
    assert all(d.partition == partition_for_key(d.key, 8) for d in delivered)
    out = await asyncio.wait_for(read_topic(test_env.broker.bootstrap, str(
        find_stream(settings, "sales.orders").source_topic(settings.topic_prefix)), min_count=20), 60)
    assert len(out) == 20
