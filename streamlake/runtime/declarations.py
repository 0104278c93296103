"""The Faust topics and tables of one stream, declared from the catalog.

Per stream: the source and retry topics (raw bytes in), the output and DLQ
topics, a changelog-backed sequence table co-partitioned with the source, and
a counters table with one row per source partition, kept on that partition.
A stream with ``partitioning = repartition`` also reads its repartition topic,
through the same agent, so Faust's assignor gives one worker partition *p* of
the source, retry and repartition topics and of the tables together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from ..catalog import Catalog, TopicRole
from ..config import Settings
from ..naming import table_name_for
from ..partitioner import partition_for_key
from ..topology import Partitioning, Stream
from .table_store import sequence_store_url

__all__ = ["StreamTopics", "declare_stream", "counters_key_for"]


def counters_key_for(stream: str, partition: int, partitions: int) -> bytes:
    """A counters-table key that the Java partitioner puts on *partition*.

    The table is written with ``use_partitioner``; choosing the key this way
    keeps each source partition's counters on the same changelog partition,
    so they move with the partition on a rebalance.
    """
    i = 0
    while True:
        key = f"{stream}|{partition}|{i}".encode()
        if partition_for_key(key, partitions) == partition:
            return key
        i += 1


@dataclass(frozen=True, eq=False)
class StreamTopics:
    """Names, partition counts and Faust objects of one stream's topics and tables."""

    stream: Stream
    partitions: int
    source_name: str
    retry_name: str
    output_name: str
    dlq_name: str
    output_partitions: int
    dlq_partitions: int
    source: Any  # faust.TopicT over source and retry (and repartition)
    output: Any
    dlq: Any
    table: Any  # faust.Table: per-key sequence state
    counters_table: Any  # faust.Table: per-partition counters
    counter_keys: dict[int, bytes]
    repartition_name: str | None = None  # None: partitioning = strict
    repartition: Any = None  # faust.TopicT, written with records moved to their key's partition

    @property
    def input_names(self) -> tuple[str, ...]:
        """Every topic the stream's agent reads."""
        names = (self.source_name, self.retry_name)
        return names + (self.repartition_name,) if self.repartition_name else names

    @property
    def tables(self) -> tuple[Any, Any]:
        return (self.table, self.counters_table)


def declare_stream(app: faust.App, stream: Stream, settings: Settings, catalog: Catalog) -> StreamTopics:
    """Declare *stream*'s topics and tables on *app*."""
    prefix = settings.topic_prefix
    partitions = catalog.for_stream(stream.name, TopicRole.SOURCE).partitions
    source_name = str(stream.source_topic(prefix))
    retry_name = stream.retry_topic(prefix)
    output_name = str(stream.output_topic(prefix))
    dlq_name = stream.dlq_topic(prefix)
    output_partitions = catalog.for_stream(stream.name, TopicRole.OUTPUT).partitions
    dlq_partitions = catalog.for_stream(stream.name, TopicRole.DLQ).partitions
    repartition_name = stream.repartition_topic(prefix) if stream.partitioning is Partitioning.REPARTITION else None
    inputs = (source_name, retry_name) + ((repartition_name,) if repartition_name else ())
    raw: dict[str, Any] = dict(key_serializer="raw", value_serializer="raw")
    seq_table = table_name_for(source_name, "seq")
    return StreamTopics(
        stream=stream, partitions=partitions,
        source_name=source_name, retry_name=retry_name, output_name=output_name, dlq_name=dlq_name,
        output_partitions=output_partitions, dlq_partitions=dlq_partitions,
        source=app.topic(*inputs, partitions=partitions, **raw),
        output=app.topic(output_name, partitions=output_partitions, **raw),
        dlq=app.topic(dlq_name, partitions=dlq_partitions, **raw),
        # Values are the binary per-key state (core.sequence), stored as they are in the changelog.
        table=app.Table(
            seq_table, default=None, partitions=partitions, key_type=bytes, value_type=bytes, use_partitioner=True,
            store=sequence_store_url(settings.store, seq_table), help=f"per-key sequence state of {stream.name}",
        ),
        counters_table=app.Table(
            table_name_for(source_name, "counters"), default=None, partitions=partitions,
            key_type=bytes, value_type=None, use_partitioner=True,
            help=f"per-partition counters of {stream.name}",
        ),
        counter_keys={p: counters_key_for(stream.name, p, partitions) for p in range(partitions)},
        repartition_name=repartition_name,
        repartition=app.topic(repartition_name, partitions=partitions, **raw) if repartition_name else None,
    )
