"""``rocksdb://`` for the sequence table, with the bulk restore of :meth:`SequenceRocksDBStore.apply_records`.

Faust's RocksDB store already keeps its rows on disk per partition and the
offset of the last changelog record applied (so a restart replays only the
changelog's tail); this adds one write batch per fetched list.
"""

from __future__ import annotations

from collections.abc import Sequence

from faust.stores import rocksdb
from faust.types import TP

from .compat import write_rocksdb_batch
from .table_store import ChangelogRecord

__all__ = ["SequenceRocksDBStore"]


class SequenceRocksDBStore(rocksdb.Store):
    """Faust's RocksDB store plus :meth:`apply_records`."""

    def apply_records(self, tp: TP, records: Sequence[ChangelogRecord]) -> None:
        if records:
            write_rocksdb_batch(self, tp.partition, [(r.key, r.value) for r in records])  # type: ignore[misc]
            self.set_persisted_offset(tp, records[-1].offset)
