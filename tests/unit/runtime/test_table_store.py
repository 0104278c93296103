"""The sequence table's stores and the bulk restore, and the private Faust names they reach through compat."""

from __future__ import annotations

import collections
import inspect
from dataclasses import dataclass
from typing import Any

import pytest
from faust.stores import rocksdb as faust_rocksdb
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP

from streamlake.core.sequence import KeyState, decode_key_state, encode_key_state
from streamlake.partitioner import partition_for_key
from streamlake.runtime import compat
from streamlake.runtime.table_store import PartitionedRows, restore_in_bulk, sequence_store_url

TOPIC = "app-src.seq-changelog"


@dataclass(frozen=True)
class Rec:
    offset: int
    key: bytes | None
    value: bytes | None


class FakeRecovery:
    """The part of Faust's Recovery the bulk restore reads and writes (its contract is tested below)."""

    def __init__(self, active: set[TP], standby: set[TP], highwaters: dict[TP, int]) -> None:
        self.active_tps, self.standby_tps = active, standby
        self.active_offsets: dict[TP, int | None] = {tp: None for tp in active}
        self.standby_offsets: dict[TP, int | None] = {tp: None for tp in standby}
        self.highwaters = highwaters
        self.in_recovery = True
        self.ended = 0
        self.flushed = 0

        class Signal:
            def __init__(self) -> None:
                self.set_count = 0

            def set(self) -> None:
                self.set_count += 1

        self.signal_recovery_end = Signal()

    def need_recovery(self) -> bool:
        offsets = {tp: -1 if offset is None else offset for tp, offset in self.active_offsets.items()}
        return any(offsets.get(tp, -1) < hw for tp, hw in self.highwaters.items())

    def flush_buffers(self) -> None:
        self.flushed += 1

    def _set_recovery_ended(self) -> None:
        self.in_recovery = False
        self.ended += 1


class FakeStore:
    def __init__(self) -> None:
        self.applied: list[tuple[TP, list[int]]] = []

    def apply_records(self, tp: TP, records: Any) -> None:
        self.applied.append((tp, [r.offset for r in records]))


def test_sequence_store_url_names_streamlakes_store_with_the_table_as_path() -> None:
    assert sequence_store_url("memory://", "s.seq") == "streamlake-memory:s.seq"
    assert sequence_store_url("rocksdb://", "s.seq") == "streamlake-rocksdb:s.seq"


def test_rows_are_kept_per_partition_and_a_dropped_partition_takes_only_its_rows() -> None:
    rows = PartitionedRows(8)
    keys = [f"k{i}".encode() for i in range(200)]
    for key in keys:
        rows[key] = encode_key_state(KeyState(3, (), 1))
    assert len(rows) == 200 and all(key in rows for key in keys)
    assert set(rows.by_partition) == {partition_for_key(k, 8) for k in keys}
    dropped = keys[0]
    rows.by_partition.pop(partition_for_key(dropped, 8))
    assert dropped not in rows and rows.get(dropped) is None
    assert len(rows) == sum(1 for k in keys if partition_for_key(k, 8) != partition_for_key(dropped, 8))
    kept = next(k for k in keys if partition_for_key(k, 8) != partition_for_key(dropped, 8))
    assert decode_key_state(rows[kept]) == KeyState(3, (), 1)


def test_restore_applies_a_list_skips_what_was_applied_and_ends_recovery_at_the_highwater() -> None:
    tp0, tp1 = TP(TOPIC, 0), TP(TOPIC, 1)
    recovery = FakeRecovery({tp0, tp1}, set(), {tp0: 5, tp1: 2})
    store = FakeStore()
    assert restore_in_bulk(recovery, store, tp0, [Rec(o, b"k", b"v") for o in range(4)]) == 4
    assert restore_in_bulk(recovery, store, tp0, [Rec(o, b"k", b"v") for o in range(2, 6)]) == 2  # 2, 3 seen
    assert store.applied == [(tp0, [0, 1, 2, 3]), (tp0, [4, 5])]
    assert recovery.ended == 0, "tp1 is not restored yet: source partitions must not resume"
    restore_in_bulk(recovery, store, tp1, [Rec(o, b"k", b"v") for o in range(3)])
    assert recovery.ended == 1 and recovery.signal_recovery_end.set_count == 1 and recovery.flushed == 1


def test_a_partition_revoked_meanwhile_is_not_applied_and_standbys_never_end_recovery() -> None:
    tp0, tp1, gone = TP(TOPIC, 0), TP(TOPIC, 1), TP(TOPIC, 2)
    recovery = FakeRecovery({tp0}, {tp1}, {tp0: 100})
    store = FakeStore()
    assert restore_in_bulk(recovery, store, gone, [Rec(0, b"k", b"v")]) == 0
    assert restore_in_bulk(recovery, store, tp1, [Rec(0, b"k", b"v"), Rec(1, b"k", None)]) == 2
    assert recovery.standby_offsets[tp1] == 1 and recovery.ended == 0
    assert store.applied == [(tp1, [0, 1])]


# -- contracts of the private names compat reaches for the stores and the restore


def test_recovery_keeps_the_names_the_bulk_restore_uses() -> None:
    assert inspect.signature(Recovery._set_recovery_ended).parameters.keys() == {"self"}
    for name in ("need_recovery", "flush_buffers"):
        assert callable(getattr(Recovery, name))
    assert isinstance(Recovery.signal_recovery_end, property)
    source = inspect.getsource(Recovery.__init__)
    for attribute in ("self.active_tps", "self.standby_tps", "self.active_offsets", "self.standby_offsets"):
        assert attribute in source


def test_finish_recovery_calls_what_faust_calls_after_its_last_changelog_record() -> None:
    tp = TP(TOPIC, 0)
    recovery = FakeRecovery({tp}, set(), {tp: 0})
    recovery.active_offsets[tp] = 0
    assert compat.finish_recovery_if_caught_up(recovery) is True
    assert compat.finish_recovery_if_caught_up(recovery) is False  # only once
    faust_reader = inspect.getsource(Recovery._slurp_changelogs.fun)
    for step in ("self.flush_buffers()", "self._set_recovery_ended()", "self.signal_recovery_end.set()"):
        assert step in faust_reader


def test_table_manager_keeps_the_start_steps_compat_runs_without_the_sleep() -> None:
    start = inspect.getsource(TableManager.on_start)
    assert "await self.sleep(1.0)" in start and "await self._update_channels()" in start
    assert "await self.recovery.start()" in start
    assert inspect.iscoroutinefunction(TableManager._update_channels)
    assert "self._changelogs" in inspect.getsource(TableManager.add)


def test_rocksdb_store_keeps_its_per_partition_database_lookup() -> None:
    assert list(inspect.signature(faust_rocksdb.Store._db_for_partition).parameters) == ["self", "partition"]


@pytest.mark.parametrize("value", [b"v", None])
def test_write_rocksdb_batch_puts_and_deletes_in_one_write(value: bytes | None) -> None:
    writes: list[Any] = []

    class Db:
        def write(self, batch: Any) -> None:
            writes.append(batch)

    class Store:
        def _db_for_partition(self, partition: int) -> Db:
            assert partition == 3
            return Db()

    compat.write_rocksdb_batch(Store(), 3, [(b"k", value)])
    assert len(writes) == 1 and len(writes[0]) == 1


def test_the_fetch_limit_is_read_from_the_aiokafka_consumer_at_every_hand_over() -> None:
    from aiokafka import AIOKafkaConsumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert "max_records=_consumer._max_poll_records" in inspect.getsource(AIOKafkaConsumerThread.getmany)
    assert "self._max_poll_records = max_poll_records" in inspect.getsource(AIOKafkaConsumer.__init__)
    assert inspect.signature(AIOKafkaConsumerThread._ensure_consumer).parameters.keys() == {"self"}

    class Aio:
        _max_poll_records: int | None = None

    class Thread:
        aio = Aio()

        def _ensure_consumer(self) -> Aio:
            return self.aio

    class Consumer:
        _thread = Thread()

    compat.set_fetch_limit(Consumer(), 2000)
    assert Thread.aio._max_poll_records == 2000


# -- the seek that crashed workers when a rebalance landed in the middle of a recovery round


class SeekRecorder:
    """The consumer side of a recovery seek: records the offsets asked for."""

    def __init__(self) -> None:
        self.sought: list[dict[TP, Any]] = []

    async def seek_wait(self, offsets: dict[TP, Any]) -> None:
        self.sought.append(dict(offsets))


def app_with_streamlakes_table_manager(**conf: Any) -> Any:
    import faust

    from streamlake.runtime.table_store import StartNowTableManager

    return faust.App(f"unit-seek-{id(object())}", broker="kafka://127.0.0.1:1", autodiscover=False,
                     TableManager=StartNowTableManager, **conf)


async def test_faust_seeks_a_partition_whose_offset_is_not_built_yet_with_none_which_aiokafka_refuses() -> None:
    """The crash: a partition a rebalance added has offset None until the next round builds it."""
    import faust
    from aiokafka import AIOKafkaConsumer, TopicPartition

    app = faust.App(f"unit-seek-{id(object())}", broker="kafka://127.0.0.1:1", autodiscover=False)
    recovery = Recovery(app, app.tables)
    tp = TP(TOPIC, 4)
    offsets: Any = collections.Counter()
    offsets.setdefault(tp, None)  # what Recovery._add does for a partition without a persisted offset
    assert "offsets.setdefault(tp, None)" in inspect.getsource(Recovery._add)
    consumer = SeekRecorder()
    await Recovery._seek_offsets(recovery, consumer, {tp}, offsets, "standby")
    assert consumer.sought == [{tp: None}]
    with pytest.raises(ValueError, match="Offset must be a positive integer"):
        AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1").seek(TopicPartition(TOPIC, 4), None)


async def test_streamlakes_recovery_reads_an_unknown_offset_from_the_start_and_keeps_built_ones() -> None:
    recovery = app_with_streamlakes_table_manager().tables.recovery
    assert isinstance(recovery, compat.SeekSafeRecovery)
    unknown, built, empty = TP(TOPIC, 0), TP(TOPIC, 1), TP(TOPIC, 2)
    offsets: Any = collections.Counter({built: 41, empty: -1})
    offsets.setdefault(unknown, None)
    consumer = SeekRecorder()
    await recovery._seek_offsets(consumer, {unknown, built, empty}, offsets, "standby")
    assert consumer.sought == [{unknown: 0, built: 41, empty: 0}]
    assert offsets[unknown] == -1, "the standby bookkeeping counts from the start too"


async def test_a_round_overtaken_by_a_rebalance_ends_instead_of_seeking() -> None:
    from faust.tables.recovery import RebalanceAgain

    recovery = app_with_streamlakes_table_manager().tables.recovery
    recovery.signal_recovery_start.set()  # what Recovery.on_rebalance does last
    consumer = SeekRecorder()
    with pytest.raises(RebalanceAgain):
        await recovery._seek_offsets(consumer, {TP(TOPIC, 0)}, collections.Counter(), "active")
    assert consumer.sought == []
    # Faust's round loop takes RebalanceAgain as "start over", and a rebalance always signals it
    assert "except RebalanceAgain" in inspect.getsource(Recovery._restart_recovery.fun)
    assert inspect.getsource(Recovery.on_rebalance).rstrip().splitlines()[-2].strip() == \
        "self.signal_recovery_start.set()"


def test_the_table_manager_makes_its_recovery_as_compat_does() -> None:
    source = inspect.getsource(TableManager.recovery.fget)  # type: ignore[attr-defined]
    assert "self._recovery = Recovery(" in source and "self.app, self, beacon=self.beacon, loop=self.loop" in source
    params = list(inspect.signature(Recovery._seek_offsets).parameters)
    assert params == ["self", "consumer", "tps", "offsets", "title"]


# -- highwaters under exactly_once: Faust's are unknown until a fetch returned one


class ListOffsetsThread:
    """Faust's consumer thread around an aiokafka consumer that answers ListOffsets only."""

    def __init__(self, end_offsets: dict[TP, int]) -> None:
        self.listed = end_offsets
        self.asked: list[list[TP]] = []
        self.consumer = self  # Faust's consumer, as the thread sees it
        self.in_transaction = True

    def _ensure_consumer(self) -> ListOffsetsThread:
        return self

    def last_stable_offset(self, tp: TP) -> None:
        return None  # aiokafka's answer before any fetch of *tp* returned

    async def end_offsets(self, tps: list[TP]) -> dict[TP, int]:
        self.asked.append(list(tps))
        return {tp: self.listed[tp] for tp in tps}

    async def call_thread(self, method: Any, *args: Any) -> Any:
        return await method(*args)


class TransactionalConsumer:
    """Faust's consumer under exactly_once: its highwaters are Faust's thread's."""

    def __init__(self, thread: ListOffsetsThread) -> None:
        self._thread = thread

    async def highwaters(self, *tps: TP) -> Any:
        from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

        return await AIOKafkaConsumerThread._highwaters(self._thread, list(tps))  # type: ignore[arg-type]


async def test_under_exactly_once_faust_sees_no_highwater_before_a_fetch_and_streamlakes_recovery_lists_them() -> None:
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    source = inspect.getsource(AIOKafkaConsumerThread._highwaters)
    assert "last_stable_offset(tp)" in source and "in_transaction" in source, "Faust's rule this guards against"
    app = app_with_streamlakes_table_manager(processing_guarantee="exactly_once")
    app.in_worker = True  # what the worker sets at start
    assert app.in_transaction
    recovery = app.tables.recovery
    written, empty = TP(TOPIC, 0), TP(TOPIC, 1)
    thread = ListOffsetsThread({written: 7, empty: 0})
    highwaters: Any = collections.Counter()
    await recovery._build_highwaters(TransactionalConsumer(thread), {written, empty}, highwaters, "active")
    assert thread.asked and set(thread.asked[0]) == {written, empty}
    assert dict(highwaters) == {written: 6, empty: -1}, "Faust's own -1: the last offset, not the next"


def test_the_fetch_wait_is_read_by_aiokafka_at_every_fetch_request() -> None:
    from aiokafka.consumer.fetcher import Fetcher
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert "self._fetch_max_wait_ms," in inspect.getsource(Fetcher._get_actions_per_node)
    assert "self._fetch_max_wait_ms = fetch_max_wait_ms" in inspect.getsource(Fetcher.__init__)
    assert "fetch_max_wait_ms=1500" in inspect.getsource(AIOKafkaConsumerThread._create_worker_consumer)

    class Fetch:
        _fetch_max_wait_ms = 1500

    class Aio:
        _fetcher = Fetch()

    class Thread:
        def _ensure_consumer(self) -> Aio:
            return Aio()

    class Consumer:
        _thread = Thread()

    compat.set_fetch_max_wait(Consumer(), 200)
    assert Fetch._fetch_max_wait_ms == 1500 and Aio._fetcher._fetch_max_wait_ms == 200
