"""``streamlake dlq redrive``: send DLQ records back to their origin, resumable and exactly once (async).

Reads with :mod:`streamlake.kafka.dlq`'s reader; which records go where is decided by
:mod:`streamlake.core.dlq_policy` (``judge_redrive``, ``redrive_partition``,
``redrive_headers``). Sends and the checkpoint (the redrive group's offsets) share one
Kafka transaction per batch. docs/DLQ.md describes the semantics for users.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from ..config import Settings
from ..core.dlq_policy import DlqEntry, DlqError, DlqFilter, RedriveVerdict, judge_redrive, redrive_headers, redrive_partition
from ..errors import TopicNameError
from ..naming import redrive_group_for
from .client import new_producer
from .dlq import Progress, check_dlq_topic, dlq_consumer, dlq_partitions, read_dlq

__all__ = ["redrive_dlq", "RedriveReport", "RedriveMode", "new_redrive_id", "RedriveFault", "crash_redrive_after"]


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


async def redrive_dlq(settings: Settings, topic: str, filt: DlqFilter, *, mode: RedriveMode = RedriveMode.DRY_RUN,
                      redrive_id: str | None = None, max_attempts: int | None = None, limit: int | None = None,
                      progress: Progress | None = None, on_total: Callable[[int], None] | None = None,
                      batch_size: int = 500) -> RedriveReport:
    """Send matching DLQ records back to their origin topic and partition, or plan it (dry run).

    A ``wrong-partition`` record goes to its key's partition instead (see
    :func:`~streamlake.core.dlq_policy.redrive_partition`).

    Resumable: the position per DLQ partition is committed to the consumer
    group :func:`~streamlake.naming.redrive_group_for` (*redrive_id*) in the
    same Kafka transaction as the sends, so a rerun with the same id starts
    exactly after the last committed batch and nothing is sent twice.
    *limit* stops after that many sends (a clean checkpoint). A dry run reads
    from the same checkpoint, commits nothing. (Tests simulate a crash inside
    an open transaction with :func:`crash_redrive_after`.)
    """
    check_dlq_topic(topic)
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
    await _redrive(settings, filt, report, cap, limit, progress, on_total, batch_size, _crash_after.get())
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
    consumer = dlq_consumer(settings, report.group)
    producer: AIOKafkaProducer | None = None
    await consumer.start()
    try:
        tps = await dlq_partitions(consumer, report.topic)
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
            producer = new_producer(settings, transactional_id=report.group, enable_idempotence=True, acks="all",
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
                origin_sizes[entry.origin_topic] = len(await dlq_partitions(consumer, entry.origin_topic))
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
