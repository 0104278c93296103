"""The repartition step of handle_batch on the in-memory runtime: one batch step, counted, never looping."""

from __future__ import annotations

import aiokafka.errors
import pytest

from streamlake.core.repartition import REPARTITIONED_FROM
from streamlake.runtime.sender import Backoff

from .harness import runtime


@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    async def wait(self: Backoff) -> None:
        self.delay = min(self.delay * 2, self.cap)

    monkeypatch.setattr(Backoff, "wait", wait)


def away(rt, key: str) -> int:
    return (rt.order(0, key, 1).partition + 3) % rt.topics.partitions


async def test_misplaced_records_go_to_their_keys_partition_of_the_repartition_topic_and_are_counted_where_read():
    rt = runtime()
    home = rt.order(0, "k1", 1).partition
    moved = [rt.record(o, "k1", {"order_id": "k1", "seq": o + 1}, partition=away(rt, "k1")) for o in range(3)]
    direct = rt.order(5, "k2", 1)
    results = await rt.binding.handle_batch([*moved, direct])
    sent = rt.sender.sent[rt.topics.repartition_name]
    assert [(item[0], item[1], item[2]) for item in sent] == [(home, b"k1", m.value) for m in moved]
    assert [dict(item[3])[REPARTITIONED_FROM] for item in sent] == [f"{away(rt, 'k1')}:{o}".encode() for o in range(3)]
    assert [item[4] for item in sent] == [m.timestamp for m in moved]  # the source timestamp travels along
    assert len(rt.sender.sent[rt.topics.output_name]) == 1  # only k2 is decided here; k1 when read back
    c = rt.binding.counters
    assert (c.repartitioned, c.records_in, c.forwarded, c.dlq) == (3, 1, 1, 0)
    assert sum(r.counters.repartitioned for r in results) == 3

    read_back = [rt.record(o, "k1", {"order_id": "k1", "seq": o + 1}, partition=home,
                           topic=rt.topics.repartition_name) for o in range(3)]
    await rt.binding.handle_batch(read_back)
    assert (c.repartitioned, c.records_in, c.forwarded, c.dlq) == (3, 4, 4, 0)


async def test_a_wrong_partition_on_the_repartition_topic_is_dead_lettered_not_moved_again():
    rt = runtime()
    stray = rt.record(0, "k1", {"order_id": "k1", "seq": 1}, partition=away(rt, "k1"), topic=rt.topics.repartition_name)
    await rt.binding.handle_batch([stray])
    assert rt.topics.repartition_name not in rt.sender.sent
    assert rt.binding.counters.dlq_by_reason == {"wrong-partition": 1}


async def test_a_record_the_repartition_topic_refuses_for_good_goes_to_the_dlq_and_transient_errors_are_retried():
    k1_attempts = {"n": 0}

    def refuse(topic: str, item):
        if not topic.endswith(".repartition"):
            return None
        if item[1] == b"big":
            return aiokafka.errors.MessageSizeTooLargeError()
        k1_attempts["n"] += 1
        return aiokafka.errors.KafkaTimeoutError() if k1_attempts["n"] == 1 else None

    rt = runtime(refuse=refuse)
    big = rt.record(0, "big", {"order_id": "big", "seq": 1}, partition=away(rt, "big"))
    ok = rt.record(1, "k1", {"order_id": "k1", "seq": 1}, partition=away(rt, "k1"))
    await rt.binding.handle_batch([big, ok])
    assert [item[1] for item in rt.sender.sent[rt.topics.repartition_name]] == [b"k1"]
    assert k1_attempts["n"] == 2  # the timeout was retried
    c = rt.binding.counters
    assert (c.repartitioned, c.dlq, c.records_in) == (1, 1, 1)
    assert c.dlq_by_reason == {"produce-failed": 1}
    assert [item[1] for item in rt.sender.sent[rt.topics.dlq_name]] == [b"big"]


async def test_strict_streams_have_no_repartition_step():
    rt = runtime()
    object.__setattr__(rt.topics, "repartition", None)  # as declare_stream leaves it for partitioning=strict
    misplaced = rt.record(0, "k1", {"order_id": "k1", "seq": 1}, partition=away(rt, "k1"))
    await rt.binding.handle_batch([misplaced])
    assert rt.binding.counters.dlq_by_reason == {"wrong-partition": 1}
