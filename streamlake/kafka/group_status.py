"""What the group and its topics look like from the broker: ``streamlake status`` and the demo's numbers.

* :func:`read_group_status` – the group's state, members and their
  assignments, committed offsets against log end offsets (lag) for the
  catalog's consumed topics, and the depth of every DLQ topic;
* :class:`CountersReader` – tails the counters changelog topics and sums the
  latest row per key: the stream totals of every worker, dead or alive.

Topics are observed through a metadata request for *all* topics (never by
name, which would auto-create a missing one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError

from ..catalog import Catalog, TopicRole
from ..config import Settings
from ..core.pipeline import StreamCounters
from ..errors import BrokerError
from ..naming import changelog_topic_for, consumer_group_for, table_name_for
from .admin import admin_client
from .client import new_consumer

__all__ = ["MemberInfo", "PartitionLag", "DlqDepth", "GroupStatus", "read_group_status", "CountersReader",
           "counters_changelog_for"]

_GROUP_ID_NOT_FOUND = 69
_POLL_TIMEOUT = 60.0


@dataclass(frozen=True)
class MemberInfo:
    """One member of the group and the partitions it owns."""

    member_id: str
    client_id: str
    host: str
    assignment: tuple[tuple[str, int], ...]

    @property
    def short_id(self) -> str:
        """A readable member name: the member id's first 8 characters after the client id."""
        rest = self.member_id[len(self.client_id) + 1:] if self.member_id.startswith(self.client_id + "-") else self.member_id
        return rest[:8] or self.member_id

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready view."""
        by_topic: dict[str, list[int]] = {}
        for topic, partition in self.assignment:
            by_topic.setdefault(topic, []).append(partition)
        return {"member_id": self.member_id, "member": self.short_id, "client_id": self.client_id, "host": self.host,
                "assignment": by_topic}


@dataclass(frozen=True)
class PartitionLag:
    """Committed offset against the log end offset of one partition."""

    topic: str
    partition: int
    committed: int | None
    end: int
    owner: str | None

    @property
    def lag(self) -> int:
        """Records not yet committed (all of them when nothing is committed, as auto reset is earliest)."""
        return max(self.end - (self.committed or 0), 0)

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready view."""
        return {"topic": self.topic, "partition": self.partition, "committed": self.committed, "end": self.end,
                "lag": self.lag, "owner": self.owner}


@dataclass(frozen=True)
class DlqDepth:
    """Records currently retained in a DLQ topic."""

    topic: str
    depth: int
    end: int
    partitions: int

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready view."""
        return {"topic": self.topic, "depth": self.depth, "end": self.end, "partitions": self.partitions}


@dataclass(frozen=True)
class GroupStatus:
    """The group as the broker sees it."""

    group: str
    state: str
    protocol: str
    members: tuple[MemberInfo, ...]
    lags: tuple[PartitionLag, ...]
    dlq: tuple[DlqDepth, ...]
    missing_topics: tuple[str, ...] = ()
    #: stream -> totals from its counters changelog (records_in, forwarded, dropped, dlq, repartitioned, ...)
    streams: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def total_lag(self, topics: Iterable[str] | None = None) -> int:
        """Sum of lag over *topics* (all observed topics by default)."""
        wanted = set(topics) if topics is not None else None
        return sum(p.lag for p in self.lags if wanted is None or p.topic in wanted)

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready view."""
        return {"group": self.group, "state": self.state, "protocol": self.protocol,
                "members": [m.as_dict() for m in self.members],
                "lag": [p.as_dict() for p in self.lags], "total_lag": self.total_lag(),
                "dlq": [d.as_dict() for d in self.dlq], "missing_topics": list(self.missing_topics),
                "streams": {name: dict(totals) for name, totals in self.streams.items()}}


def _decode_assignment(raw: bytes) -> tuple[tuple[str, int], ...]:
    if not raw:
        return ()
    decoded = ConsumerProtocolMemberAssignment.decode(raw)
    return tuple(sorted((topic, p) for topic, parts in decoded.assignment for p in parts))


async def read_group_status(settings: Settings, catalog: Catalog, with_totals: bool = False) -> GroupStatus:
    """Describe the app's consumer group: lag per partition, DLQ depths and, *with_totals*, stream totals.

    Totals come from each stream's counters changelog (records in, forwarded,
    dropped, dlq, repartitioned, ...), so they cover every worker and restart.

    Lag covers the catalog topics the ingestion and DLQ agents consume
    (source, retry, repartition, DLQ). A catalog topic missing on the broker is listed in
    ``missing_topics``, never created.
    """
    group = consumer_group_for(settings.app_id)
    consumed = [t for t in catalog.topics
                if t.role in (TopicRole.SOURCE, TopicRole.RETRY, TopicRole.REPARTITION, TopicRole.DLQ)]
    dlq_names = [t.name for t in catalog.topics if t.role is TopicRole.DLQ]
    async with admin_client(settings) as admin:
        meta = {t["topic"]: t for t in await admin.describe_topics() if t["error_code"] == 0}
        state, protocol, members = await _describe(admin, group)
        committed = {(tp.topic, tp.partition): om.offset
                     for tp, om in (await admin.list_consumer_group_offsets(group)).items() if om.offset >= 0}
    present = [t.name for t in consumed if t.name in meta]
    tps = [TopicPartition(name, p["partition"]) for name in present for p in meta[name]["partitions"]]
    begin, end = await _log_offsets(settings, tps)
    owners = {tp: m.short_id for m in members for tp in m.assignment}
    lags = tuple(
        PartitionLag(tp.topic, tp.partition, committed.get((tp.topic, tp.partition)), end[tp],
                     owners.get((tp.topic, tp.partition)))
        for tp in sorted(tps)
    )
    dlq = tuple(
        DlqDepth(name, sum(end[tp] - begin[tp] for tp in tps if tp.topic == name),
                 sum(end[tp] for tp in tps if tp.topic == name), len(meta[name]["partitions"]))
        for name in dlq_names if name in meta
    )
    missing = tuple(t.name for t in catalog.topics if t.name not in meta)
    totals: dict[str, Mapping[str, Any]] = {}
    if with_totals:
        sources = {t.stream: t.name for t in catalog.topics if t.role is TopicRole.SOURCE}
        async with CountersReader(settings, sources) as reader:
            totals = {stream: counters.to_dict() for stream, counters in (await reader.poll()).items()}
    return GroupStatus(group, state, protocol, members, lags, dlq, missing, totals)


async def _describe(admin: Any, group: str) -> tuple[str, str, tuple[MemberInfo, ...]]:
    for response in await admin.describe_consumer_groups([group]):
        for g in response.to_object()["groups"]:
            if g["group"] != group:
                continue
            if g["error_code"] == _GROUP_ID_NOT_FOUND:
                return "Dead", "", ()
            if g["error_code"]:
                raise BrokerError(f"cannot describe consumer group {group!r}: broker error code {g['error_code']}")
            members = tuple(sorted(
                (MemberInfo(m["member_id"], m["client_id"], m["client_host"].lstrip("/"),
                            _decode_assignment(m["member_assignment"])) for m in g["members"]),
                key=lambda m: (m.client_id, m.member_id)))
            return g["state"], g["protocol"], members
    return "Dead", "", ()


async def _log_offsets(settings: Settings, tps: list[TopicPartition]) -> tuple[dict, dict]:
    if not tps:
        return {}, {}
    consumer = new_consumer(settings, group_id=None, enable_auto_commit=False, client_id="streamlake-status")
    try:
        await consumer.start()
        return await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
    except KafkaError as exc:
        raise BrokerError(f"listing offsets failed: {type(exc).__name__}: {exc}") from exc
    finally:
        await consumer.stop()


# -- stream totals from the counters changelog ------------------------------------------

def counters_changelog_for(settings: Settings, source_topic: str) -> str:
    """The changelog topic of a stream's counters table."""
    return changelog_topic_for(settings.app_id, table_name_for(source_topic, "counters"))


@dataclass
class CountersReader:
    """Tail counters changelogs and keep the latest row per key.

    Every source partition's counters live in one row (written by whichever
    worker owns the partition), so the sum of the latest rows is the stream's
    total across all workers and restarts. Reads are ``read_committed`` so
    rows of aborted transactions (exactly_once) never count.

    Use as ``async with CountersReader(settings, {stream: source_topic}) as r: await r.poll()``.
    """

    settings: Settings
    sources: Mapping[str, str]  # stream name -> source topic
    _rows: dict[str, dict[bytes, dict]] = field(default_factory=dict)
    _consumer: AIOKafkaConsumer | None = None
    _tps: dict[str, list[TopicPartition]] = field(default_factory=dict)

    async def __aenter__(self) -> CountersReader:
        self._consumer = new_consumer(self.settings, group_id=None, enable_auto_commit=False,
                                      isolation_level="read_committed", auto_offset_reset="earliest",
                                      client_id="streamlake-counters")
        try:
            await self._consumer.start()
        except KafkaError as exc:
            await self._consumer.stop()
            raise BrokerError(f"cannot reach Kafka at {self.settings.bootstrap_servers}: {exc}") from exc
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def _assign(self) -> bool:
        """Assign the changelog partitions once they exist (workers create them at start)."""
        wanted = {stream: counters_changelog_for(self.settings, topic) for stream, topic in self.sources.items()}
        if len(self._tps) == len(wanted):
            return True
        async with admin_client(self.settings) as admin:
            meta = {t["topic"]: t for t in await admin.describe_topics() if t["error_code"] == 0}
        for stream, name in wanted.items():
            if name in meta and stream not in self._tps:
                self._tps[stream] = [TopicPartition(name, p["partition"]) for p in meta[name]["partitions"]]
        tps = [tp for parts in self._tps.values() for tp in parts]
        if tps:
            assert self._consumer is not None
            self._consumer.assign(tps)
            await self._consumer.seek_to_beginning(*tps)
        return len(self._tps) == len(wanted)

    async def poll(self) -> dict[str, StreamCounters]:
        """Read every changelog to its current end; return the totals per stream."""
        await self._assign()
        consumer = self._consumer
        assert consumer is not None
        tps = [tp for parts in self._tps.values() for tp in parts]
        stream_of = {tp.topic: stream for stream, parts in self._tps.items() for tp in parts}
        if tps:
            ends = await consumer.end_offsets(tps)
            deadline = asyncio.get_running_loop().time() + _POLL_TIMEOUT
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                if asyncio.get_running_loop().time() > deadline:
                    raise BrokerError(f"reading the counters changelogs did not reach their end in {_POLL_TIMEOUT:.0f}s")
                batch = await consumer.getmany(*tps, timeout_ms=500)
                for tp, messages in batch.items():
                    rows = self._rows.setdefault(stream_of[tp.topic], {})
                    for m in messages:
                        if m.value is None:
                            rows.pop(m.key, None)
                        else:
                            rows[m.key] = orjson.loads(m.value)
                await asyncio.sleep(0)
        return {stream: _sum_rows(self._rows.get(stream, {}).values()) for stream in self.sources}


def _sum_rows(rows: Iterable[Mapping[str, Any]]) -> StreamCounters:
    total = StreamCounters()
    for row in rows:
        total.add(StreamCounters.from_dict(row))
    return total
