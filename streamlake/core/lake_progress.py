"""Landing bookkeeping: offsets kept in the table, batch thresholds, and the recent-(key, seq) window.

Invariants:
- The table is the only truth about what landed. Every StreamLake commit writes, in its
  snapshot summary, the next offset of *every* topic-partition the table has landed
  (:data:`OFFSETS_PROPERTY`, cumulative: the newest snapshot alone answers). A snapshot
  without it (another tool's commit) is skipped by walking the ancestry.
- A batch of one partition covers ``[start, next)`` without holes: ``start`` is the
  offset the table named when the partition was sought (or the previous commit of
  this lander). Before a commit, :func:`reconcile_start` compares ``start`` with the
  table's offset again, so a stale writer lands nothing twice and leaves no hole.
- The recent window holds the ``(key, seq)`` of the last ``window`` offsets of each
  partition. Ingestion forwards a duplicate only when a worker re-processes records
  it had forwarded but not committed, so the copy follows its original within that
  worker's uncommitted span on the same partition; the window must exceed that span.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import orjson

__all__ = [
    "OFFSETS_PROPERTY", "EVENT_TIME_PROPERTY", "LANDED_BY_PROPERTY", "TopicPartition", "encode_offsets",
    "decode_offsets", "offsets_from_ancestry", "merge_offsets", "StartCheck", "reconcile_start",
    "BatchThresholds", "RecentWindow",
]

OFFSETS_PROPERTY = "streamlake.offsets"
EVENT_TIME_PROPERTY = "streamlake.event-time-max"  # newest event time landed, microseconds since the epoch
LANDED_BY_PROPERTY = "streamlake.landed-by"

TopicPartition = tuple[str, int]


def encode_offsets(offsets: Mapping[TopicPartition, int]) -> str:
    """``{"topic": {"0": 12, ...}}`` as compact JSON (snapshot summary values are strings)."""
    nested: dict[str, dict[str, int]] = {}
    for (topic, partition), offset in sorted(offsets.items()):
        nested.setdefault(topic, {})[str(partition)] = int(offset)
    return orjson.dumps(nested).decode()


def decode_offsets(summary: Mapping[str, str]) -> dict[TopicPartition, int] | None:
    """The offsets a snapshot summary carries, or None when it carries none."""
    text = summary.get(OFFSETS_PROPERTY)
    if text is None:
        return None
    nested = orjson.loads(text)
    return {(topic, int(p)): int(o) for topic, parts in nested.items() for p, o in parts.items()}


def offsets_from_ancestry(summaries: Iterable[Mapping[str, str]]) -> dict[TopicPartition, int]:
    """The landed offsets, from snapshot summaries newest first.

    The first summary that carries offsets is cumulative and answers for every
    partition, since StreamLake writes the whole map on each commit.
    """
    for summary in summaries:
        found = decode_offsets(summary)
        if found is not None:
            return found
    return {}


def merge_offsets(table: Mapping[TopicPartition, int],
                  landed: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
    """The table's map with this commit's partitions moved forward (never back)."""
    merged = dict(table)
    for tp, offset in landed.items():
        merged[tp] = max(offset, merged.get(tp, offset))
    return merged


class StartCheck(enum.Enum):
    """How a buffered batch relates to what the table has landed for its partition."""

    LAND = "land"          #: the batch starts where the table ends
    TRIM = "trim"          #: someone landed part of it already: drop rows below the table's offset
    STALE = "stale"        #: someone landed all of it: drop the batch
    REWIND = "rewind"      #: the table ends before the batch starts: landing it would leave a hole


def reconcile_start(start: int, end: int, table_next: int | None) -> StartCheck:
    """Compare a batch covering ``[start, end)`` with the table's next offset for its partition."""
    if table_next is None:
        # nothing of this partition landed yet: the lander sought to the log start
        return StartCheck.LAND
    landed = table_next
    if landed == start:
        return StartCheck.LAND
    if landed >= end:
        return StartCheck.STALE
    if landed > start:
        return StartCheck.TRIM
    return StartCheck.REWIND


@dataclass(frozen=True)
class BatchThresholds:
    """When buffered rows are written: whichever of rows, bytes or age comes first.

    Defaults favour files of tens of MB and a commit every few seconds: each commit
    adds a snapshot and a manifest list, and commit time grows with metadata.
    """

    max_rows: int = 250_000
    max_bytes: int = 64 * 1024 * 1024
    max_age: float = 10.0  # seconds since the oldest buffered record arrived

    def due(self, rows: int, size: int, age: float) -> bool:
        return rows >= self.max_rows or size >= self.max_bytes or (rows > 0 and age >= self.max_age)


class RecentWindow:
    """The ``(key, seq)`` pairs landed in the last *window* offsets of one partition.

    ``seen`` answers in O(1); ``add`` evicts pairs that fell out of the window.
    Memory is bounded by *window* entries per partition.
    """

    __slots__ = ("window", "_pairs", "_order")

    def __init__(self, window: int) -> None:
        self.window = window
        self._pairs: dict[tuple[str, int], int] = {}
        self._order: collections.deque[tuple[int, tuple[str, int]]] = collections.deque()

    def __len__(self) -> int:
        return len(self._pairs)

    def __contains__(self, pair: object) -> bool:
        return pair in self._pairs

    def add(self, key: str, seq: int, offset: int) -> None:
        pair = (key, seq)
        self._pairs[pair] = offset
        self._order.append((offset, pair))
        floor = offset - self.window
        order = self._order
        while order and order[0][0] < floor:
            old_offset, old_pair = order.popleft()
            if self._pairs.get(old_pair) == old_offset:
                del self._pairs[old_pair]

    def fill(self, rows: Iterable[tuple[str, int, int]]) -> None:
        """Rebuild from landed ``(key, seq, offset)`` rows (any order)."""
        for key, seq, offset in sorted(rows, key=lambda r: r[2]):
            self.add(key, seq, offset)

    def pairs(self) -> Iterator[tuple[str, int]]:
        return iter(self._pairs)
