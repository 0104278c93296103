"""Replay against the broker: offset resets for a consumer group and window replays of a topic (async).

The library behind ``streamlake replay reset-offsets`` and ``streamlake replay
window``. Planning rules live in :mod:`streamlake.core.replay` (pure), the
options' parsing in :mod:`streamlake.core.replay_options`; group offsets go
through :mod:`streamlake.kafka.offsets`. docs/REPLAY.md describes the semantics
for users.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from ..config import Settings
from ..core.replay import (
    PartitionFacts,
    ReplayDecision,
    ReplayError,
    ReplayInputError,
    ReplayPlan,
    ResetMode,
    ResetSpec,
    WindowPlan,
    build_reset_plan,
    build_window_plan,
    check_group_inactive,
    decide_window_record,
    parse_kafka_datetime,
    parse_topic_scope,
    replay_headers,
)
from ..partitioner import partition_for_key
from .client import new_consumer, new_producer
from .offsets import OffsetAdmin, commit_group_offsets

__all__ = [
    "plan_offset_reset",
    "execute_offset_reset",
    "ResetOutcome",
    "ResetResult",
    "plan_window",
    "replay_window",
    "PartitionReplayCount",
    "WindowResult",
]

TP = tuple[str, int]


# --------------------------------------------------------------------------- reset-offsets

async def plan_offset_reset(settings: Settings, group: str, spec: ResetSpec, topics: Sequence[str] = (),
                            all_topics: bool = False) -> ReplayPlan:
    """Plan a reset like ``kafka-consumer-groups --reset-offsets --dry-run``.

    *topics* are ``T`` or ``T:P,P`` arguments; *all_topics* takes every
    partition the group has a committed offset for. ``--from-file`` plans name
    their own partitions and take neither. Raises :class:`ActiveGroupError`
    when the group has members.
    """
    if spec.mode is ResetMode.FROM_FILE:
        if topics or all_topics:
            raise ReplayInputError("--from-file names its own partitions; drop --topic/--all-topics")
    elif bool(topics) == bool(all_topics):
        raise ReplayInputError("give the partitions to reset: --topic T[:P,P...] (repeatable) or --all-topics")
    async with OffsetAdmin(settings) as kafka:
        described = await kafka.describe_group(group)
        check_group_inactive(group, described.state, len(described.members))
        committed = await kafka.committed_offsets(group)
        partitions = await _partitions_to_reset(kafka, spec, topics, all_topics, committed)
        earliest, latest = await kafka.log_offsets(partitions)
        by_time: dict[TP, int | None] = {}
        if spec.mode.needs_timestamp:
            assert spec.timestamp_ms is not None
            by_time = await kafka.offsets_for_time(partitions, spec.timestamp_ms)
        facts = [PartitionFacts(t, p, earliest[(t, p)], latest[(t, p)], committed.get((t, p)), by_time.get((t, p)))
                 for t, p in partitions]
    return build_reset_plan(group, described.state, spec, facts)


async def _partitions_to_reset(kafka: OffsetAdmin, spec: ResetSpec, topics: Sequence[str], all_topics: bool,
                               committed: dict[TP, int]) -> list[TP]:
    if spec.mode is ResetMode.FROM_FILE:
        wanted = sorted(spec.file_offsets)
    elif all_topics:
        wanted = sorted(committed)
        if not wanted:
            raise ReplayError("--all-topics found no committed offsets for this group; name the topics with --topic")
    else:
        scopes = [parse_topic_scope(t) for t in topics]
        existing = await kafka.partitions_of(s.topic for s in scopes)
        chosen: set[TP] = set()
        for scope in scopes:
            chosen.update((scope.topic, p) for p in (scope.partitions or existing[scope.topic]))
        wanted = sorted(chosen)
    existing = await kafka.partitions_of({t for t, _ in wanted})
    missing = [f"{t}:{p}" for t, p in wanted if p not in existing[t]]
    if missing:
        raise ReplayInputError(f"the partitions {', '.join(missing)} do not exist; check the partition numbers")
    return wanted


class ResetOutcome(enum.Enum):
    APPLIED = "applied"            # offsets were committed
    ALREADY_AT_TARGET = "already-at-target"  # nothing to change: a repeated --execute


@dataclass(frozen=True)
class ResetResult:
    plan: ReplayPlan
    outcome: ResetOutcome
    committed: int   # partitions whose offset was written

    def to_dict(self) -> dict:
        return {**self.plan.to_dict(), "outcome": self.outcome.value, "committed": self.committed}


async def execute_offset_reset(settings: Settings, plan: ReplayPlan) -> ResetResult:
    """Commit *plan*'s targets. Partitions already at target are left alone, so a rerun is a no-op."""
    changes = {(r.topic, r.partition): r.target for r in plan.rows if r.changes}
    if not changes:
        return ResetResult(plan, ResetOutcome.ALREADY_AT_TARGET, 0)
    async with OffsetAdmin(settings) as kafka:   # members may have joined since the plan was made
        described = await kafka.describe_group(plan.group)
        check_group_inactive(plan.group, described.state, len(described.members))
    await commit_group_offsets(settings, plan.group, changes)
    return ResetResult(plan, ResetOutcome.APPLIED, len(changes))


# --------------------------------------------------------------------------- window replay

async def plan_window(settings: Settings, topic: str, start: str, end: str, into: str | None = None,
                      key: str | None = None, replay_id: str | None = None) -> WindowPlan:
    """Bound ``[start, end)`` of every partition of *topic* through the broker's time index."""
    start_ms, end_ms = parse_kafka_datetime(start), parse_kafka_datetime(end)
    if end_ms <= start_ms:
        raise ReplayInputError(f"--end {end} must be after --start {start}: the window is [start, end)")
    into = into or topic
    async with OffsetAdmin(settings, isolation_level="read_committed") as kafka:
        found = await kafka.partitions_of({topic, into})
        tps = [(topic, p) for p in found[topic]]
        _, latest = await kafka.log_offsets(tps)
        first = await kafka.offsets_for_time(tps, start_ms)
        stop = await kafka.offsets_for_time(tps, end_ms)
    return build_window_plan(
        topic, into, start_ms, end_ms, replay_id or uuid.uuid4().hex,
        start_offsets={p: o for (_, p), o in first.items()},
        end_time_offsets={p: o for (_, p), o in stop.items()},
        end_offsets={p: o for (_, p), o in latest.items()},
        key=None if key is None else key.encode("utf-8"),
    )


@dataclass
class PartitionReplayCount:
    """What happened to one source partition's records."""

    replayed: int = 0
    skipped_key: int = 0
    skipped_before_start: int = 0


@dataclass(frozen=True)
class WindowResult:
    plan: WindowPlan
    by_partition: dict[int, PartitionReplayCount] = field(default_factory=dict)
    into_partitions: dict[int, int] = field(default_factory=dict)   # target partition -> records sent

    @property
    def replayed(self) -> int:
        return sum(c.replayed for c in self.by_partition.values())

    def to_dict(self) -> dict:
        return {
            **self.plan.to_dict(), "replayed": self.replayed,
            "by_partition": {p: vars(c) for p, c in sorted(self.by_partition.items())},
            "into_partitions": dict(sorted(self.into_partitions.items())),
        }


async def replay_window(settings: Settings, plan: WindowPlan,
                        on_progress: Callable[[int], None] | None = None, batch: int = 1000) -> WindowResult:
    """Re-publish the records of *plan* into ``plan.into`` with provenance headers.

    Reads with a group-less consumer (the live group is never touched), keeps
    key, value and headers, and sends each record to the partition its key
    maps to in the target (a null key keeps its source partition). Returns
    once every send is acknowledged.
    """
    progress = on_progress or (lambda n: None)
    todo = {p.partition: p for p in plan.partitions if p.upper_bound > 0}
    result = WindowResult(plan, {p.partition: PartitionReplayCount() for p in plan.partitions})
    if not todo:
        return result
    consumer = new_consumer(settings, group_id=None, enable_auto_commit=False,
                            isolation_level="read_committed", client_id="streamlake-replay-window")
    producer = new_producer(settings, acks="all", enable_idempotence=True,
                            linger_ms=5, client_id="streamlake-replay-window")
    await consumer.start()
    await producer.start()
    try:
        into_count = len(await producer.partitions_for(plan.into))
        consumer.assign([TopicPartition(plan.topic, p) for p in todo])
        for p, part in todo.items():
            consumer.seek(TopicPartition(plan.topic, p), part.first_offset)
        position = {p: part.first_offset for p, part in todo.items()}
        while todo:
            fetched = await consumer.getmany(*[TopicPartition(plan.topic, p) for p in todo],
                                             timeout_ms=1000, max_records=batch)
            sends = []
            stopped: set[int] = set()
            for tp, records in fetched.items():
                window = todo.get(tp.partition)
                if window is None:
                    continue
                counts = result.by_partition[tp.partition]
                for rec in records:
                    decision = decide_window_record(plan, window, rec.offset, rec.timestamp, rec.key)
                    if decision is ReplayDecision.STOP:
                        stopped.add(tp.partition)
                        break
                    if decision is ReplayDecision.SKIP_KEY:
                        counts.skipped_key += 1
                    elif decision is ReplayDecision.SKIP_BEFORE_START:
                        counts.skipped_before_start += 1
                    else:
                        target = _target_partition(rec.key, tp.partition, into_count, plan.into)
                        headers = replay_headers(rec.headers or (), plan.replay_id, plan.topic,
                                                 tp.partition, rec.offset, rec.timestamp)
                        sends.append(await producer.send(plan.into, value=rec.value, key=rec.key,
                                                         partition=target, headers=headers))
                        counts.replayed += 1
                        result.into_partitions[target] = result.into_partitions.get(target, 0) + 1
            if sends:  # pipelined within a batch, acknowledged before reading on
                await asyncio.gather(*sends)
            for p in list(todo):
                tp = TopicPartition(plan.topic, p)
                stop = todo[p].stop_offset
                # position() also moves past transaction markers, which never show up as records
                now_at = stop if p in stopped else min(await consumer.position(tp), stop)
                progress(now_at - position[p])
                position[p] = now_at
                if now_at >= stop:
                    del todo[p]
                    consumer.pause(tp)
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()
    return result


def _target_partition(key: bytes | None, source_partition: int, into_count: int, into: str) -> int:
    if key is not None:
        return partition_for_key(key, into_count)
    if source_partition < into_count:
        return source_partition
    raise ReplayError(
        f"a record without a key in partition {source_partition} cannot go to {into}, which has only "
        f"{into_count} partitions; give --into a topic with at least as many partitions as the source")

