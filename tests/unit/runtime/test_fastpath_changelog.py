"""A changelog list handed over for a partition that was paused meanwhile is sought back, never lost."""

from __future__ import annotations

import asyncio
import inspect
from types import SimpleNamespace
from typing import Any

from aiokafka.consumer.fetcher import Fetcher
from faust.transport.consumer import Consumer
from faust.types import TP

from streamlake.core.progress import ReadProgress
from streamlake.runtime.fastpath import BatchConsumer

CHANGELOG = "app-src.seq-changelog"


def test_the_thread_reads_a_live_active_set_and_aiokafka_drains_everything_when_it_is_empty() -> None:
    # Why a dropped changelog list must be sought back: Faust hands the consumer thread the set it
    # pauses and resumes partitions in, and aiokafka takes an empty set for "every partition".
    wait = inspect.getsource(Consumer._wait_next_records)
    assert "active_partitions = self._get_active_partitions()" in wait
    assert "return records, active_partitions" in wait
    assert "self._get_active_partitions().difference_update(tpset)" in inspect.getsource(Consumer.pause_partitions)
    assert "if partitions and tp not in partitions:" in inspect.getsource(Fetcher.fetched_records)


def consumer_with(recovery: Any, seeks: list[tuple[TP, int]]) -> BatchConsumer:
    consumer = BatchConsumer.__new__(BatchConsumer)  # drain_records reads only what is set here
    consumer.app = SimpleNamespace(  # type: ignore[assignment]
        tables=SimpleNamespace(recovery=recovery), consumer_generation_id=3, fast_bindings={}, monitor=None,
        topics=SimpleNamespace(acks_enabled_for=lambda topic: False))
    consumer.progress = ReadProgress()
    consumer._fetch_limit = None
    consumer._seeking = 0
    consumer._buffered_partitions = set()

    async def seek_partition(tp: TP, offset: int) -> None:
        seeks.append((tp, offset))

    consumer.seek_partition = seek_partition  # type: ignore[method-assign]
    return consumer


def test_a_changelog_list_of_a_paused_partition_is_sought_back_to_its_first_unapplied_record() -> None:
    standby, active_tp, unfollowed = TP(CHANGELOG, 0), TP(CHANGELOG, 1), TP(CHANGELOG, 2)
    recovery = SimpleNamespace(in_recovery=False, standby_remaining_total=lambda: 0,
                               active_tps={active_tp}, active_offsets={active_tp: 41},
                               standby_tps={standby}, standby_offsets={standby: -1})
    seeks: list[tuple[TP, int]] = []
    consumer = consumer_with(recovery, seeks)
    listed = [SimpleNamespace(offset=o, key=b"k", value=b"v") for o in range(264)]
    records = {standby: listed, active_tp: listed[42:50], unfollowed: listed[:5]}
    asyncio.run(consumer.drain_records(records, active=set()))  # all three were paused meanwhile
    # The standby had applied nothing (-1): read again from 0, not from 264 where the fetch left it.
    # An unfollowed partition is sought by whoever's recovery takes it next.
    assert sorted(seeks) == [(standby, 0), (active_tp, 42)]
