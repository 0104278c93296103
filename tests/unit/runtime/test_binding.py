"""handle_batch, the state buffer and the checkpoint on the in-memory runtime (no broker)."""

from __future__ import annotations

import aiokafka.errors
import orjson
import pytest
from faust.types import TP

from streamlake.core.dlq import VALUE_OMITTED, H, Reason
from streamlake.core.sequence import decode_key_state
from streamlake.runtime.checkpoint import Checkpoint
from streamlake.runtime.record_path import RecordPath
from streamlake.runtime.sender import Backoff, is_permanent, is_producer_state_lost

from .harness import runtime


@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retries happen at once; the delays they would have waited are recorded."""
    waited: list[float] = []

    async def wait(self: Backoff) -> None:
        waited.append(self.delay)
        self.delay = min(self.delay * 2, self.cap)

    monkeypatch.setattr(Backoff, "wait", wait)
    return waited


def headers_of(item) -> dict[str, bytes]:
    return dict(item[3])


async def test_batch_forwards_in_order_and_sends_the_malformed_record_to_the_dlq() -> None:
    rt = runtime()
    first, second = rt.order(0, "k1", 1), rt.order(1, "k1", 2)
    bad = rt.record(2, "k1", b"{not json", partition=first.partition)
    await rt.binding.handle_batch([first, bad, second])
    out = rt.sender.sent[rt.topics.output_name]
    assert [(item[1], orjson.loads(item[2])["seq"]) for item in out] == [(b"k1", 1), (b"k1", 2)]
    assert all(item[0] == first.partition % rt.topics.output_partitions for item in out)
    [dlq] = rt.sender.sent[rt.topics.dlq_name]
    assert dlq[2] == b"{not json"
    assert headers_of(dlq)[H.REASON] == Reason.INVALID_JSON.value.encode()
    assert headers_of(dlq)[H.ORIGIN_OFFSET] == b"2"
    assert rt.binding.counters.records_in == 3 and rt.binding.counters.forwarded == 2 and rt.binding.counters.dlq == 1


async def test_fast_path_buffers_state_until_the_checkpoint_flushes_it() -> None:
    rt = runtime(RecordPath.FAST)
    record = rt.order(0, "k1", 1)
    await rt.binding.handle_batch([record])
    assert rt.rows.writes == []  # nothing written before a commit
    await rt.binding.state.flush()
    seq_rows = rt.rows.rows[rt.topics.table.name]
    assert list(seq_rows) == [b"k1"] and seq_rows[b"k1"][0] == record.partition
    [(ckey, (cpart, counters))] = rt.rows.rows[rt.topics.counters_table.name].items()
    assert cpart == record.partition and ckey == rt.topics.counter_keys[record.partition]
    assert counters["records_in"] == 1 and counters["processed"] == {rt.topics.source_name: 0}


async def test_what_is_buffered_for_a_revoked_partition_is_never_written() -> None:
    rt = runtime(RecordPath.FAST)
    kept, revoked = rt.order(0, "k1", 1), rt.order(1, "k3", 1)
    assert kept.partition != revoked.partition
    await rt.binding.handle_batch([kept, revoked])
    rt.binding.state.discard([revoked.partition])
    await rt.binding.state.flush()
    assert list(rt.rows.rows[rt.topics.table.name]) == [b"k1"]  # not k3
    assert list(rt.rows.rows[rt.topics.counters_table.name]) == [rt.topics.counter_keys[kept.partition]]


async def test_classic_path_writes_state_after_every_batch() -> None:
    rt = runtime(RecordPath.CLASSIC)
    await rt.binding.handle_batch([rt.order(0, "k1", 1)])
    assert rt.rows.writes == [rt.topics.table.name, rt.topics.counters_table.name]


async def test_a_failed_state_write_is_retried_with_backoff_and_nothing_is_dropped(no_backoff_sleep) -> None:
    rt = runtime(RecordPath.CLASSIC)
    rt.rows.fail_next = 2
    await rt.binding.handle_batch([rt.order(0, "k1", 1)])
    assert no_backoff_sleep == [0.5, 1.0]
    assert b"k1" in rt.rows.rows[rt.topics.table.name]


async def test_output_refusing_a_record_for_good_sends_it_to_the_dlq_and_keeps_its_key_unseen() -> None:
    refused: list[int] = []

    def refuse(topic: str, item) -> BaseException | None:
        if topic.endswith(".v1") and not refused and orjson.loads(item[2])["seq"] == 2:
            refused.append(2)
            return aiokafka.errors.MessageSizeTooLargeError()
        return None

    rt = runtime(refuse=refuse)
    records = [rt.order(0, "k1", 1), rt.order(1, "k1", 2)]
    await rt.binding.handle_batch(records)
    assert [orjson.loads(i[2])["seq"] for i in rt.sender.sent[rt.topics.output_name]] == [1]
    [dlq] = rt.sender.sent[rt.topics.dlq_name]
    assert headers_of(dlq)[H.REASON] == Reason.PRODUCE_FAILED.value.encode()
    await rt.binding.state.flush()
    state = decode_key_state(rt.rows.rows[rt.topics.table.name][b"k1"][1])
    assert state.next_seq == 2  # the DLQ'd seq 2 does not count as seen
    # the next record with seq 2 is in order, not a duplicate
    await rt.binding.handle_batch([rt.order(2, "k1", 2)])
    assert [orjson.loads(i[2])["seq"] for i in rt.sender.sent[rt.topics.output_name]] == [1, 2]


async def test_a_transient_send_error_is_retried_until_the_record_is_acknowledged(no_backoff_sleep) -> None:
    failures = iter([aiokafka.errors.KafkaTimeoutError(), aiokafka.errors.NotLeaderForPartitionError()])

    def refuse(topic: str, item) -> BaseException | None:
        return next(failures, None) if topic.endswith(".v1") else None

    rt = runtime(refuse=refuse)
    await rt.binding.handle_batch([rt.order(0, "k1", 1)])
    assert len(rt.sender.sent[rt.topics.output_name]) == 1
    assert rt.sender.attempts == 3 and no_backoff_sleep == [0.5, 1.0]
    assert rt.topics.dlq_name not in rt.sender.sent


async def test_a_dlq_record_refused_as_too_large_is_shrunk_then_written_without_its_value() -> None:
    def refuse(topic: str, item) -> BaseException | None:
        if topic.endswith(".dlq") and item[2] is not None:
            return aiokafka.errors.MessageSizeTooLargeError()
        return None

    rt = runtime(refuse=refuse)
    bad = rt.record(0, "k1", b"{" * 100)
    await rt.binding.handle_batch([bad])
    [dlq] = rt.sender.sent[rt.topics.dlq_name]
    assert dlq[2] is None and headers_of(dlq)[VALUE_OMITTED] == b"100"
    assert rt.sender.attempts == 3  # as it was, without its stack trace, without its value


def test_send_errors_are_classified_by_type() -> None:
    assert is_permanent(aiokafka.errors.MessageSizeTooLargeError())
    assert is_permanent(aiokafka.errors.RecordTooLargeError())
    assert not is_permanent(aiokafka.errors.KafkaTimeoutError())
    assert not is_permanent(ValueError("MessageSizeTooLargeError"))  # a name in a message is not a type


def test_lost_producer_state_is_told_apart_by_type_and_is_not_the_records_fault() -> None:
    for exc in (aiokafka.errors.OutOfOrderSequenceNumber(), aiokafka.errors.UnknownProducerId()):
        assert is_producer_state_lost(exc) and not is_permanent(exc)  # retried, after a new producer id
    assert not is_producer_state_lost(aiokafka.errors.NotLeaderForPartitionError())
    assert not is_producer_state_lost(ValueError("OutOfOrderSequenceNumber"))


async def test_checkpoint_flushes_state_before_it_commits_and_defers_batches_that_finish_meanwhile() -> None:
    rt = runtime(RecordPath.FAST)
    steps: list[str] = []
    completed: list[dict] = []
    generation = [1]
    checkpoint = Checkpoint(buffers=lambda: [rt.binding.state], complete=completed.append,
                            generation=lambda: generation[0])
    tp = TP(rt.topics.source_name, 0)
    await rt.binding.handle_batch([rt.order(0, "k1", 1)])

    async def commit_offsets() -> bool:
        steps.append(f"commit after {len(rt.rows.writes)} writes")
        checkpoint.finish_batch(1, {tp: (5, 6)})  # finishes mid-commit: its state is in the next flush
        checkpoint.finish_batch(0, {tp: (6, 7)})  # from an older generation: read again by the new owner
        assert completed == []
        return True

    assert await checkpoint.commit(commit_offsets) is True
    assert steps == ["commit after 2 writes"]  # state and counters written first
    assert completed == [{tp: (5, 6)}]
    checkpoint.finish_batch(1, {tp: (7, 8)})  # outside a commit: completes at once
    assert completed[-1] == {tp: (7, 8)}


def test_record_path_is_chosen_once_from_the_settings() -> None:
    assert runtime().settings.processing_guarantee == "at_least_once"
    assert RecordPath.for_settings(runtime().settings) is RecordPath.FAST
    assert RecordPath.for_settings(runtime(STREAMLAKE_FAST_PATH="false").settings) is RecordPath.CLASSIC
    eos = runtime(STREAMLAKE_PROCESSING_GUARANTEE="exactly_once").settings
    assert RecordPath.for_settings(eos) is RecordPath.EXACTLY_ONCE and not RecordPath.EXACTLY_ONCE.batch_consumer
