"""Produce a sample load to a source topic: keyed, Java-partitioned, pipelined, rate-limited.

Sends are not awaited one by one: each is queued in order and the delivery
futures are awaited in windows (and all of them before returning), so a run
either reports every record acknowledged or raises.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from aiokafka.errors import KafkaError

from ..config import Settings
from ..core.sample import SampleRecord, SampleSummary
from ..errors import BrokerError, StreamLakeError
from ..partitioner import partition_for_key
from ..topology import Policies
from .admin import topic_partition_counts
from .client import new_producer

__all__ = ["produce_sample", "check_source_topic"]

_ACK_WINDOW = 5000  # delivery futures held before waiting for them (bounds memory, keeps the pipe full)


async def check_source_topic(settings: Settings, topic: str, partitions: int) -> None:
    """Refuse to produce to a missing topic (it would be auto-created wrong) or a mis-sized one."""
    found = (await topic_partition_counts(settings, [topic]))[topic]
    if found is None:
        raise StreamLakeError(f"topic {topic} does not exist on {settings.bootstrap_servers}; "
                              "create the catalog's topics first with `streamlake topics apply`")
    if found != partitions:
        raise StreamLakeError(f"topic {topic} has {found} partitions but the catalog says {partitions}; "
                              "keys would land on the wrong partitions. Fix it (streamlake topics plan) first")


async def produce_sample(settings: Settings, topic: str, partitions: int, records: Iterable[SampleRecord],
                         rate: float | None = None, policies: Policies = Policies(),
                         on_progress: Callable[[int], None] | None = None,
                         summary: SampleSummary | None = None) -> SampleSummary:
    """Send *records* to *topic* at up to *rate* records/s (None: as fast as possible).

    Each record goes to ``partition_for_key(route_key, partitions)`` (the next
    partition for a deliberately misrouted one). Returns what was produced, by
    kind and expected outcome, once every send is acknowledged; pass *summary*
    to watch it fill while sending.
    """
    if rate is not None and rate <= 0:
        raise StreamLakeError(f"--rate must be positive, got {rate}")
    await check_source_topic(settings, topic, partitions)
    producer = new_producer(settings, acks="all", enable_idempotence=True,
                            linger_ms=5, max_batch_size=256 * 1024, client_id="streamlake-produce-sample")
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise BrokerError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}; "
                          "start it with `streamlake broker start` or set STREAMLAKE_BROKER") from exc
    summary = summary if summary is not None else SampleSummary()
    pending: list[asyncio.Future] = []
    started = time.monotonic()
    try:
        for i, record in enumerate(records):
            if rate is not None:
                ahead = started + i / rate - time.monotonic()
                if ahead > 0.005:
                    await asyncio.sleep(ahead)
            partition = partition_for_key(record.route_key, partitions)
            if record.misroute:
                partition = (partition + 1) % partitions
            pending.append(await producer.send(topic, record.value, key=record.key, partition=partition))
            summary.add(record, policies)
            if len(pending) >= _ACK_WINDOW:
                await asyncio.gather(*pending)
                pending.clear()
            if on_progress is not None and (i & 0xFF) == 0:
                on_progress(summary.produced)
        await asyncio.gather(*pending)
    except KafkaError as exc:
        raise BrokerError(f"producing to {topic} failed after {summary.produced} record(s): "
                          f"{type(exc).__name__}: {exc}") from exc
    finally:
        await producer.stop()
    if on_progress is not None:
        on_progress(summary.produced)
    return summary
