"""Which records are moved to their key's partition, and which stay for the pipeline to judge."""

from __future__ import annotations

from streamlake.core.records import SourceRecord
from streamlake.core.repartition import split_misplaced
from streamlake.partitioner import partition_for_key

SOURCE = "sales.orders.raw.v1"


def rec(key: bytes | None, partition: int, topic: str = SOURCE, offset: int = 0) -> SourceRecord:
    return SourceRecord(topic, partition, offset, 0, key, b"{}")


def test_only_keyed_source_records_on_a_foreign_partition_move_and_order_is_kept():
    home = partition_for_key(b"a", 8)
    away = (home + 1) % 8
    records = [rec(b"a", home, offset=0), rec(b"a", away, offset=1), rec(None, away, offset=2),
               rec(b"a", away, SOURCE + ".retry", 3), rec(b"a", away, SOURCE + ".repartition", 4),
               rec(b"a", away, offset=5), rec(b"", away, offset=6)]
    here, moved = split_misplaced(records, SOURCE, 8)
    assert [r.offset for r in here] == [0, 2, 3, 4, 6]
    assert [(m.record.offset, m.partition) for m in moved] == [(1, home), (5, home)]


def test_a_batch_with_nothing_misplaced_is_returned_as_it_is():
    records = [rec(k, partition_for_key(k, 4)) for k in (b"x", b"y", b"z")]
    here, moved = split_misplaced(records, SOURCE, 4)
    assert here is records and moved == []
