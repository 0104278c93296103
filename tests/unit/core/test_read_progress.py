"""ReadProgress: the fast path's read and commit positions never pass a record nobody processed."""

from __future__ import annotations

from typing import NamedTuple

from streamlake.core.progress import ReadProgress, Verdict


class Rec(NamedTuple):
    offset: int


def recs(*offsets: int) -> list[Rec]:
    return [Rec(o) for o in offsets]


def test_nothing_is_taken_before_a_position_is_established():
    progress: ReadProgress[int] = ReadProgress()
    assert progress.admit(0, recs(5, 6)).verdict is Verdict.UNKNOWN
    assert progress.committable(0) is None


def test_contiguous_lists_are_taken_and_completed_in_order():
    progress: ReadProgress[int] = ReadProgress()
    progress.establish(0, 10)
    first = progress.admit(0, recs(10, 11, 12))
    assert (first.verdict, first.offset, first.end) == (Verdict.TAKE, 10, 13)
    second = progress.admit(0, recs(13, 15))  # 14: a marker inside one fetched list is a real hole
    assert (second.verdict, second.offset, second.end) == (Verdict.TAKE, 13, 16)
    assert progress.committable(0) == 10  # nothing processed yet
    assert progress.complete(0, 10, 13)
    assert progress.committable(0) == 13
    assert progress.complete(0, 13, 16)
    assert progress.committable(0) == 16


def test_a_completion_out_of_order_does_not_move_the_commit():
    progress: ReadProgress[int] = ReadProgress()
    progress.establish(0, 0)
    a = progress.admit(0, recs(0, 1))
    b = progress.admit(0, recs(2, 3))
    assert not progress.complete(0, b.offset, b.end)
    assert progress.committable(0) == 0
    assert progress.complete(0, a.offset, a.end)
    assert progress.committable(0) == 2


def test_a_head_hole_is_sent_back_and_accepted_only_when_the_re_read_shows_it_again():
    progress: ReadProgress[int] = ReadProgress()
    progress.establish(0, 100)
    back = progress.admit(0, recs(120, 121))
    assert (back.verdict, back.offset) == (Verdict.SEEK_BACK, 100)
    # the re-read from 100 delivers the skipped records: taken from 100
    again = progress.admit(0, recs(100, 101))
    assert (again.verdict, again.offset, again.end) == (Verdict.TAKE, 100, 102)


def test_a_real_head_hole_is_accepted_on_the_second_read():
    progress: ReadProgress[int] = ReadProgress()
    progress.establish(0, 100)
    assert progress.admit(0, recs(103, 104)).verdict is Verdict.SEEK_BACK
    real = progress.admit(0, recs(103, 104, 105))  # re-read from 100 starts at 103 again: 100-102 hold no records
    assert (real.verdict, real.offset, real.end) == (Verdict.TAKE, 100, 106)
    assert progress.complete(0, 100, 106)
    assert progress.committable(0) == 106


def test_records_already_taken_are_dropped_from_an_overlapping_list():
    progress: ReadProgress[int] = ReadProgress()
    progress.establish(0, 50)
    progress.admit(0, recs(50, 51, 52))
    overlap = progress.admit(0, recs(51, 52, 53, 54))
    assert [r.offset for r in overlap.records] == [53, 54]
    assert (overlap.offset, overlap.end) == (53, 55)
    stale = progress.admit(0, recs(40, 41))
    assert stale.verdict is Verdict.TAKE and not stale.records


def test_establishing_again_resets_both_positions_and_orphans_older_spans():
    progress: ReadProgress[int] = ReadProgress()
    progress.establish(0, 10)
    taken = progress.admit(0, recs(10, 11, 12))
    progress.establish(0, 7)  # a rebalance: the committed offset is older than what was read
    assert not progress.complete(0, taken.offset, taken.end)
    assert progress.committable(0) == 7
    assert progress.admit(0, recs(13)).verdict is Verdict.SEEK_BACK


def test_forgotten_partitions_are_unknown_and_not_committable():
    progress: ReadProgress[int] = ReadProgress()
    progress.establish(0, 1)
    progress.establish(1, 2)
    progress.forget([0])
    assert progress.partitions() == [1]
    assert progress.admit(0, recs(1)).verdict is Verdict.UNKNOWN
    progress.forget()
    assert progress.partitions() == []
