"""The completeness rule: bounds from the time index, ingestion (source, repartition) then landing, the barriers."""

from __future__ import annotations

from streamlake.core.completeness import Phase, judge_completeness, judge_hop, source_bounds


def test_bounds_wait_for_the_clock_only_when_a_partition_has_no_record_at_or_after_until():
    assert source_bounds(1_000, now_ms=999, grace_ms=0, time_index={0: 5}, latest={0: 9}) is None
    bounds = source_bounds(1_000, now_ms=1_000, grace_ms=0, time_index={0: 5, 1: None}, latest={0: 9, 1: 7})
    assert bounds == {0: 5, 1: 7}
    assert source_bounds(1_000, now_ms=1_500, grace_ms=1_000, time_index={0: 5}, latest={0: 9}) is None


def test_ingestion_behind_the_bound_is_pending_and_names_the_partition():
    hop = judge_hop("s", "ingestion", {0: 10, 1: 4}, reached={0: 10, 1: 1}, earliest={0: 0, 1: 0})
    report = judge_completeness("t", 1_000, 2_000, (hop,))
    assert report.phase is Phase.INGESTING and hop.pending == 3
    assert "p1 3" in report.describe() and "ingestion of s" in report.describe()


def test_a_partition_never_committed_counts_from_its_log_start():
    hop = judge_hop("s", "ingestion", {0: 10, 1: 5}, reached={}, earliest={0: 10, 1: 2})
    assert [p.pending for p in hop.partitions] == [0, 3]


def test_ingestion_through_but_landing_short_of_the_barrier_is_landing():
    ingestion = judge_hop("s", "ingestion", {0: 10}, {0: 12}, {0: 0})
    landing = judge_hop("v", "landing", {0: 9, 1: 3}, {0: 9, 1: 1}, {0: 0, 1: 0})
    report = judge_completeness("t", 1_000, 2_000, (ingestion, landing))
    assert report.phase is Phase.LANDING and not report.complete
    assert report.bounds == {"s": {0: 10}, "v": {0: 9, 1: 3}}


def test_complete_only_with_a_landing_hop_at_or_past_the_barrier():
    ingestion = judge_hop("s", "ingestion", {0: 10}, {0: 10}, {0: 0})
    assert judge_completeness("t", 1, 2, (ingestion,)).phase is Phase.LANDING  # no barrier taken yet
    landing = judge_hop("v", "landing", {0: 9}, {0: 11}, {0: 0})
    report = judge_completeness("t", 1, 2, (ingestion, landing))
    assert report.complete and report.as_dict()["phase"] == "complete"


def test_waiting_for_time_says_so():
    report = judge_completeness("t", 5_000, 1_000, (), waiting_for_time=True)
    assert report.phase is Phase.WAITING_FOR_TIME and "not yet past" in report.describe()


def test_a_record_held_in_the_repartition_topic_keeps_the_table_incomplete():
    source = judge_hop("s", "ingestion", {0: 10, 1: 4}, {0: 10, 1: 4}, {0: 0, 1: 0})
    moved = judge_hop("s.repartition", "ingestion", {0: 0, 1: 2}, {1: 1}, {0: 0, 1: 0})
    report = judge_completeness("t", 1_000, 2_000, (source, moved))
    assert report.phase is Phase.INGESTING and moved.pending == 1
    assert "ingestion of s.repartition is 1 record(s) behind: p1 1 (at 1, needs 2)" in report.describe()
    assert report.bounds["s.repartition"] == {0: 0, 1: 2}  # the barrier, kept for the next check


def test_complete_needs_every_hop_source_repartition_and_valid():
    source = judge_hop("s", "ingestion", {0: 10}, {0: 10}, {0: 0})
    moved = judge_hop("s.repartition", "ingestion", {0: 3}, {0: 3}, {0: 0})
    short = judge_hop("v", "landing", {0: 12}, {0: 11}, {0: 0})
    assert judge_completeness("t", 1, 2, (source, moved)).phase is Phase.LANDING  # valid barrier not taken
    assert judge_completeness("t", 1, 2, (source, moved, short)).phase is Phase.LANDING
    landed = judge_hop("v", "landing", {0: 12}, {0: 12}, {0: 0})
    report = judge_completeness("t", 1, 2, (source, moved, landed))
    assert report.complete and [h["topic"] for h in report.as_dict()["hops"]] == ["s", "s.repartition", "v"]
