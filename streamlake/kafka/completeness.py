"""Read the offsets the completeness rule needs from the broker, in a safe order.

Order matters for soundness (see :mod:`streamlake.core.completeness`): the hops
are walked in path order (source, then ``<source>.repartition`` for a
repartition stream, then the valid topic), and a hop's barrier (its end
offsets) is read only after every earlier hop was seen at or past its bounds.
A reader's offsets are read after its hop's bounds, so they are never older
than the bounds they are compared with. The table's landed offsets come from
the *landed* callable the caller passes (the lake library), so this module does
not depend on the lake.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping

from ..config import Settings
from ..core.completeness import CompletenessReport, Hop, judge_completeness, judge_hop, source_bounds
from ..core.replay import ReplayError
from ..naming import consumer_group_for
from ..topology import Partitioning, Stream
from .offsets import OffsetAdmin

__all__ = ["check_lake_complete", "LandedOffsets"]

#: Returns the table's landed offsets: valid-topic partition -> next offset to land.
LandedOffsets = Callable[[], Awaitable[Mapping[int, int]]]


async def check_lake_complete(settings: Settings, stream: Stream, table: str, until_ms: int, *,
                              landed: LandedOffsets, bounds: Mapping[str, Mapping[int, int]] | None = None,
                              grace_ms: int = 0, now_ms: int | None = None) -> CompletenessReport:
    """Judge whether *table* holds every record produced to *stream*'s source before *until_ms*.

    Pass the :attr:`~CompletenessReport.bounds` of an earlier report to keep
    them fixed: the check then converges once the readers reach them.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    kept = bounds or {}
    source = str(stream.source_topic(settings.topic_prefix))
    valid = str(stream.output_topic(settings.topic_prefix))
    group = consumer_group_for(settings.app_id)
    hops: list[Hop] = []

    def judged() -> CompletenessReport:
        return judge_completeness(table, until_ms, now, tuple(hops))

    async with OffsetAdmin(settings) as kafka:
        parts = await kafka.partitions_of([source, valid])
        source_tps = [(source, p) for p in parts[source]]
        earliest, latest = await kafka.log_offsets(source_tps)
        source_bound = kept.get(source)
        if source_bound is None:
            index = await kafka.offsets_for_time(source_tps, until_ms)
            source_bound = source_bounds(until_ms, now, grace_ms, {p: o for (_, p), o in index.items()},
                                         {p: o for (_, p), o in latest.items()})
            if source_bound is None:
                return judge_completeness(table, until_ms, now, (), waiting_for_time=True)
        committed = await kafka.committed_offsets(group)
        hops.append(judge_hop(source, "ingestion", source_bound, _of(committed, source), _of(earliest, source)))
        if not hops[-1].done:
            return judged()

        if stream.partitioning is Partitioning.REPARTITION:
            moved = stream.repartition_topic(settings.topic_prefix)
            try:
                moved_parts = (await kafka.partitions_of([moved]))[moved]
            except ReplayError:
                # Never created: no record was moved (a worker retries the write, and does not
                # commit past the record, until the topic takes it), so the hop is empty.
                moved_parts = []
            if moved_parts:
                moved_earliest, moved_latest = await kafka.log_offsets([(moved, p) for p in moved_parts])
                moved_bound = kept.get(moved) or _of(moved_latest, moved)
                committed = await kafka.committed_offsets(group)
                hops.append(judge_hop(moved, "ingestion", moved_bound, _of(committed, moved),
                                      _of(moved_earliest, moved)))
                if not hops[-1].done:
                    return judged()

        valid_earliest, valid_latest = await kafka.log_offsets([(valid, p) for p in parts[valid]])
    valid_bound = kept.get(valid) or _of(valid_latest, valid)
    hops.append(judge_hop(valid, "landing", valid_bound, await landed(), _of(valid_earliest, valid)))
    return judged()


def _of(offsets: Mapping[tuple[str, int], int], topic: str) -> dict[int, int]:
    """The offsets of one topic, per partition."""
    return {p: o for (t, p), o in offsets.items() if t == topic}
