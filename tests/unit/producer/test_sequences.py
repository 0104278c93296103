"""The durable allocator: numbers survive a restart, are never reused, and one process holds the file."""

from __future__ import annotations

import pytest

from streamlake.producer import SequenceAllocator, SequenceStoreError


def test_numbers_continue_after_reopen_and_unpersisted_ones_are_handed_out_again(tmp_path):
    path = tmp_path / "seq.sqlite"
    first = SequenceAllocator(path)
    first.open()
    assert [first.take(b"a"), first.take(b"a"), first.take(b"b")] == [1, 2, 1]
    first.persist()
    assert first.peek(b"a") == 3 and first.peek(b"a") == 3  # peeking takes nothing
    first.take(b"a")  # taken but never persisted: never sent either (callers persist before sending)
    first.close()
    second = SequenceAllocator(path)
    second.open()
    assert (second.take(b"a"), second.take(b"b"), second.take(b"c")) == (3, 2, 1)
    second.close()


def test_a_second_allocator_on_the_same_file_is_refused(tmp_path):
    path = tmp_path / "seq.sqlite"
    holder = SequenceAllocator(path)
    holder.open()
    with pytest.raises(SequenceStoreError, match="one producer per key"):
        SequenceAllocator(path).open()
    holder.close()
    again = SequenceAllocator(path)
    again.open()  # released on close
    again.close()
