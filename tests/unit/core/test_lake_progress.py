"""Offsets in snapshot summaries, the start check, thresholds and the recent window."""

from __future__ import annotations

from streamlake.core.lake_progress import (
    OFFSETS_PROPERTY,
    BatchThresholds,
    RecentWindow,
    StartCheck,
    decode_offsets,
    encode_offsets,
    merge_offsets,
    offsets_from_ancestry,
    reconcile_start,
)


def test_offsets_round_trip_through_a_summary_and_ancestry_skips_foreign_snapshots():
    offsets = {("t", 0): 10, ("t", 1): 7, ("u", 0): 3}
    summary = {OFFSETS_PROPERTY: encode_offsets(offsets), "added-records": "5"}
    assert decode_offsets(summary) == offsets
    assert decode_offsets({"added-records": "1"}) is None
    # newest first: a compaction or another tool's snapshot without offsets is skipped
    assert offsets_from_ancestry([{"operation": "replace"}, summary, {OFFSETS_PROPERTY: encode_offsets({})}]) == offsets
    assert offsets_from_ancestry([]) == {}


def test_merge_moves_partitions_forward_only():
    assert merge_offsets({("t", 0): 10, ("t", 1): 5}, {("t", 0): 8, ("t", 2): 1}) == {
        ("t", 0): 10, ("t", 1): 5, ("t", 2): 1}


def test_start_check_lands_only_batches_that_start_where_the_table_ends():
    assert reconcile_start(10, 20, 10) is StartCheck.LAND
    assert reconcile_start(0, 20, None) is StartCheck.LAND
    assert reconcile_start(10, 20, 25) is StartCheck.STALE      # a stale writer: all of it landed already
    assert reconcile_start(10, 20, 20) is StartCheck.STALE
    assert reconcile_start(10, 20, 15) is StartCheck.TRIM       # part of it landed
    assert reconcile_start(10, 20, 4) is StartCheck.REWIND      # landing it would leave a hole


def test_thresholds_by_rows_bytes_or_age():
    th = BatchThresholds(max_rows=10, max_bytes=100, max_age=1.0)
    assert not th.due(5, 50, 0.5)
    assert th.due(10, 0, 0.0) and th.due(1, 100, 0.0) and th.due(1, 1, 1.0)
    assert not th.due(0, 0, 99.0)  # nothing buffered is never due


def test_recent_window_forgets_pairs_older_than_the_window():
    window = RecentWindow(window=3)
    window.add("a", 1, offset=0)
    window.add("b", 1, offset=2)
    assert ("a", 1) in window
    window.add("c", 1, offset=4)  # floor 1: offset 0 is out
    assert ("a", 1) not in window and ("b", 1) in window and len(window) == 2
    window.fill([("z", 9, 10), ("y", 9, 8)])
    assert ("z", 9) in window and ("y", 9) in window and ("b", 1) not in window
