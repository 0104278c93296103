"""The lander's Kafka side: its consumer, the landing DLQ, and reads for verification and lag.

Invariants:
- the lander's consumer never auto-commits and reads ``read_committed`` (an aborted
  transactional record of an exactly_once ingestion never lands); its group offsets are
  committed only after the table commit, for lag reporting, and never read back;
- a landing DLQ record is acknowledged by the broker before the table commit that moves
  the offsets past its origin (:meth:`LandingDlq.send` awaits every ack);
- the landing DLQ topic ``<valid topic>.dlq`` is created with the catalog's DLQ settings
  of the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from ..catalog import Catalog, TopicRole, TopicSpec
from ..config import Settings
from ..core.dlq import DeadLetter, H, build_dlq_headers
from ..core.lake_rows import LandingFailure
from ..naming import dlq_topic_for
from .admin import create_topics, topic_partition_counts
from .client import client_kwargs

__all__ = [
    "landing_consumer", "LandingDlq", "landing_dlq_spec", "ensure_landing_dlq_topics", "log_offsets",
    "TopicRecord", "read_partition_range", "read_dlq_origins", "commit_lag_offsets",
]

log = logging.getLogger(__name__)
_DLQ_BACKOFF_MAX = 30.0


def landing_consumer(settings: Settings, group: str, client_id: str, max_poll_records: int = 10_000
                     ) -> AIOKafkaConsumer:
    """A consumer of the lander group; subscribe it with a rebalance listener."""
    return AIOKafkaConsumer(
        **client_kwargs(settings), group_id=group, client_id=client_id, enable_auto_commit=False,
        auto_offset_reset="earliest", isolation_level="read_committed",
        session_timeout_ms=int(settings.session_timeout * 1000),
        heartbeat_interval_ms=int(settings.heartbeat_interval * 1000),
        max_poll_records=max_poll_records, max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024, rebalance_timeout_ms=120_000, max_poll_interval_ms=300_000,
    )


def subscribe(consumer: AIOKafkaConsumer, topics: Sequence[str], listener: ConsumerRebalanceListener) -> None:
    consumer.subscribe(topics=list(topics), listener=listener)


async def commit_lag_offsets(consumer: AIOKafkaConsumer, offsets: Mapping[tuple[str, int], int]) -> None:
    """Commit the group's offsets after a table commit, for lag only; a failure is logged, never fatal."""
    if not offsets:
        return
    try:
        await consumer.commit({TopicPartition(t, p): OffsetAndMetadata(o, "") for (t, p), o in offsets.items()})
    except KafkaError as exc:  # a rebalance in between: the table holds the truth anyway
        log.info("group offsets not committed (%s: %s); they only report lag", type(exc).__name__, exc)


def landing_dlq_spec(catalog: Catalog, stream: str, valid_topic: str) -> TopicSpec:
    """``<valid topic>.dlq`` with the stream's DLQ partitions and configs."""
    base = catalog.for_stream(stream, TopicRole.DLQ)
    return replace(base, name=dlq_topic_for(valid_topic))


async def ensure_landing_dlq_topics(settings: Settings, specs: Iterable[TopicSpec]) -> None:
    await create_topics(settings, specs)


class LandingDlq:
    """Writes records that cannot land to ``<valid topic>.dlq`` (stage ``land``), every send acknowledged."""

    def __init__(self, settings: Settings, group: str, worker: str, partitions: Mapping[str, int]) -> None:
        self.settings = settings
        self.group = group
        self.worker = worker
        self.partitions = dict(partitions)  # dlq topic -> partition count
        self.producer = AIOKafkaProducer(**client_kwargs(settings), acks="all", enable_idempotence=True,
                                         max_request_size=4 * 1024 * 1024, linger_ms=5,
                                         request_timeout_ms=int(settings.request_timeout * 1000),
                                         client_id=f"{worker}-landing-dlq")

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def send(self, failures: Sequence[LandingFailure]) -> None:
        """Send every failure and wait for all acks; on error retry with backoff (never drop, never skip)."""
        delay = 0.5
        pending = list(failures)
        while pending:
            now_ms = int(time.time() * 1000)
            futures = []
            for failure in pending:
                letter = DeadLetter(failure.record, failure.reason, failure.message)
                topic = dlq_topic_for(failure.record.topic)
                headers = build_dlq_headers(letter, self.group, self.worker, now_ms)
                partition = failure.record.partition % self.partitions.get(topic, 1)
                futures.append(await self.producer.send(topic, failure.record.value, key=failure.record.key,
                                                        partition=partition, headers=headers))
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = [f for f, r in zip(pending, results, strict=True) if isinstance(r, BaseException)]
            if not failed:
                return
            log.error("landing DLQ not writable (%s); %d record(s) wait, retrying in %.1fs",
                      next(r for r in results if isinstance(r, BaseException)), len(failed), delay)
            pending = failed
            await asyncio.sleep(delay)
            delay = min(delay * 2, _DLQ_BACKOFF_MAX)


def _plain_consumer(settings: Settings, isolation_level: str = "read_committed") -> AIOKafkaConsumer:
    return AIOKafkaConsumer(**client_kwargs(settings), group_id=None, enable_auto_commit=False,
                            isolation_level=isolation_level, auto_offset_reset="earliest",
                            max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024)


async def log_offsets(settings: Settings, topics: Iterable[str]) -> dict[tuple[str, int], tuple[int, int]]:
    """(log start, end) per partition of each existing topic; read_committed ends (the last stable offset)."""
    counts = await topic_partition_counts(settings, list(topics))
    tps = [TopicPartition(t, p) for t, n in counts.items() for p in range(n or 0)]
    if not tps:
        return {}
    consumer = _plain_consumer(settings)
    await consumer.start()
    try:
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): (begins[tp], ends[tp]) for tp in tps}
    finally:
        await consumer.stop()


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """The parts of a record verification needs."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


async def read_partition_range(settings: Settings, topic: str, ranges: Mapping[int, tuple[int, int]]
                               ) -> list[TopicRecord]:
    """Every record of *topic* with ``start <= offset < end`` per partition (read_committed)."""
    wanted = {p: r for p, r in ranges.items() if r[1] > r[0]}
    if not wanted:
        return []
    consumer = _plain_consumer(settings)
    await consumer.start()
    out: list[TopicRecord] = []
    try:
        tps = {p: TopicPartition(topic, p) for p in wanted}
        consumer.assign(list(tps.values()))
        for p, (start, _end) in wanted.items():
            consumer.seek(tps[p], start)
        open_parts = set(wanted)
        while open_parts:
            batch = await consumer.getmany(*[tps[p] for p in open_parts], timeout_ms=500)
            for tp, records in batch.items():
                end = wanted[tp.partition][1]
                out.extend(TopicRecord(r.partition, r.offset, r.key, r.value, tuple(r.headers))
                           for r in records if r.offset < end)
            for p in list(open_parts):
                if await consumer.position(tps[p]) >= wanted[p][1]:
                    open_parts.discard(p)
        return out
    finally:
        await consumer.stop()


async def read_dlq_origins(settings: Settings, dlq_topic: str, origin_topic: str) -> dict[tuple[int, int], str]:
    """(origin partition, origin offset) -> reason, for every landing DLQ record of *origin_topic*."""
    spans = await log_offsets(settings, [dlq_topic])
    ranges = {p: span for (_t, p), span in spans.items()}
    origins: dict[tuple[int, int], str] = {}
    for record in await read_partition_range(settings, dlq_topic, ranges):
        headers = {k: v.decode("utf-8", "replace") for k, v in record.headers}
        if headers.get(H.ORIGIN_TOPIC) == origin_topic:
            origins[(int(headers[H.ORIGIN_PARTITION]), int(headers[H.ORIGIN_OFFSET]))] = headers.get(H.REASON, "")
    return origins
