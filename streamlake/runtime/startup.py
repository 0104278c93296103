"""Checks a worker runs before it joins the group."""

from __future__ import annotations

import logging

from ..catalog import Catalog, TopicRole
from ..config import Settings
from ..errors import PartitionMismatchError

log = logging.getLogger("streamlake.startup")


async def prepare_worker(settings: Settings, catalog: Catalog) -> None:
    """Create missing catalog topics, then refuse to start if co-partitioning is broken.

    Faust would otherwise let the broker auto-create source topics with its
    default partition count, and fail only at the first table write.
    """
    from ..kafka.admin import create_topics, topic_partition_counts

    counts = await topic_partition_counts(settings, [t.name for t in catalog.topics])
    missing = [t for t in catalog.topics if counts[t.name] is None]
    if missing:
        await create_topics(settings, missing)
        log.info("created topics from the catalog: %s", ", ".join(t.name for t in missing))
    sources = [t for t in catalog.topics if t.role in (TopicRole.SOURCE, TopicRole.RETRY)]
    problems = [
        f"{t.name} has {counts[t.name]} partitions but its sequence table has {t.partitions} (from the catalog)"
        for t in sources if counts.get(t.name) is not None and counts[t.name] != t.partitions
    ]
    if problems:
        raise PartitionMismatchError(
            "source topics and their state tables are not co-partitioned: " + "; ".join(problems)
            + ". Fix the catalog's partition count or the topic (streamlake topics plan) before starting workers."
        )
