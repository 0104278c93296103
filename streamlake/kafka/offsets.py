"""Group and offset operations on the broker: the one Kafka-facing module for replay.

Reads go through aiokafka's admin client (group description, committed
offsets, topic metadata) and a group-less consumer (earliest, latest and
time-index offsets: ``ListOffsets``, never a scan). Writes commit offsets with
a consumer that carries the group id but never joins the group, which is what
Kafka's own ``alterConsumerGroupOffsets`` amounts to for an inactive group;
aiokafka 0.14 has no admin call for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from aiokafka.structs import OffsetAndMetadata

from ..config import Settings
from ..core.replay import ActiveGroupError, GroupState, ReplayError
from .client import client_kwargs, connection_failure, new_consumer

__all__ = ["GroupDescription", "OffsetAdmin", "commit_group_offsets"]

_GROUP_ID_NOT_FOUND = 69
TP = tuple[str, int]


@dataclass(frozen=True)
class GroupDescription:
    group: str
    state: GroupState
    members: tuple[str, ...]   # member ids
    protocol_type: str = ""


class OffsetAdmin:
    """Admin client plus a group-less consumer, for one command's lifetime.

    Use as ``async with OffsetAdmin(settings) as kafka: ...``.
    """

    def __init__(self, settings: Settings, isolation_level: str = "read_uncommitted") -> None:
        self.settings = settings
        self._admin = AIOKafkaAdminClient(**client_kwargs(settings), client_id="streamlake-replay-admin")
        # Kafka's reset tool lists offsets READ_UNCOMMITTED (the high watermark); window
        # replay reads read_committed so aborted transactional records are never re-published.
        self._consumer = new_consumer(
            settings, group_id=None, enable_auto_commit=False,
            isolation_level=isolation_level, client_id="streamlake-replay-offsets",
        )

    async def __aenter__(self) -> OffsetAdmin:
        try:
            await self._admin.start()
            await self._consumer.start()
        except KafkaError as exc:
            await self.close()
            raise ReplayError(await connection_failure(self.settings)) from exc
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._consumer.stop()
        await self._admin.close()

    # ---- groups

    async def describe_group(self, group: str) -> GroupDescription:
        """State and members of a classic consumer group (Dead when it does not exist)."""
        responses = await self._admin.describe_consumer_groups([group])
        for response in responses:
            for g in response.to_object()["groups"]:
                if g["group"] != group:
                    continue
                if g["error_code"] == _GROUP_ID_NOT_FOUND:
                    return GroupDescription(group, GroupState.DEAD, ())
                if g["error_code"]:
                    raise ReplayError(f"cannot describe consumer group {group!r}: broker error code {g['error_code']}")
                members = tuple(m["member_id"] for m in g["members"])
                return GroupDescription(group, GroupState.parse(g["state"]), members, g["protocol_type"])
        return GroupDescription(group, GroupState.DEAD, ())

    async def committed_offsets(self, group: str) -> dict[TP, int]:
        """Every committed offset of *group* (partitions without one are absent)."""
        offsets = await self._admin.list_consumer_group_offsets(group)
        return {(tp.topic, tp.partition): om.offset for tp, om in offsets.items() if om.offset >= 0}

    # ---- topics and offsets

    async def partitions_of(self, topics: Iterable[str]) -> dict[str, list[int]]:
        """Partition numbers per topic; a missing topic is an error that names it."""
        wanted = sorted(set(topics))
        if not wanted:
            return {}
        # All topics, never named ones: a named metadata lookup auto-creates a
        # missing topic on brokers that allow it.
        described = await self._admin.describe_topics()
        found: dict[str, list[int]] = {}
        for t in described:
            if t["error_code"] == 0 and t["topic"] in wanted:
                found[t["topic"]] = sorted(p["partition"] for p in t["partitions"])
        missing = [t for t in wanted if t not in found]
        if missing:
            raise ReplayError(f"topic(s) {', '.join(missing)} do not exist on {self.settings.bootstrap_servers}; "
                              f"check the name (and the prefix {self.settings.topic_prefix!r})")
        return found

    async def log_offsets(self, partitions: Iterable[TP]) -> tuple[dict[TP, int], dict[TP, int]]:
        """(earliest, latest) offsets per partition."""
        tps = [TopicPartition(t, p) for t, p in partitions]
        if not tps:
            return {}, {}
        begin = await self._consumer.beginning_offsets(tps)
        end = await self._consumer.end_offsets(tps)
        return ({(tp.topic, tp.partition): o for tp, o in begin.items()},
                {(tp.topic, tp.partition): o for tp, o in end.items()})

    async def offsets_for_time(self, partitions: Iterable[TP], timestamp_ms: int) -> dict[TP, int | None]:
        """The broker's time-index answer: first offset with timestamp >= *timestamp_ms*, or None."""
        tps = [TopicPartition(t, p) for t, p in partitions]
        if not tps:
            return {}
        found = await self._consumer.offsets_for_times({tp: timestamp_ms for tp in tps})
        return {(tp.topic, tp.partition): (None if ot is None else ot.offset) for tp, ot in found.items()}


async def commit_group_offsets(settings: Settings, group: str, offsets: Mapping[TP, int]) -> None:
    """Commit *offsets* for *group* without joining it (generation -1, as Kafka's admin does).

    The broker rejects such a commit while the group has members; that is
    reported as :class:`ActiveGroupError`.
    """
    if not offsets:
        return
    tps = [TopicPartition(t, p) for t, p in offsets]
    consumer = new_consumer(settings, group_id=group, enable_auto_commit=False, client_id="streamlake-replay-commit")
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.commit({TopicPartition(t, p): OffsetAndMetadata(o, "") for (t, p), o in offsets.items()})
    except (CommitFailedError, IllegalGenerationError, UnknownMemberIdError, RebalanceInProgressError) as exc:
        raise ActiveGroupError(group, "active (a member joined during the reset)", 1) from exc
    finally:
        await consumer.stop()
