"""When does a lake table hold every record produced to its stream's source before a time?

The rule walks the path a record takes as a chain of hops, each a topic and the
offsets its reader has accounted for (docs/AIRFLOW.md gives the argument):

1. **source** (the raw topic), read by ingestion. The bound of each partition is
   the broker's time index at ``until``: the first offset whose timestamp is at
   or after it. A partition with no such record is bounded by its end offset,
   but only once the wall clock has passed ``until`` (plus a grace period for
   producers that stamp their own time): before that more records may come.
   The ingestion group's committed offset at or past the bound means every
   record below it was forwarded, dropped as a duplicate, dead-lettered, or
   (``partitioning = repartition``) moved to the repartition topic, and that
   those sends were acknowledged before the commit.
2. **repartition** (``<source>.repartition``, repartition streams only), read by
   ingestion again (the same group). Its bounds are a *barrier*: its end offsets
   read after hop 1 was seen complete, so every move of a record below the
   hop-1 bounds sits below them. The group's committed offsets there at or past
   the barrier mean each moved record was forwarded, dropped or dead-lettered,
   acknowledged before that commit.
3. **valid** (the output topic), read by landing. Its barrier is its end offsets
   read after every earlier hop was seen complete: each forward those hops
   account for was acknowledged before a commit already seen, so it sits below
   the barrier. The table's landed offsets (the next offset per partition,
   committed with the data) at or past the barrier mean each of those records
   is a row, was dropped at landing as a duplicate ``(_key, _seq)``, or went to
   the landing DLQ.

Bounds are taken once and then kept (:attr:`CompletenessReport.bounds`): a
barrier is conservative (it may also wait for records after ``until``) but
fixed, so a caller that keeps the bounds converges as soon as the readers catch
up. A hop's bounds are taken only after every earlier hop was seen complete.
Pure: no Kafka, no lake imports.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Phase", "HopPartition", "Hop", "CompletenessReport", "source_bounds", "judge_hop",
           "judge_completeness"]


class Phase(enum.Enum):
    """How far a table is from complete up to ``until``."""

    WAITING_FOR_TIME = "waiting-for-time"  # until (plus grace) is still ahead of the clock
    INGESTING = "ingesting"                # ingestion has not committed past the source (or repartition) bounds
    LANDING = "landing"                    # landing has not reached the valid-topic barrier
    COMPLETE = "complete"


@dataclass(frozen=True)
class HopPartition:
    """One partition of one hop: the offset to reach and how far its reader got."""

    partition: int
    bound: int
    reached: int | None  # committed (ingestion) or landed (table) next offset; None: nothing yet
    earliest: int        # log start: records below it are gone and are not judged

    @property
    def pending(self) -> int:
        """Records below the bound that the reader has not accounted for."""
        have = self.reached if self.reached is not None else self.earliest
        return max(self.bound - max(have, self.earliest), 0)

    def as_dict(self) -> dict[str, Any]:
        return {"partition": self.partition, "bound": self.bound, "reached": self.reached,
                "earliest": self.earliest, "pending": self.pending}


@dataclass(frozen=True)
class Hop:
    """A topic and its reader (``ingestion`` or ``landing``)."""

    topic: str
    reader: str
    partitions: tuple[HopPartition, ...]

    @property
    def pending(self) -> int:
        return sum(p.pending for p in self.partitions)

    @property
    def done(self) -> bool:
        return self.pending == 0

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "reader": self.reader, "pending": self.pending,
                "partitions": [p.as_dict() for p in self.partitions]}


@dataclass(frozen=True)
class CompletenessReport:
    """The verdict for one table at one ``until``, with the evidence per partition."""

    table: str
    until_ms: int
    checked_at_ms: int
    phase: Phase
    hops: tuple[Hop, ...]

    @property
    def complete(self) -> bool:
        return self.phase is Phase.COMPLETE

    @property
    def bounds(self) -> dict[str, dict[int, int]]:
        """Every hop's bounds taken so far, per topic: pass them to the next check to keep them fixed."""
        return {h.topic: {p.partition: p.bound for p in h.partitions} for h in self.hops}

    def describe(self) -> str:
        """One line for a log or an error message: what is missing and where."""
        if self.phase is Phase.COMPLETE:
            return f"{self.table} is complete up to {self.until_ms} ms"
        if self.phase is Phase.WAITING_FOR_TIME:
            return (f"{self.table}: until ({self.until_ms} ms) is not yet past on the clock; records "
                    f"stamped before it may still be produced")
        hop = next(h for h in self.hops if not h.done)
        behind = ", ".join(f"p{p.partition} {p.pending} (at {p.reached if p.reached is not None else '-'}, "
                           f"needs {p.bound})" for p in hop.partitions if p.pending)
        return f"{self.table} is not complete up to {self.until_ms} ms: {hop.reader} of {hop.topic} " \
               f"is {hop.pending} record(s) behind: {behind}"

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "until_ms": self.until_ms, "checked_at_ms": self.checked_at_ms,
                "phase": self.phase.value, "complete": self.complete, "bounds": self.bounds,
                "hops": [h.as_dict() for h in self.hops], "summary": self.describe()}


def source_bounds(until_ms: int, now_ms: int, grace_ms: int, time_index: Mapping[int, int | None],
                  latest: Mapping[int, int]) -> dict[int, int] | None:
    """The source bound per partition, or None while ``until + grace`` is ahead of the clock.

    *time_index* is the broker's answer for ``until`` (None: no record at or after it).
    """
    if now_ms < until_ms + grace_ms:
        return None
    return {p: (offset if offset is not None else latest[p]) for p, offset in sorted(time_index.items())}


def judge_hop(topic: str, reader: str, bounds: Mapping[int, int], reached: Mapping[int, int],
              earliest: Mapping[int, int]) -> Hop:
    """Compare a reader's offsets with the bounds of one topic."""
    return Hop(topic, reader, tuple(
        HopPartition(p, bound, reached.get(p), earliest.get(p, 0)) for p, bound in sorted(bounds.items())))


def judge_completeness(table: str, until_ms: int, now_ms: int, hops: tuple[Hop, ...],
                       waiting_for_time: bool = False) -> CompletenessReport:
    """The phase follows from the first hop not done (hops are in path order)."""
    if waiting_for_time:
        return CompletenessReport(table, until_ms, now_ms, Phase.WAITING_FOR_TIME, hops)
    for hop in hops:
        if not hop.done:
            phase = Phase.INGESTING if hop.reader == "ingestion" else Phase.LANDING
            return CompletenessReport(table, until_ms, now_ms, phase, hops)
    if not any(h.reader == "landing" for h in hops):  # the barrier is not taken yet
        return CompletenessReport(table, until_ms, now_ms, Phase.LANDING, hops)
    return CompletenessReport(table, until_ms, now_ms, Phase.COMPLETE, hops)
