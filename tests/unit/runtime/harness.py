"""An in-memory runtime: a real Faust app (never started) with fake producer and table adapters.

Topics and tables are declared as a worker declares them, but nothing
connects: :class:`FakeSender` records what would be produced (and can refuse
records), :class:`FakeRows` keeps what would be written to the tables'
changelogs. ``handle_batch``, the checkpoint and the state buffer run as they
do in a worker. :func:`dlq_runtime` does the same for the DLQ agent: its stream
is a list of events, its retries go to :class:`FakeProducer`, its counts table
is a dict.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import orjson

from streamlake.catalog import load_catalog
from streamlake.config import Settings, load_settings
from streamlake.core.dlq import DeadLetter, H, Reason, build_dlq_headers
from streamlake.core.records import SourceRecord
from streamlake.partitioner import partition_for_key
from streamlake.runtime.binding import StreamBinding
from streamlake.runtime.declarations import StreamTopics, declare_stream
from streamlake.runtime.dlq_agents import DlqAgent
from streamlake.runtime.record_path import RecordPath
from streamlake.runtime.sender import SendItem
from streamlake.runtime.state_buffer import StateBuffer, TableRows
from streamlake.topology import discover_streams

ROOT = Path(__file__).resolve().parents[3]

#: Decides a sent item's fate: None (acknowledged) or the error the producer reports.
Refusal = Callable[[str, SendItem], BaseException | None]


@dataclass
class FakeSender:
    """Stands in for :class:`streamlake.runtime.sender.Sender`: records every item, in order, per topic."""

    refuse: Refusal = lambda topic, item: None  # noqa: E731
    sent: dict[str, list[SendItem]] = field(default_factory=dict)
    attempts: int = 0

    async def produce(self, topic: Any, items: Sequence[SendItem]) -> list[BaseException | None]:
        name = topic.get_topic_name()
        outcomes: list[BaseException | None] = []
        for item in items:
            self.attempts += 1
            error = self.refuse(name, item)
            if error is None:
                self.sent.setdefault(name, []).append(item)
            outcomes.append(error)
        return outcomes


@dataclass
class FakeRows:
    """Stands in for the changelog writer: rows per table name, and the order of writes."""

    rows: dict[str, dict[bytes, tuple[int, Any]]] = field(default_factory=dict)
    writes: list[str] = field(default_factory=list)
    fail_next: int = 0

    async def write(self, table: Any, rows: TableRows) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("changelog not writable")
        self.writes.append(table.name)
        self.rows.setdefault(table.name, {}).update(rows)


@dataclass
class Runtime:
    settings: Settings
    topics: StreamTopics
    binding: StreamBinding
    sender: FakeSender
    rows: FakeRows

    def record(self, offset: int, key: str | None, value: dict | bytes | None, partition: int | None = None,
               topic: str | None = None) -> SourceRecord:
        kb = key.encode() if key is not None else None
        if partition is None:
            partition = partition_for_key(kb, self.topics.partitions) if kb else 0
        body = orjson.dumps(value) if isinstance(value, dict) else value
        return SourceRecord(topic or self.topics.source_name, partition, offset, 1_000 + offset, kb, body, ())

    def order(self, offset: int, key: str, seq: int) -> SourceRecord:
        return self.record(offset, key, {"order_id": key, "seq": seq})


def runtime(path: RecordPath = RecordPath.FAST, refuse: Refusal | None = None, **env: str) -> Runtime:
    """One stream (the repository's sales.orders topology) bound to an in-memory app."""
    settings = load_settings(env="test", root=ROOT, environ={"STREAMLAKE_TOPIC_PREFIX": "unit", **env})
    streams = discover_streams(settings.topologies_dir)
    catalog = load_catalog(settings, streams)
    app = faust.App(f"unit-{id(settings)}", broker="kafka://127.0.0.1:1", autodiscover=False)
    topics = declare_stream(app, streams[0], settings, catalog)
    sender = FakeSender(refuse or (lambda topic, item: None))
    rows = FakeRows()
    binding = StreamBinding(app, topics, settings, path, sender=sender,  # type: ignore[arg-type]
                            state=StateBuffer(topics, rows.write), worker="unit-worker")
    return Runtime(settings, topics, binding, sender, rows)


# -- the DLQ agent ------------------------------------------------------------------------------------

@dataclass
class FakeProducer:
    """Stands in for ``app.producer`` where the DLQ agent sends retries: records them; can fail the next sends."""

    sent: list[tuple[str, bytes | None, bytes | None, int | None, list[tuple[str, bytes]]]] = field(default_factory=list)
    fail_next: int = 0

    async def send_and_wait(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                            timestamp: float | None, headers: list[tuple[str, bytes]]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("retry topic not writable")
        self.sent.append((topic, key, value, partition, headers))


@dataclass
class FakeEvent:
    """A DLQ record as the agent's stream hands it over; ``ack`` is logged as (partition, offset)."""

    message: Any
    acks: list[tuple[int, int]]

    def ack(self) -> None:
        self.acks.append((self.message.partition, self.message.offset))


class FakeDlqStream:
    """The agent's ``noack`` stream over a fixed list of events."""

    def __init__(self, events: Sequence[FakeEvent]) -> None:
        self._events = list(events)

    def noack(self) -> FakeDlqStream:
        return self

    async def events(self) -> Any:
        for event in self._events:
            yield event

    async def noack_take(self, max_: int, within: float) -> Any:
        for start in range(0, len(self._events), max_):
            yield self._events[start:start + max_]


@dataclass
class DlqRuntime:
    settings: Settings
    agent: DlqAgent
    producer: FakeProducer
    acks: list[tuple[int, int]] = field(default_factory=list)

    def dead_letter(self, offset: int, reason: Reason, *, partition: int = 0, failed_before: int = 0,
                    failed_at_ms: int = 1_000, key: bytes = b"k1", value: bytes = b'{"order_id":"k1","seq":1}',
                    origin_partition: int = 2) -> FakeEvent:
        """A DLQ record as ingestion writes it: the record's own headers plus the DLQ context."""
        own: list[tuple[str, bytes]] = [("trace", b"t1")]
        if failed_before:
            own += [(H.ATTEMPT, str(failed_before).encode()), (H.FIRST_FAILED_AT, b"500")]
        source = SourceRecord(self.agent.source_name, origin_partition, 40 + offset, 900, key, value, tuple(own))
        headers = build_dlq_headers(DeadLetter(source, reason, "boom"), "grp", "w1", failed_at_ms)
        message = SimpleNamespace(topic=self.agent.dlq_name, partition=partition, offset=offset,
                                  timestamp=failed_at_ms / 1000, key=key, value=value, headers=headers)
        return FakeEvent(message, self.acks)

    def malformed(self, offset: int, *, partition: int = 0) -> FakeEvent:
        """A record in the DLQ topic without StreamLake's context headers."""
        message = SimpleNamespace(topic=self.agent.dlq_name, partition=partition, offset=offset, timestamp=1.0,
                                  key=b"x", value=b"?", headers=[])
        return FakeEvent(message, self.acks)

    async def consume(self, events: Sequence[FakeEvent]) -> None:
        """Run the agent over *events*, then wait for the retries it started."""
        await self.agent._consume(FakeDlqStream(events))  # type: ignore[arg-type]
        retries = [slot.task for ledger in self.agent._ledgers.values() for slot in ledger if slot.task is not None]
        await asyncio.gather(*retries, return_exceptions=True)


def dlq_runtime(**env: str) -> DlqRuntime:
    """The DLQ agent of the repository's sales.orders stream on an in-memory app (counts table: a dict)."""
    settings = load_settings(env="test", root=ROOT, environ={"STREAMLAKE_TOPIC_PREFIX": "unit", **env})
    streams = discover_streams(settings.topologies_dir)
    catalog = load_catalog(settings, streams)
    app = faust.App(f"unit-dlq-{id(settings)}", broker="kafka://127.0.0.1:1", autodiscover=False)
    producer = FakeProducer()
    app.producer = producer  # type: ignore[assignment]
    agent = DlqAgent(app, streams[0], settings, catalog)
    agent.table = {}  # type: ignore[assignment]  # stands in for the changelog-backed counts table

    async def write_rows(table: dict, rows: Mapping[str, tuple[int, Any]]) -> None:
        table.update((key, value) for key, (_, value) in rows.items())

    agent.write_rows = write_rows
    return DlqRuntime(settings, agent, producer)
