"""Redrive destinations: a wrong-partition record goes to its key's partition, everything else to its origin."""

from __future__ import annotations

from streamlake.core.dlq import DeadLetter, Reason, build_dlq_headers
from streamlake.core.dlq_policy import DlqEntry, redrive_partition
from streamlake.core.records import SourceRecord
from streamlake.partitioner import partition_for_key


def dead(reason: Reason, key: bytes | None, origin_partition: int) -> DlqEntry:
    rec = SourceRecord("sales.orders.raw.v1", origin_partition, 7, 900, key, b"{}", ())
    headers = build_dlq_headers(DeadLetter(rec, reason, "x"), "grp", "w1", 1_000)
    return DlqEntry.of("sales.orders.raw.v1.dlq", origin_partition, 0, 1_000, key, b"{}", headers)


def test_wrong_partition_record_is_redriven_to_its_keys_java_partition():
    home = partition_for_key(b"order-9", 8)
    away = (home + 3) % 8
    assert redrive_partition(dead(Reason.WRONG_PARTITION, b"order-9", away), 8) == home


def test_other_records_go_back_to_their_origin_partition():
    home = partition_for_key(b"order-9", 8)
    away = (home + 3) % 8
    assert redrive_partition(dead(Reason.ORDERING_LATE, b"order-9", home), 8) == home
    assert redrive_partition(dead(Reason.KEY_MISMATCH, b"order-9", away), 8) == away
