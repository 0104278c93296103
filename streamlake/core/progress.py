"""Read progress of the fast path's source partitions: what to take, what may be committed.

Two offsets per partition, both "the next offset":

* ``next`` -- where the next delivered list must start. It is established
  only by a seek to a known position (the committed offset, or the log start
  when nothing is committed) and then moves over contiguous lists only.
* ``done`` -- how far every record has been processed and acknowledged: the
  offset a commit may name. It moves when a batch completes, and only from
  where it stands, so a commit can never pass a record nobody processed.

A list that starts after ``next`` leaves a hole. Holes inside one fetched
list are real (transaction markers, compaction); a hole at the head of a list
may instead be records that a seek or a rebalance skipped. So the head hole
is never trusted at once: the partition is sent back to ``next`` and the hole
is accepted only if the re-read from exactly there starts at the same offset.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class HasOffset(Protocol):
    @property
    def offset(self) -> int: ...


R = TypeVar("R", bound=HasOffset)
P = TypeVar("P", bound=Hashable)


class Verdict(enum.Enum):
    TAKE = "take"  #: process ``records``, then :meth:`ReadProgress.complete` the span
    UNKNOWN = "unknown"  #: no established position: drop the list, establish one (seek to committed)
    SEEK_BACK = "seek-back"  #: drop the list and seek the partition to ``offset``


@dataclass(frozen=True)
class Admission(Generic[R]):
    verdict: Verdict
    records: Sequence[R] = ()
    offset: int = -1  #: SEEK_BACK: where to seek; TAKE: the span's start (``next`` before it)
    end: int = -1  #: TAKE: the span's end (``next`` after it)


class ReadProgress(Generic[P]):
    """Per-partition ``next``/``done`` offsets for one consumer. Pure; the fast path drives it."""

    def __init__(self) -> None:
        self._next: dict[P, int] = {}
        self._done: dict[P, int] = {}
        self._verifying: dict[P, tuple[int, int]] = {}

    def establish(self, partition: P, offset: int) -> None:
        """The consumer was just sought to *offset*, a position known to be safe (committed or log start)."""
        self._next[partition] = offset
        self._done[partition] = offset
        self._verifying.pop(partition, None)

    def forget(self, partitions: Sequence[P] | None = None) -> None:
        """Drop what is known about *partitions* (all when None): revoked, or about to be sought."""
        for store in (self._next, self._done, self._verifying):
            if partitions is None:
                store.clear()
            else:
                for p in partitions:
                    store.pop(p, None)

    def admit(self, partition: P, records: Sequence[R]) -> Admission[R]:
        """Decide what to do with the next list fetched for *partition* (records in offset order)."""
        expected = self._next.get(partition)
        if expected is None:
            return Admission(Verdict.UNKNOWN)
        first = records[0].offset
        if first > expected:
            if self._verifying.get(partition) != (expected, first):
                self._verifying[partition] = (expected, first)
                return Admission(Verdict.SEEK_BACK, offset=expected)
            # re-read from exactly ``expected`` starts at ``first`` again: the hole is real
        elif first < expected:
            records = [r for r in records if r.offset >= expected]  # already taken
            if not records:
                return Admission(Verdict.TAKE, records, expected, expected)
        self._verifying.pop(partition, None)
        end = records[-1].offset + 1
        self._next[partition] = end
        return Admission(Verdict.TAKE, records, expected, end)

    def complete(self, partition: P, start: int, end: int) -> bool:
        """Records [start, end) are processed and acknowledged; True if ``done`` moved."""
        if self._done.get(partition) != start or end <= start:
            return False
        self._done[partition] = end
        return True

    def committable(self, partition: P) -> int | None:
        return self._done.get(partition)

    def partitions(self) -> list[P]:
        return list(self._done)
