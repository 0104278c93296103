"""Which records of a batch are on another partition than their key's, and where they belong.

A stream with ``partitioning = repartition`` sends such records through its
``<source>.repartition`` topic to their key's (Java murmur2) partition instead
of dead-lettering them as ``wrong-partition``. Only records read from the
source topic itself are moved, and only by their record key: a record without
one, or read from the retry or repartition topic, stays where it is and the
pipeline judges it (a key mismatch or a wrong partition there is a DLQ
record, so nothing can loop). Pure: no Kafka client here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ..partitioner import cached_partition_for_key
from .records import ConsumedRecord

__all__ = ["Misplaced", "split_misplaced", "REPARTITIONED_FROM"]

#: Provenance on a repartitioned copy: ``<partition>:<offset>`` of the original in the source topic.
REPARTITIONED_FROM = "streamlake.repartition.from"


class Misplaced(NamedTuple):
    """A source record and the partition its key belongs on."""

    record: ConsumedRecord
    partition: int


def split_misplaced(records: Sequence[ConsumedRecord], source_topic: str, partitions: int
                    ) -> tuple[Sequence[ConsumedRecord], list[Misplaced]]:
    """Split *records* into those to process here and those to move to their key's partition.

    Order is kept within each part. Without misplaced records the input is
    returned as it is (no copy on the common path).
    """
    misplaced: list[Misplaced] = []
    here: list[ConsumedRecord] | None = None
    for i, record in enumerate(records):
        key = record.key
        if key and record.topic == source_topic:
            partition = cached_partition_for_key(key, partitions)
            if partition != record.partition:
                if here is None:
                    here = list(records[:i])
                misplaced.append(Misplaced(record, partition))
                continue
        if here is not None:
            here.append(record)
    return (records if here is None else here), misplaced
