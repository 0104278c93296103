"""Read the offsets the completeness rule needs from the broker, in a safe order.

Order matters for soundness (see :mod:`streamlake.core.completeness`): the
source bounds come first, then the ingestion group's committed offsets, and
only after those were seen at or past the bounds are the valid topic's end
offsets read as the landing barrier. The table's landed offsets come last, from
the *landed* callable the caller passes (the lake library), so this module does
not depend on the lake.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping

from ..config import Settings
from ..core.completeness import CompletenessReport, judge_completeness, judge_hop, source_bounds
from ..naming import consumer_group_for
from ..topology import Stream
from .offsets import OffsetAdmin

__all__ = ["check_lake_complete", "LandedOffsets"]

#: Returns the table's landed offsets: valid-topic partition -> next offset to land.
LandedOffsets = Callable[[], Awaitable[Mapping[int, int]]]


async def check_lake_complete(settings: Settings, stream: Stream, table: str, until_ms: int, *,
                              landed: LandedOffsets, barrier: Mapping[int, int] | None = None,
                              grace_ms: int = 0, now_ms: int | None = None) -> CompletenessReport:
    """Judge whether *table* holds every record produced to *stream*'s source before *until_ms*.

    Pass the *barrier* of an earlier report to keep it fixed: the check then
    converges once landing reaches it.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    source = str(stream.source_topic(settings.topic_prefix))
    valid = str(stream.output_topic(settings.topic_prefix))
    async with OffsetAdmin(settings) as kafka:
        parts = await kafka.partitions_of([source, valid])
        source_tps = [(source, p) for p in parts[source]]
        earliest, latest = await kafka.log_offsets(source_tps)
        index = await kafka.offsets_for_time(source_tps, until_ms)
        bounds = source_bounds(until_ms, now, grace_ms, {p: o for (_, p), o in index.items()},
                               {p: o for (_, p), o in latest.items()})
        if bounds is None:
            return judge_completeness(table, until_ms, now, (), waiting_for_time=True)
        committed = await kafka.committed_offsets(consumer_group_for(settings.app_id))
        ingestion = judge_hop(source, "ingestion", bounds,
                              {p: o for (t, p), o in committed.items() if t == source},
                              {p: o for (_, p), o in earliest.items()})
        if not ingestion.done:
            return judge_completeness(table, until_ms, now, (ingestion,))
        valid_earliest, valid_latest = await kafka.log_offsets([(valid, p) for p in parts[valid]])
    if barrier is None:
        barrier = {p: o for (_, p), o in valid_latest.items()}
    reached = await landed()
    landing = judge_hop(valid, "landing", barrier, reached, {p: o for (_, p), o in valid_earliest.items()})
    return judge_completeness(table, until_ms, now, (ingestion, landing))

