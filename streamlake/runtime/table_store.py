"""The sequence table's stores: compact values, kept per changelog partition, restored in bulk.

Invariants:

* A stored value is the changelog value itself (the binary per-key state of
  :mod:`streamlake.core.sequence`): restoring a record decodes nothing.
* State is kept per changelog partition together with the offset of the last
  changelog record applied to it. Rows and offset go together: a partition is
  dropped only when it is revoked, so a standby partition that becomes active
  keeps its rows and Faust's recovery resumes after its offset
  (:meth:`persisted_offset`) instead of replaying the changelog from the start.
* :meth:`SequenceStore.apply_records` is the bulk restore: one call per
  fetched list of one changelog partition, records in offset order.

Faust picks a store by URL scheme; these two are registered under
``streamlake-memory`` and ``streamlake-rocksdb`` (``faust.stores`` entry point
in setup.cfg; the RocksDB one lives in rocksdb_store.py, so a ``memory://``
worker never imports RocksDB) and chosen for the sequence table by
:func:`sequence_store_url`.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any, Protocol, runtime_checkable

from faust.stores import memory
from faust.tables import TableManager
from faust.types import TP

from ..partitioner import partition_for_key
from .compat import SeekSafeRecovery, finish_recovery_if_caught_up, seek_safe_recovery, start_tables_now

__all__ = ["StartNowTableManager", "ChangelogRecord", "BulkRestorable", "PartitionedRows", "SequenceMemoryStore",
           "followed_offsets", "restore_in_bulk", "sequence_store_url", "SEQUENCE_STORE_SCHEMES"]

#: Faust store scheme -> StreamLake's store for the sequence table.
SEQUENCE_STORE_SCHEMES = {"memory": "streamlake-memory", "rocksdb": "streamlake-rocksdb"}


def sequence_store_url(store: str, table_name: str) -> str:
    """The sequence table's store URL for the app's *store*: ``memory://`` -> ``streamlake-memory:<table>``.

    The table name is the URL's path, as Faust makes it for its own stores (and
    a URL with nothing after the scheme would count as no URL at all).
    """
    scheme = store.split(":", 1)[0]
    return f"{SEQUENCE_STORE_SCHEMES.get(scheme, scheme)}:{table_name}"


class ChangelogRecord(Protocol):
    """What the bulk restore reads of a fetched changelog record (aiokafka's ConsumerRecord)."""

    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@runtime_checkable
class BulkRestorable(Protocol):
    """A store that applies a fetched list of changelog records in one call."""

    def apply_records(self, tp: TP, records: Sequence[ChangelogRecord]) -> None: ...


def followed_offsets(recovery: Any, tp: TP) -> tuple[MutableMapping[TP, int | None], bool] | None:
    """The recovery offsets changelog partition *tp* is followed in here and whether it is active; None if neither.

    The offsets map each partition to the last offset its table applied.
    """
    if tp in recovery.active_tps:
        return recovery.active_offsets, True
    if tp in recovery.standby_tps:
        return recovery.standby_offsets, False
    return None


def restore_in_bulk(recovery: Any, store: BulkRestorable, tp: TP, records: Sequence[ChangelogRecord]) -> int:
    """Apply one fetched list of changelog partition *tp*, as Faust's reader does record by record.

    Keeps Faust's recovery bookkeeping: only a partition this worker restores
    (active) or follows (standby) is applied, never a record at or below the
    offset already applied, the partition's offset moves to the last record,
    and active recovery ends (the source partitions resume) once every active
    changelog partition reached the highwater taken when recovery started.
    A partition revoked meanwhile is skipped: its next owner reads it again.
    Returns how many records were applied.
    """
    followed = followed_offsets(recovery, tp)
    if followed is None:
        return 0
    offsets, active = followed
    seen = offsets.get(tp)
    if seen is not None and records and records[0].offset <= seen:
        records = [r for r in records if r.offset > seen]
    if records:
        store.apply_records(tp, records)
        offsets[tp] = records[-1].offset
    if active:
        finish_recovery_if_caught_up(recovery)
    return len(records)


class PartitionedRows(MutableMapping[bytes, bytes]):
    """A mapping of key to value kept as one dict per partition.

    Lookups try each held partition (a handful of dict lookups); writes
    without a partition compute it with the Java partitioner. Dropping a
    partition drops its dict: no per-key index is kept.
    """

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.by_partition: dict[int, dict[bytes, bytes]] = {}

    def rows_of(self, partition: int) -> dict[bytes, bytes]:
        rows = self.by_partition.get(partition)
        if rows is None:
            rows = self.by_partition[partition] = {}
        return rows

    def __getitem__(self, key: bytes) -> bytes:
        for rows in self.by_partition.values():
            value = rows.get(key)
            if value is not None:
                return value
        raise KeyError(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.rows_of(partition_for_key(key, self.partitions))[key] = value

    def __delitem__(self, key: bytes) -> None:
        for rows in self.by_partition.values():
            if rows.pop(key, None) is not None:
                return
        raise KeyError(key)

    def __iter__(self) -> Iterator[bytes]:
        for rows in list(self.by_partition.values()):
            yield from rows

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.by_partition.values())

    def __contains__(self, key: object) -> bool:
        return any(key in rows for rows in self.by_partition.values())

    def clear(self) -> None:
        self.by_partition.clear()


class SequenceMemoryStore(memory.Store):
    """``memory://`` for the sequence table: compact values per partition, offsets kept for standbys."""

    data: PartitionedRows

    def __init__(self, url: Any, app: Any, table: Any, **kwargs: Any) -> None:
        self.applied: dict[TP, int] = {}
        super().__init__(url, app, table, **kwargs)
        self.data = PartitionedRows(table.partitions or app.conf.topic_partitions)

    def apply_records(self, tp: TP, records: Sequence[ChangelogRecord]) -> None:
        rows = self.data.rows_of(tp.partition)
        for record in records:
            if record.value is None:
                rows.pop(record.key, None)  # type: ignore[arg-type]
            else:
                rows[record.key] = record.value  # type: ignore[index]
        if records:
            self.applied[tp] = records[-1].offset

    def apply_changelog_batch(self, batch: Any, to_key: Any, to_value: Any) -> None:
        """Faust's per-event recovery path (used when the bulk path does not run)."""
        for event in batch:
            message = event.message
            rows = self.data.rows_of(message.partition)
            if message.value is None:
                rows.pop(message.key, None)
            else:
                rows[message.key] = message.value
            self.applied[message.tp] = message.offset

    def persisted_offset(self, tp: TP) -> int | None:
        return self.applied.get(tp)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.applied[tp] = offset

    async def on_rebalance(self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0) -> None:
        topic = self.table.changelog_topic.get_topic_name()
        keep = {tp.partition for tp in assigned if tp.topic == topic}
        for tp in revoked:
            if tp.topic == topic and tp.partition not in keep:
                self.data.by_partition.pop(tp.partition, None)
                self.applied.pop(tp, None)

    async def on_recovery_completed(self, active_tps: Any, standby_tps: Any) -> None:
        """Keep standby partitions (Faust's memory store drops every key not on an active partition)."""


class StartNowTableManager(TableManager):
    """Faust's table manager without the fixed one-second sleep before it starts, and with a seek-safe recovery.

    The sleep lets an app declare tables while it starts; StreamLake declares
    every table when it builds the app, so it only delays each worker's first
    record by a second. The recovery is Faust's, except that a rebalance in the
    middle of a recovery round cannot crash it (:class:`compat.SeekSafeRecovery`).
    """

    @property
    def recovery(self) -> SeekSafeRecovery:
        return seek_safe_recovery(self)

    async def on_start(self) -> None:
        if not self.should_stop:
            await start_tables_now(self)
