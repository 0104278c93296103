"""The DLQ agent on the in-memory runtime: counts, retries, parking and ordered acks (no broker)."""

from __future__ import annotations

import time

from streamlake.core.dlq import H, Reason

from .harness import FakeDlqStream, dlq_runtime


async def test_agent_counts_every_verdict_retries_the_transient_record_and_acks_in_offset_order() -> None:
    rt = dlq_runtime()
    await rt.consume([
        rt.dead_letter(0, Reason.TRANSFORM_RETRYABLE, origin_partition=2),    # retried
        rt.dead_letter(1, Reason.INVALID_JSON),                               # parked for a human
        rt.dead_letter(2, Reason.TRANSFORM_RETRYABLE, failed_before=2),       # third failure: the cap
        rt.malformed(3),                                                      # no DLQ context
    ])
    counts = rt.agent.table["0"]
    assert (counts["hwm"], counts["records"], counts["retried"], counts["parked"]) == (3, 4, 1, 3)
    assert (counts["exhausted"], counts["malformed"]) == (1, 1)
    assert counts["by_reason"]["process/transform-retryable"]["count"] == 2
    assert counts["by_reason"]["decode/invalid-json"]["count"] == 1
    [(topic, key, value, partition, headers)] = rt.producer.sent
    assert topic == rt.agent.retry_name and partition == 2  # the origin partition: per-key order kept
    assert (key, value) == (b"k1", b'{"order_id":"k1","seq":1}')
    assert dict(headers)[H.ATTEMPT] == b"1" and dict(headers)["trace"] == b"t1"
    assert rt.acks == [(0, 0), (0, 1), (0, 2), (0, 3)]
    assert rt.agent.retries_sent == 1


async def test_a_pending_retry_holds_back_the_acks_behind_it_until_its_send_is_done() -> None:
    rt = dlq_runtime(STREAMLAKE_DLQ_RETRY_BACKOFF="0.3")
    now_ms = int(time.time() * 1000)
    retry = rt.dead_letter(0, Reason.TRANSFORM_RETRYABLE, failed_at_ms=now_ms)  # due in 0.3 s
    park = rt.dead_letter(1, Reason.TRANSFORM_ERROR)
    await rt.agent._consume(FakeDlqStream([retry, park]))  # returns with the retry still waiting
    assert rt.acks == [] and rt.agent.pending_retries() == 1  # offset 1 is done, but offset 0 is not
    await rt.consume([])
    assert rt.acks == [(0, 0), (0, 1)] and len(rt.producer.sent) == 1


async def test_a_record_read_again_after_a_rebalance_is_retried_again_but_counted_once() -> None:
    rt = dlq_runtime()
    await rt.consume([rt.dead_letter(0, Reason.TRANSFORM_RETRYABLE), rt.dead_letter(1, Reason.TRANSFORM_ERROR)])
    first = dict(rt.agent.table["0"])
    # the partition re-read from its committed offset
    await rt.consume([rt.dead_letter(0, Reason.TRANSFORM_RETRYABLE), rt.dead_letter(1, Reason.TRANSFORM_ERROR)])
    assert rt.agent.table["0"] == first and first["records"] == 2
    assert len(rt.producer.sent) == 2  # at least once: the ingestion tracker drops the duplicate
    assert rt.acks == [(0, 0), (0, 1), (0, 0), (0, 1)]


async def test_a_record_the_agent_cannot_read_is_logged_acked_and_the_partition_goes_on() -> None:
    rt = dlq_runtime()
    unreadable = rt.malformed(0)
    unreadable.message.headers = 42  # not a header list: DlqEntry cannot be built
    await rt.consume([unreadable, rt.dead_letter(1, Reason.TRANSFORM_ERROR)])
    assert rt.acks == [(0, 0), (0, 1)]
    assert rt.agent.table["0"]["records"] == 1 and rt.producer.sent == []


async def test_a_batch_is_acked_only_after_its_counts_are_written_and_a_failed_write_is_retried() -> None:
    rt = dlq_runtime()
    writes: list[tuple[dict, list]] = []
    fail_first = [True]

    async def write_rows(table: dict, rows: dict) -> None:
        writes.append(({key: value for key, (_, value) in rows.items()}, list(rt.acks)))
        if fail_first.pop() if fail_first else False:
            raise ConnectionError("changelog not writable")
        table.update((key, value) for key, (_, value) in rows.items())

    rt.agent.write_rows = write_rows
    await rt.consume([rt.dead_letter(0, Reason.TRANSFORM_ERROR), rt.dead_letter(1, Reason.INVALID_JSON),
                      rt.dead_letter(2, Reason.TRANSFORM_ERROR, partition=1)])
    assert len(writes) == 2  # one failed write, then the same rows again
    assert writes[0][0] == writes[1][0] and set(writes[1][0]) == {"0", "1"}  # one row per partition
    assert writes[0][1] == writes[1][1] == []  # nothing acked before the counts were written
    assert (rt.agent.table["0"]["records"], rt.agent.table["1"]["records"]) == (2, 1)
    assert sorted(rt.acks) == [(0, 0), (0, 1), (1, 2)]
