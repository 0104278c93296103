"""Reading the DLQ topics: the reader, and the ``streamlake dlq`` stats, inspect and export (async).

Each function reads the DLQ topic itself (no worker needed), up to the end
offsets it saw when it started, so a command always terminates. Rules (filters,
verdicts, headers, previews) come from :mod:`streamlake.core.dlq_policy`; redrive
is :mod:`streamlake.kafka.redrive`. docs/DLQ.md describes the semantics for users.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from ..catalog import TopicRole, load_catalog
from ..config import Settings
from ..core.dlq_policy import (
    DlqEntry,
    DlqError,
    DlqFilter,
    DlqTally,
    HeaderStyle,
    format_ms,
    render_preview,
    styled_headers,
)
from ..errors import TopicNameError
from ..naming import source_of_derived
from ..runtime.compat import fetch_cluster_metadata
from ..topology import discover_streams
from .client import new_consumer

__all__ = ["dlq_stats", "inspect_dlq", "export_dlq", "read_dlq", "dlq_consumer", "dlq_partitions", "check_dlq_topic"]

Progress = Callable[[int], None]  # called with the number of DLQ records just scanned
_POLL_MS = 500


# -- reading -----------------------------------------------------------------------------------------

def check_dlq_topic(topic: str) -> None:
    try:
        source_of_derived(topic)
    except TopicNameError as exc:
        raise DlqError(f"--topic {topic!r} is not a DLQ topic ({exc}); DLQ topics are named <source>.dlq, "
                       f"see `streamlake dlq stats` for the ones that exist") from None
    if not topic.endswith(".dlq"):
        raise DlqError(f"--topic {topic!r} is a retry topic, not a DLQ topic; use {topic[:-len('retry')]}dlq")


async def dlq_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    # consumer.topics() fetches fresh metadata but does not keep it; ask the client for it instead.
    cluster = await fetch_cluster_metadata(consumer)
    parts = cluster.partitions_for_topic(topic)
    if not parts:
        raise DlqError(f"DLQ topic {topic!r} does not exist on the broker; "
                       "check --topic (and STREAMLAKE_TOPIC_PREFIX), or create the topics from the catalog")
    return [TopicPartition(topic, p) for p in sorted(parts)]


async def read_dlq(consumer: AIOKafkaConsumer, topic: str, start: dict[TopicPartition, int] | None = None,
                   since_ms: int | None = None, progress: Progress | None = None,
                   positions: dict[TopicPartition, int] | None = None,
                   ) -> AsyncIterator[DlqEntry]:
    """Yield every record of *topic* from *start* (or *since_ms*, or the beginning) to today's end.

    *positions*, when given, is kept up to date with the next offset to read
    per partition, for checkpointing.
    """
    tps = await dlq_partitions(consumer, topic)
    consumer.assign(tps)
    begin = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)
    first = dict(begin)
    if since_ms is not None:  # the broker's time index, never a scan
        found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        for tp in tps:
            first[tp] = found[tp].offset if found.get(tp) is not None else end[tp]
    for tp, offset in (start or {}).items():
        first[tp] = max(first[tp], offset)
    pending = {tp for tp in tps if first[tp] < end[tp]}
    for tp in tps:
        consumer.seek(tp, min(first[tp], end[tp]))
        if positions is not None:
            positions[tp] = min(first[tp], end[tp])
    for tp in set(tps) - pending:
        consumer.pause(tp)
    while pending:
        batches = await consumer.getmany(*pending, timeout_ms=_POLL_MS)
        for tp, messages in batches.items():
            for msg in messages:
                if msg.offset >= end[tp]:
                    break
                if positions is not None:
                    positions[tp] = msg.offset + 1
                yield DlqEntry.of(msg.topic, msg.partition, msg.offset, msg.timestamp, msg.key, msg.value,
                                  msg.headers)
                if progress is not None:
                    progress(1)
        for tp in list(pending):
            # position(), not the last message: control records (transaction markers) end some logs
            if await consumer.position(tp) >= end[tp]:
                pending.discard(tp)
                consumer.pause(tp)
                if positions is not None:
                    positions[tp] = end[tp]


def dlq_consumer(settings: Settings, group: str | None = None) -> AIOKafkaConsumer:
    """A consumer for reading DLQ topics: read_committed, no auto-commit, room for large records."""
    return new_consumer(
        settings, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", isolation_level="read_committed",
        max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024,
    )


# -- stats -------------------------------------------------------------------------------------------

def _dlq_topics(settings: Settings, stream: str | None) -> dict[str, str]:
    """Return stream name -> DLQ topic for the declared streams (one, with *stream*)."""
    streams = discover_streams(settings.topologies_dir)
    catalog = load_catalog(settings, streams)
    names = {s.name: catalog.for_stream(s.name, TopicRole.DLQ).name for s in streams}
    if stream is None:
        return names
    if stream not in names:
        raise DlqError(f"--stream {stream!r} is not declared under {settings.topologies_dir}; "
                       f"known streams: {', '.join(sorted(names)) or 'none'}")
    return {stream: names[stream]}


async def dlq_stats(settings: Settings, stream: str | None = None) -> dict[str, Any]:
    """Return per-stream DLQ counts by stage and reason, depth per partition, failure times and parked count."""
    topics = _dlq_topics(settings, stream)
    out: dict[str, Any] = {"max_attempts": settings.dlq_retry_attempts, "streams": {}}
    for stream, topic in sorted(topics.items()):
        consumer = dlq_consumer(settings)
        await consumer.start()
        try:
            try:
                tps = await dlq_partitions(consumer, topic)
            except DlqError:
                out["streams"][stream] = {"topic": topic, "exists": False}
                continue
            begin = await consumer.beginning_offsets(tps)
            end = await consumer.end_offsets(tps)
            tally = DlqTally(settings.dlq_retry_attempts)
            async for entry in read_dlq(consumer, topic):
                tally.add(entry)
            depth = {tp.partition: end[tp] - begin[tp] for tp in tps}
            out["streams"][stream] = {"topic": topic, "exists": True, "depth": depth,
                                      "depth_total": sum(depth.values()), **tally.to_dict()}
        finally:
            await consumer.stop()
    return out


# -- inspect / export --------------------------------------------------------------------------------

def _entry_view(entry: DlqEntry, style: HeaderStyle, preview_chars: int) -> dict[str, Any]:
    return {
        "topic": entry.topic, "partition": entry.partition, "offset": entry.offset,
        "timestamp": format_ms(entry.timestamp),
        "stage": entry.stage_code, "reason": entry.reason_code, "attempt": entry.attempt,
        "key": render_preview(entry.key, preview_chars),
        "value": render_preview(entry.value, preview_chars),
        "value_bytes": None if entry.value is None else len(entry.value),
        "headers": [[k, render_preview(v, preview_chars if "stacktrace" not in k else 4 * preview_chars)]
                    for k, v in styled_headers(entry.headers, style)],
    }


async def inspect_dlq(settings: Settings, topic: str, filt: DlqFilter, limit: int = 20,
                      style: HeaderStyle = HeaderStyle.STREAMLAKE, preview_chars: int = 200) -> list[dict[str, Any]]:
    """Return up to *limit* matching DLQ records: headers and safe value previews."""
    check_dlq_topic(topic)
    if limit < 1:
        raise DlqError("--limit must be at least 1")
    found: list[dict[str, Any]] = []
    consumer = dlq_consumer(settings)
    await consumer.start()
    try:
        async for entry in read_dlq(consumer, topic, since_ms=filt.since_ms):
            if filt.matches(entry):
                found.append(_entry_view(entry, style, preview_chars))
                if len(found) >= limit:
                    break
    finally:
        await consumer.stop()
    return found


async def export_dlq(settings: Settings, topic: str, filt: DlqFilter, out: IO[bytes],
                     style: HeaderStyle = HeaderStyle.STREAMLAKE, limit: int | None = None) -> int:
    """Write matching DLQ records to *out* as JSON lines (key, value and header values base64); return the count.

    With ``style`` CONNECT or SPRING the DLQ context carries those tools' header names.
    """
    check_dlq_topic(topic)

    def b64(data: bytes | None) -> str | None:
        return None if data is None else base64.b64encode(data).decode()

    count = 0
    consumer = dlq_consumer(settings)
    await consumer.start()
    try:
        async for entry in read_dlq(consumer, topic, since_ms=filt.since_ms):
            if not filt.matches(entry):
                continue
            out.write(orjson.dumps({
                "topic": entry.topic, "partition": entry.partition, "offset": entry.offset,
                "timestamp": entry.timestamp, "key": b64(entry.key), "value": b64(entry.value),
                "headers": [[k, b64(v)] for k, v in styled_headers(entry.headers, style)],
            }) + b"\n")
            count += 1
            if limit is not None and count >= limit:
                break
    finally:
        await consumer.stop()
    return count
