"""Results leave a binding here: record batches to aiokafka, errors classified by type, one backoff.

* :meth:`Sender.produce` sends items in order and returns each one's error
  (or None); it never raises for a refused record.
* :func:`is_permanent` says whether an error is the record's fault (retrying
  cannot help) - by exception type, never by name.
* :class:`Backoff` is the one retry delay every retry loop of the runtime uses.
* The workers' producer is idempotent (acks=all, ``compat.IdempotentProducer``).
  A send refused because the broker lost track of the producer's sequence
  (:func:`is_producer_state_lost`, by type) renews the producer id, whoever
  sent it (outputs, DLQs, changelogs, DLQ retries); the refused records were
  not written, and every retry loop sends them again under the new id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aiokafka.errors
import faust

from .compat import ReportingProducer, raw_producer, renew_producer_id
from .record_path import RecordPath

__all__ = ["Sender", "SendItem", "Backoff", "is_permanent", "PERMANENT_SEND_ERRORS", "BATCH_RECORD_LIMIT",
           "PRODUCER_STATE_ERRORS", "is_producer_state_lost"]

log = logging.getLogger("streamlake.ingest")

#: aiokafka errors that are the record's fault: retrying cannot help.
PERMANENT_SEND_ERRORS: tuple[type[BaseException], ...] = (
    aiokafka.errors.MessageSizeTooLargeError, aiokafka.errors.RecordTooLargeError,
    aiokafka.errors.CorruptRecordException, aiokafka.errors.InvalidTimestampError,
)
#: Larger values take the per-record path, where the producer checks the size
#: and an oversized record fails alone instead of with its whole batch.
BATCH_RECORD_LIMIT = 64 * 1024

#: (partition, key, value, headers, timestamp ms)
SendItem = tuple[int, bytes | None, bytes | None, Any, int | None]


def is_permanent(exc: BaseException) -> bool:
    """Whether the broker or producer refused the record itself (retrying the same bytes cannot help)."""
    return isinstance(exc, PERMANENT_SEND_ERRORS)


#: The broker refused a batch of an idempotent producer for its producer id or sequence,
#: not for its records: the producer must get a new id, then the same records go through.
PRODUCER_STATE_ERRORS: tuple[type[BaseException], ...] = (
    aiokafka.errors.OutOfOrderSequenceNumber, aiokafka.errors.UnknownProducerId,
)


def is_producer_state_lost(exc: BaseException) -> bool:
    """Whether a send failed because the broker no longer follows the producer's sequence (a new id helps)."""
    return isinstance(exc, PRODUCER_STATE_ERRORS)


def _renew_if_state_lost(producer: aiokafka.AIOKafkaProducer, exc: BaseException, sent_under: int) -> None:
    """Every failed send of a worker's producer comes here; only lost producer state is acted on."""
    if is_producer_state_lost(exc) and renew_producer_id(producer, sent_under):
        log.warning("the broker refused producer id %d (%s: %s); asking for a new producer id, the refused "
                    "records are sent again under it", sent_under, type(exc).__name__, exc)


ReportingProducer.on_failed_send = _renew_if_state_lost


class Backoff:
    """Exponential retry delay: 0.5 s, doubling, capped (30 s by default); one per retry loop."""

    __slots__ = ("delay", "cap")

    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self.delay = first
        self.cap = cap

    async def wait(self) -> None:
        """Sleep the current delay, then double it for next time."""
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.cap)


class Sender:
    """Produces a binding's records; *path* decides between Faust's topic and raw record batches."""

    def __init__(self, app: faust.App, path: RecordPath) -> None:
        self.app = app
        self.path = path

    async def produce(self, topic: Any, items: Sequence[SendItem]) -> list[BaseException | None]:
        """Produce items in order; return each one's error or None.

        The batch paths write record batches straight to aiokafka, one batch
        per partition at a time, so per-partition order holds and there is one
        future per batch instead of one per record. Under exactly_once every
        record goes through Faust's topic, which routes it into the
        transaction of its source partition.
        """
        if self.path is RecordPath.EXACTLY_ONCE:
            futures = [await self.enqueue(topic, k, v, p, h, ts) for p, k, v, h, ts in items]
            results = await asyncio.gather(*futures, return_exceptions=True)
            return [r if isinstance(r, BaseException) else None for r in results]
        producer = raw_producer(self.app)
        name = topic.get_topic_name()
        slots: list[asyncio.Future[Any]] = []
        open_batches: dict[int, _OpenBatch] = {}
        for partition, key, value, headers, ts in items:
            if value is not None and len(value) > BATCH_RECORD_LIMIT:
                slots.append(await self.enqueue(topic, key, value, partition, headers, ts))
                continue
            batch = open_batches.get(partition)
            if batch is None:
                batch = open_batches[partition] = _OpenBatch(producer.create_batch())
            if batch.builder.append(key=key, value=value, timestamp=ts, headers=list(headers)) is None:
                await batch.send(producer, name, partition)
                batch = open_batches[partition] = _OpenBatch(producer.create_batch())
                batch.builder.append(key=key, value=value, timestamp=ts, headers=list(headers))
            slots.append(batch.future)
        for partition, batch in open_batches.items():
            await batch.send(producer, name, partition)
        # Records of one batch share its future: wait on each batch once, and look at
        # records one by one only when a batch failed.
        batches = list(dict.fromkeys(slots))
        settled = await asyncio.gather(*batches, return_exceptions=True)
        if not any(isinstance(result, BaseException) for result in settled):
            return [None] * len(items)
        result_of = dict(zip(batches, settled, strict=True))
        outcomes: list[BaseException | None] = []
        for item, slot in zip(items, slots, strict=True):
            result = result_of[slot]
            if isinstance(result, BaseException) and is_permanent(result):
                # The broker refused the whole batch for one record: find out which, one by one.
                p, k, v, h, ts = item
                try:
                    await (await self.enqueue(topic, k, v, p, h, ts))
                    result = None
                except Exception as exc:
                    result = exc
            outcomes.append(result if isinstance(result, BaseException) else None)
        return outcomes

    async def enqueue(self, topic: Any, key: bytes | None, value: bytes | None, partition: int,
                      headers: Any, timestamp_ms: int | None) -> asyncio.Future[Any]:
        """Hand one record to Faust's producer, in call order; return its delivery future.

        Records are enqueued one after another (never from concurrent tasks,
        which could reorder them) and their acknowledgements awaited together.
        """
        try:
            # Faust turns seconds back into ms with int(); the half-ms keeps it exact.
            ts = (timestamp_ms + 0.5) / 1000.0 if timestamp_ms is not None else None
            delivery: asyncio.Future[Any] = await topic.send(key=key, value=value, partition=partition,
                                                             headers=list(headers), timestamp=ts, force=True)
            return delivery
        except Exception as exc:  # refused before it was queued (e.g. too large): same path as a failed delivery
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed


class _OpenBatch:
    """A record batch being filled; ``future`` settles when the broker acknowledges it."""

    __slots__ = ("builder", "future")

    def __init__(self, builder: Any) -> None:
        self.builder = builder
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def send(self, producer: Any, topic: str, partition: int) -> None:
        try:
            delivered = await producer.send_batch(self.builder, topic, partition=partition)
        except Exception as exc:
            self.future.set_exception(exc)
            return
        delivered.add_done_callback(self._settle)

    def _settle(self, delivered: asyncio.Future[Any]) -> None:
        if delivered.cancelled():
            self.future.cancel()
        elif (exc := delivered.exception()) is not None:
            self.future.set_exception(exc)
        else:
            self.future.set_result(None)
