"""The sequence table's stores and the bulk restore, and the private Faust names they reach through compat."""

from __future__ import annotations

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
