"""The lander: a plain aiokafka consumer-group process that lands ``valid`` topics in Iceberg tables.

Why not a Faust worker: landing needs none of Faust's tables or agents, its per-event path
costs about ten times the row building, and Faust commits group offsets on its own timer —
here the table is the only commit that counts, and group offsets follow it (lag only).

Invariants (the exactly-once argument, docs/LAKE.md):
- on assignment a partition is sought to the offset its table recorded (walking the
  snapshot ancestry), never to the group's committed offset; its recent ``(key, seq)``
  window is rebuilt from the table before any record of it is taken;
- a batch of one partition covers ``[start, end)`` contiguously from that offset; a fetch
  that began before a seek or a rebalance is thrown away (:attr:`Lander._generation`);
- every landing DLQ record of a batch is acknowledged before the table commit that moves
  the partition past it; group offsets are committed after the table commit;
- commits, seeks and rebalance callbacks run under one lock, so a partition's buffer is
  committed once.

Over 300 lines: assignment, fetch, batch landing, commit and rebalance share the lock and
the per-partition state the invariants above are about; they stay in one class.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from prometheus_client import CollectorRegistry

from ..catalog import Catalog as TopicCatalog
from ..config import Settings
from ..core.lake_progress import RecentWindow
from ..core.lake_progress import TopicPartition as TP
from ..core.lake_rows import Built, ColumnBuffer, LandingFailure, RowBuilder
from ..kafka.landing import (
    LandingDlq,
    commit_lag_offsets,
    ensure_landing_dlq_topics,
    landing_consumer,
    landing_dlq_spec,
)
from ..naming import lake_identifier_warnings
from .maintenance import expire_snapshots
from .metrics import LanderCollector, LanderCounters, serve_lander_web
from .settings import LakeSettings
from .tables import LakeTarget, arrow_schema_for, ensure_table, open_catalog
from .writer import PartitionBatch, TableWriter

__all__ = ["Lander", "lander_group_for", "run_lander"]

log = logging.getLogger("streamlake.lander")


def lander_group_for(app_id: str) -> str:
    """The landers' consumer group: ``<app id>-land``."""
    return f"{app_id}-land"


@dataclass
class _Partition:
    """One assigned partition: what the table has landed, what is buffered after it."""

    start: int                  # next offset the table has (or the seek position when it has none)
    end: int                    # next offset after the last record taken
    rows: ColumnBuffer
    window: RecentWindow
    failures: list[LandingFailure] = field(default_factory=list)
    duplicates: int = 0
    first_at: float | None = None

    @property
    def dirty(self) -> bool:
        return self.end > self.start


@dataclass
class _Landing:
    """One stream's table as this lander writes it."""

    target: LakeTarget
    builder: RowBuilder
    writer: TableWriter


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, lander: Lander) -> None:
        self.lander = lander

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.lander.release([(tp.topic, tp.partition) for tp in revoked])

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.lander.adopt([(tp.topic, tp.partition) for tp in assigned])


class Lander:
    """Lands every target's topic in its table; ``await run()`` until :meth:`stop`."""

    def __init__(self, settings: Settings, lake: LakeSettings, targets: Sequence[LakeTarget],
                 topic_catalog: TopicCatalog, web_host: str = "127.0.0.1", web_port: int | None = None,
                 lander_id: str | None = None) -> None:
        if not targets:
            raise ValueError("a lander needs at least one stream to land")
        self.settings = settings
        self.lake = lake
        self.targets = list(targets)
        self.topic_catalog = topic_catalog
        self.web_host = web_host
        self.web_port = web_port
        self.lander_id = lander_id or f"{socket.gethostname()}-{os.getpid()}"
        self.group = lander_group_for(settings.app_id)
        self.thresholds = lake.thresholds
        self.counters = LanderCounters()
        self.landings: dict[str, _Landing] = {}
        self.parts: dict[TP, _Partition] = {}
        self.lock = asyncio.Lock()
        self.ready = False
        self.stopping = asyncio.Event()
        self.crashed: BaseException | None = None
        self._generation = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq: LandingDlq | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        catalog = await asyncio.to_thread(open_catalog, self.lake)
        for target in self.targets:
            for warning in lake_identifier_warnings(target.identifier):
                log.warning("%s", warning)
            table = await asyncio.to_thread(ensure_table, catalog, target)
            schema = arrow_schema_for(target.stream)
            stream = target.stream
            builder = RowBuilder(stream.lake_columns, stream.sequence_field, stream.sequence_header,
                                 stream.event_time_field, self.lake.max_field_bytes)
            self.landings[target.topic] = _Landing(target, builder, TableWriter(table, schema, self.lander_id))
            self.counters.table(target.name)
        specs = [landing_dlq_spec(self.topic_catalog, t.stream.name, t.topic) for t in self.targets]
        await ensure_landing_dlq_topics(self.settings, specs)
        self._dlq = LandingDlq(self.settings, self.group, self.lander_id, {s.name: s.partitions for s in specs})
        await self._dlq.start()
        runner = None
        registry = CollectorRegistry()
        registry.register(LanderCollector(self.counters, self._lag, lambda: self.ready))
        if self.web_port is not None:
            runner = await serve_lander_web(self.web_host, self.web_port, registry, self._health, self._readiness)
        consumer = self._consumer = landing_consumer(self.settings, self.group, f"lander-{self.lander_id}")
        await consumer.start()
        consumer.subscribe(topics=[t.topic for t in self.targets], listener=_Rebalance(self))
        log.info("lander %s joining group %s for %s (lake %r)", self.lander_id, self.group,
                 ", ".join(t.topic for t in self.targets), self.lake)
        try:
            await self._loop(consumer)
            async with self.lock:
                await self._commit(list(self.parts))
        except BaseException as exc:
            self.crashed = exc
            raise
        finally:
            await consumer.stop()
            await self._dlq.stop()
            if runner is not None:
                await runner.cleanup()
            log.info("lander %s stopped", self.lander_id)

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        while not self.stopping.is_set():
            generation = self._generation
            # a bounded fetch: building rows holds the event loop, and the group's heartbeats share it
            fetched = await consumer.getmany(timeout_ms=200, max_records=5_000)
            async with self.lock:
                if generation == self._generation:
                    self._take(fetched)
                else:
                    # a seek or rebalance came in between: the fetch may predate it, so drop it and
                    # read again from what this lander has taken (the consumer moved past the fetch)
                    self._generation += 1
                    for tp, part in self.parts.items():
                        consumer.seek(TopicPartition(*tp), part.end)
                due = self._due()
                if due:
                    await self._commit(due)

    # -- taking records ---------------------------------------------------------------------

    def _take(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        landed_at = time.time_ns() // 1000
        now = time.monotonic()
        for tp, records in fetched.items():
            key = (tp.topic, tp.partition)
            part = self.parts.get(key)
            if part is None or not records:
                continue
            landing = self.landings[tp.topic]
            counters = self.counters.table(landing.target.name)
            build = landing.builder.build
            for record in records:
                if record.offset < part.end:
                    continue  # already taken (a fetch racing a seek)
                outcome = build(record, landed_at, part.rows, part.window)
                if outcome is Built.DUPLICATE:
                    part.duplicates += 1
                elif isinstance(outcome, LandingFailure):
                    part.failures.append(outcome)
                    counters.dlq_by_reason[outcome.reason.value] += 1
                part.end = record.offset + 1
            if part.first_at is None and part.dirty:
                part.first_at = now

    def _due(self) -> list[TP]:
        """Partitions to commit now: all dirty ones, once any of them is due."""
        now = time.monotonic()
        dirty = [tp for tp, p in self.parts.items() if p.dirty]
        if any(self.thresholds.due(len(p.rows), p.rows.size, now - (p.first_at or now))
               for p in (self.parts[tp] for tp in dirty)):
            return dirty
        return []

    # -- committing -------------------------------------------------------------------------

    async def _commit(self, tps: Sequence[TP]) -> None:
        """Land the buffered batches of *tps*: DLQ acks, table commit, then lag offsets. Caller holds the lock."""
        dirty = [tp for tp in tps if tp in self.parts and self.parts[tp].dirty]
        if not dirty:
            return
        failures = [f for tp in dirty for f in self.parts[tp].failures]
        if failures and self._dlq is not None:
            await self._dlq.send(failures)
        by_topic: dict[str, dict[TP, PartitionBatch]] = {}
        for tp in dirty:
            part = self.parts[tp]
            by_topic.setdefault(tp[0], {})[tp] = PartitionBatch(part.start, part.end, part.rows)
        landed: dict[TP, int] = {}
        for topic, batches in by_topic.items():
            landing = self.landings[topic]
            counters = self.counters.table(landing.target.name)
            log.debug("committing %s: %d partition(s), %d row(s)", landing.target.name, len(batches),
                      sum(len(b.rows) for b in batches.values()))
            outcome = await self._commit_table(landing, batches)
            log.debug("committed %s: snapshot %s, %d row(s), %d conflict(s)", landing.target.name,
                      outcome.snapshot_id, outcome.rows, outcome.conflicts)
            counters.commits += 1
            counters.conflicts += outcome.conflicts
            counters.rows += outcome.rows
            counters.files += outcome.files
            counters.bytes += outcome.bytes
            counters.record_bytes += sum(b.rows.size for tp, b in batches.items() if tp in outcome.landed)
            counters.duplicates += sum(self.parts[tp].duplicates for tp in outcome.landed)
            counters.observe_commit(outcome.seconds)
            for tp, offset in outcome.landed.items():
                self._reset(tp, offset)
                landed[tp] = offset
            every = self.lake.expire_every
            if every and outcome.rows and counters.commits % every == 0:
                expired = await asyncio.to_thread(expire_snapshots, landing.writer.table, self.lake.expire_older_than,
                                                  self.lake.retain_last)
                log.info("%s: expired %d old snapshot(s)", landing.target.name, expired)
            for tp, offset in outcome.rewind.items():
                counters.rewinds += 1
                log.warning("%s[%d]: the table moved to offset %d under this batch (%d..%d); reading it again",
                            tp[0], tp[1], offset, batches[tp].start, batches[tp].end)
                await self._seek(tp, offset)
        if self._consumer is not None:
            await commit_lag_offsets(self._consumer, landed)

    async def _commit_table(self, landing: _Landing, batches: dict[TP, PartitionBatch]) -> Any:
        delay = 0.5
        while True:
            try:
                return await asyncio.to_thread(landing.writer.commit, batches)
            except Exception as exc:  # the catalog or store is unreachable: keep the batch, never skip it
                if self.stopping.is_set():
                    raise
                log.error("commit to %s failed (%s: %s); retrying in %.1fs with the batch kept",
                          landing.target.name, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _reset(self, tp: TP, offset: int) -> None:
        part = self.parts[tp]
        part.start = part.end = offset
        part.rows = self.landings[tp[0]].builder.new_buffer()
        part.failures = []
        part.duplicates = 0
        part.first_at = None

    # -- assignment ---------------------------------------------------------------------------

    async def release(self, tps: Sequence[TP]) -> None:
        """Partitions leave this lander: land what is buffered for them first, then forget them."""
        async with self.lock:
            self._generation += 1
            mine = [tp for tp in tps if tp in self.parts]
            try:
                await self._commit(mine)
            except Exception as exc:  # the next owner reads from the table's offsets anyway
                log.error("could not land the buffer of revoked partitions (%s: %s); the next owner re-reads it",
                          type(exc).__name__, exc)
            for tp in mine:
                del self.parts[tp]

    async def adopt(self, tps: Sequence[TP]) -> None:
        """Partitions come to this lander: seek each to its table's offset, rebuild its window."""
        async with self.lock:
            self._generation += 1
            by_topic: dict[str, list[TP]] = {}
            for tp in tps:
                if tp[0] in self.landings:
                    by_topic.setdefault(tp[0], []).append(tp)
            for topic, mine in by_topic.items():
                writer = self.landings[topic].writer
                offsets = await asyncio.to_thread(writer.landed_offsets)
                for tp in mine:
                    await self._seek(tp, offsets.get(tp))
            assigned = ", ".join(f"{t}[{p}]@{self.parts[(t, p)].start}" for t, p in sorted(self.parts)) or "nothing"
            self.ready = True
            log.info("Ready: lander %s owns %s (sought to the table offsets)", self.lander_id, assigned)

    async def _seek(self, tp: TP, offset: int | None) -> None:
        """Position *tp* at *offset* (the log start when None) with a fresh buffer and a rebuilt window."""
        assert self._consumer is not None
        self._generation += 1
        ktp = TopicPartition(*tp)
        if offset is None:
            await self._consumer.seek_to_beginning(ktp)
            offset = await self._consumer.position(ktp)
        else:
            self._consumer.seek(ktp, offset)
        landing = self.landings[tp[0]]
        window = RecentWindow(self.lake.dedup_window)
        window.fill(await asyncio.to_thread(_recent_pairs, landing.writer, tp[1], offset - self.lake.dedup_window))
        self.parts[tp] = _Partition(offset, offset, landing.builder.new_buffer(), window)

    # -- health ---------------------------------------------------------------------------------

    def _lag(self) -> dict[TP, int]:
        consumer = self._consumer
        if consumer is None:
            return {}
        out: dict[TP, int] = {}
        for tp, part in list(self.parts.items()):
            highwater = consumer.highwater(TopicPartition(*tp))
            if highwater is not None:
                out[tp] = max(highwater - part.start, 0)
        return out

    def _health(self) -> dict[str, Any]:
        alive = self.crashed is None and not self.stopping.is_set()
        body: dict[str, Any] = {"alive": alive, "stopping": self.stopping.is_set()}
        if self.crashed is not None:
            body["crash_reason"] = f"{type(self.crashed).__name__}: {self.crashed}"
        return body

    def _readiness(self) -> dict[str, Any]:
        return {"ready": self.ready and self.crashed is None, "group": self.group,
                "assigned": sorted(f"{t}[{p}]" for t, p in self.parts),
                "tables": {name: c.as_dict() for name, c in self.counters.tables.items()}}


def _recent_pairs(writer: TableWriter, partition: int, from_offset: int) -> list[tuple[str, int, int]]:
    """``(key, seq, offset)`` of the rows of *partition* at or after *from_offset* (the dedup window)."""
    table = writer.table
    if table.current_snapshot() is None:
        return []
    row_filter = f"_kafka_partition = {int(partition)}"
    if from_offset > 0:
        row_filter += f" AND _kafka_offset >= {int(from_offset)}"
    arrow = table.scan(row_filter=row_filter, selected_fields=("_key", "_seq", "_kafka_offset")).to_arrow()
    return list(zip(arrow.column("_key").to_pylist(), arrow.column("_seq").to_pylist(),
                    arrow.column("_kafka_offset").to_pylist(), strict=True))


def run_lander(settings: Settings, lake: LakeSettings, targets: Sequence[LakeTarget], topic_catalog: TopicCatalog,
               web_host: str, web_port: int | None) -> None:
    """Run a lander until SIGTERM or SIGINT; buffered rows are landed before it exits."""
    lander = Lander(settings, lake, targets, topic_catalog, web_host, web_port)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lander.stop)
        await lander.run()

    asyncio.run(main())
