"""The ``streamlake dlq`` library: stats, inspect, export and redrive, straight from the DLQ topics.

Each function reads the DLQ topic itself with aiokafka (no worker needed), up
to the end offsets it saw when it started, so a command always terminates.
Rules (filters, verdicts, headers, previews) come from :mod:`streamlake.dlq_policy`.
docs/DLQ.md describes the semantics for users.

Over 300 lines: stats, inspect, export and redrive share the DLQ reader and its
end-offset snapshot; the aiokafka I/O is the next candidate to move under kafka/ (see
docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import enum
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from .catalog import TopicRole, load_catalog
from .config import Settings
from .dlq_policy import (
    DlqEntry,
    DlqError,
    DlqFilter,
    DlqTally,
    HeaderStyle,
    RedriveVerdict,
    format_ms,
    judge_redrive,
    redrive_headers,
    redrive_partition,
    render_preview,
    styled_headers,
)
from .errors import TopicNameError
from .kafka.client import client_kwargs
from .naming import redrive_group_for, source_of_derived
from .runtime.compat import fetch_cluster_metadata
from .topology import discover_streams

__all__ = [
    "dlq_stats", "inspect_dlq", "export_dlq", "redrive_dlq", "RedriveReport", "RedriveMode",
    "read_dlq", "new_redrive_id", "RedriveFault", "crash_redrive_after",
]

Progress = Callable[[int], None]  # called with the number of DLQ records just scanned
_POLL_MS = 500


class RedriveMode(enum.Enum):
    DRY_RUN = "dry-run"
    EXECUTE = "execute"


@dataclass
class RedriveReport:
    """What a redrive did (or, in a dry run, would do)."""

    redrive_id: str
    mode: RedriveMode
    topic: str
    group: str
    scanned: int = 0
    matched: int = 0
    sent: int = 0
    refused_attempt_cap: int = 0
    refused_no_origin: int = 0
    already_done: int = 0  # records before the checkpoint of an earlier run with this id
    stopped_early: bool = False  # --limit reached; rerun the same id to continue
    by_destination: dict[str, int] = field(default_factory=dict)  # "topic[partition]" -> records

    def to_dict(self) -> dict[str, Any]:
        return {
            "redrive_id": self.redrive_id, "mode": self.mode.value, "topic": self.topic, "group": self.group,
            "scanned": self.scanned, "matched": self.matched, "sent": self.sent,
            "refused_attempt_cap": self.refused_attempt_cap, "refused_no_origin": self.refused_no_origin,
            "already_done": self.already_done, "stopped_early": self.stopped_early,
            "by_destination": dict(sorted(self.by_destination.items())),
        }


def new_redrive_id() -> str:
    """Return a fresh redrive id (time-ordered, unique)."""
    return f"r{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


# -- reading -----------------------------------------------------------------------------------------

def _check_dlq_topic(topic: str) -> None:
    try:
        source_of_derived(topic)
    except TopicNameError as exc:
        raise DlqError(f"--topic {topic!r} is not a DLQ topic ({exc}); DLQ topics are named <source>.dlq, "
                       f"see `streamlake dlq stats` for the ones that exist") from None
    if not topic.endswith(".dlq"):
        raise DlqError(f"--topic {topic!r} is a retry topic, not a DLQ topic; use {topic[:-len('retry')]}dlq")


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
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
    tps = await _partitions(consumer, topic)
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


def _consumer(settings: Settings, group: str | None = None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **client_kwargs(settings), group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", isolation_level="read_committed",
        max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024,
    )


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


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


def dlq_stats(settings: Settings, stream: str | None = None) -> dict[str, Any]:
    """Return per-stream DLQ counts by stage and reason, depth per partition, failure times and parked count."""
    return _run(_stats(settings, _dlq_topics(settings, stream)))


async def _stats(settings: Settings, topics: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"max_attempts": settings.dlq_retry_attempts, "streams": {}}
    for stream, topic in sorted(topics.items()):
        consumer = _consumer(settings)
        await consumer.start()
        try:
            try:
                tps = await _partitions(consumer, topic)
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


def inspect_dlq(settings: Settings, topic: str, filt: DlqFilter, limit: int = 20,
                style: HeaderStyle = HeaderStyle.STREAMLAKE, preview_chars: int = 200) -> list[dict[str, Any]]:
    """Return up to *limit* matching DLQ records: headers and safe value previews."""
    _check_dlq_topic(topic)
    if limit < 1:
        raise DlqError("--limit must be at least 1")

    async def go() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        consumer = _consumer(settings)
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

    return _run(go())


def export_dlq(settings: Settings, topic: str, filt: DlqFilter, out: IO[bytes],
               style: HeaderStyle = HeaderStyle.STREAMLAKE, limit: int | None = None) -> int:
    """Write matching DLQ records to *out* as JSON lines (key, value and header values base64); return the count.

    With ``style`` CONNECT or SPRING the DLQ context carries those tools' header names.
    """
    _check_dlq_topic(topic)

    def b64(data: bytes | None) -> str | None:
        return None if data is None else base64.b64encode(data).decode()

    async def go() -> int:
        count = 0
        consumer = _consumer(settings)
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

    return _run(go())


# -- redrive -----------------------------------------------------------------------------------------

def redrive_dlq(settings: Settings, topic: str, filt: DlqFilter, *, mode: RedriveMode = RedriveMode.DRY_RUN,
                redrive_id: str | None = None, max_attempts: int | None = None, limit: int | None = None,
                progress: Progress | None = None, on_total: Callable[[int], None] | None = None,
                batch_size: int = 500) -> RedriveReport:
    """Send matching DLQ records back to their origin topic and partition, or plan it (dry run).

    A ``wrong-partition`` record goes to its key's partition instead (see
    :func:`~streamlake.dlq_policy.redrive_partition`).

    Resumable: the position per DLQ partition is committed to the consumer
    group :func:`~streamlake.naming.redrive_group_for` (*redrive_id*) in the
    same Kafka transaction as the sends, so a rerun with the same id starts
    exactly after the last committed batch and nothing is sent twice.
    *limit* stops after that many sends (a clean checkpoint). A dry run reads
    from the same checkpoint, commits nothing. (Tests simulate a crash inside
    an open transaction with :func:`crash_redrive_after`.)
    """
    _check_dlq_topic(topic)
    cap = settings.dlq_retry_attempts if max_attempts is None else max_attempts
    if cap < 1:
        raise DlqError("--max-attempts must be at least 1")
    if limit is not None and limit < 1:
        raise DlqError("--limit must be at least 1")
    rid = redrive_id or new_redrive_id()
    try:
        group = redrive_group_for(rid, settings.app_id)
    except TopicNameError as exc:
        raise DlqError(f"--redrive-id {rid!r}: {exc.why}") from None
    report = RedriveReport(rid, mode, topic, group)
    _run(_redrive(settings, filt, report, cap, limit, progress, on_total, batch_size, _crash_after.get()))
    return report


class RedriveFault(DlqError):
    """Raised by :func:`crash_redrive_after`'s hook: a simulated crash in the middle of a batch."""


#: Test hook: raise after this many sends, inside an open transaction (never set in production).
_crash_after: contextvars.ContextVar[int | None] = contextvars.ContextVar("redrive_crash_after", default=None)


@contextlib.contextmanager
def crash_redrive_after(sends: int) -> Iterator[None]:
    """Within the block, a redrive raises :class:`RedriveFault` after *sends* sends, its transaction left open."""
    token = _crash_after.set(sends)
    try:
        yield
    finally:
        _crash_after.reset(token)


async def _redrive(settings: Settings, filt: DlqFilter, report: RedriveReport, cap: int, limit: int | None,
                   progress: Progress | None, on_total: Callable[[int], None] | None,
                   batch_size: int, fault_after: int | None) -> None:
    execute = report.mode is RedriveMode.EXECUTE
    consumer = _consumer(settings, report.group)
    producer: AIOKafkaProducer | None = None
    await consumer.start()
    try:
        tps = await _partitions(consumer, report.topic)
        consumer.assign(tps)
        committed = {}
        for tp in tps:
            offset = await consumer.committed(tp)
            if offset is not None and offset >= 0:
                committed[tp] = offset
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        report.already_done = sum(max(0, min(o, end[tp]) - begin[tp]) for tp, o in committed.items())
        if on_total is not None:
            on_total(sum(max(0, end[tp] - max(begin[tp], committed.get(tp, 0))) for tp in tps))
        if execute:
            # One transactional id per redrive: a second run of the same id fences off a stuck first one.
            producer = AIOKafkaProducer(**client_kwargs(settings), transactional_id=report.group,
                                        enable_idempotence=True, acks="all",
                                        max_request_size=8 * 1024 * 1024)
            await producer.start()
        positions: dict[TopicPartition, int] = {}
        batch: list[tuple[DlqEntry, int]] = []  # (entry, destination partition)
        origin_sizes: dict[str, int] = {}  # origin topic -> partition count
        async for entry in read_dlq(consumer, report.topic, committed, filt.since_ms, progress, positions):
            report.scanned += 1
            if not filt.matches(entry):
                continue
            report.matched += 1
            verdict = judge_redrive(entry, cap)
            if verdict is RedriveVerdict.REFUSED_ATTEMPT_CAP:
                report.refused_attempt_cap += 1
                continue
            if verdict is RedriveVerdict.REFUSED_NO_ORIGIN:
                report.refused_no_origin += 1
                continue
            assert entry.origin_topic is not None  # judge_redrive refused it otherwise
            if entry.origin_topic not in origin_sizes:
                origin_sizes[entry.origin_topic] = len(await _partitions(consumer, entry.origin_topic))
            partition = redrive_partition(entry, origin_sizes[entry.origin_topic])
            batch.append((entry, partition))
            dest = f"{entry.origin_topic}[{partition}]"
            report.by_destination[dest] = report.by_destination.get(dest, 0) + 1
            if len(batch) >= batch_size or (limit is not None and report.sent + len(batch) >= limit):
                if execute:
                    await _send_batch(producer, report, batch, _checkpoint(positions, entry), fault_after)
                report.sent += len(batch)
                batch = []
                if limit is not None and report.sent >= limit:
                    report.stopped_early = True
                    break
        if not report.stopped_early:
            # Scanned to the end: the checkpoint moves to the end even when the last records matched nothing.
            if execute:
                await _send_batch(producer, report, batch, dict(positions), fault_after)
            report.sent += len(batch)
    finally:
        if producer is not None:
            await producer.stop()
        await consumer.stop()


def _checkpoint(positions: dict[TopicPartition, int], last: DlqEntry) -> dict[TopicPartition, int]:
    # Stopping right after *last*: the records read after it on its partition were not handled yet.
    offsets = dict(positions)
    offsets[TopicPartition(last.topic, last.partition)] = last.offset + 1
    return offsets


async def _send_batch(producer: AIOKafkaProducer | None, report: RedriveReport, batch: list[tuple[DlqEntry, int]],
                      offsets: dict[TopicPartition, int], fault_after: int | None) -> None:
    assert producer is not None
    if not batch and not offsets:
        return
    async with producer.transaction():
        for n, (entry, partition) in enumerate(batch, start=1):
            if fault_after is not None and report.sent + n > fault_after:
                raise RedriveFault(f"fault hook: stopped after {fault_after} sends, transaction left open")
            await producer.send(entry.origin_topic, value=entry.value, key=entry.key,
                                partition=partition,
                                headers=redrive_headers(entry, report.redrive_id))
        if offsets:
            await producer.send_offsets_to_transaction(offsets, report.group)
