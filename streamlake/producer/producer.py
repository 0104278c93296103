"""The async producer for a declared stream, on aiokafka.

Invariants:

* a record is checked by the stream's rules (:mod:`.prepare`) before it is
  handed to the Kafka client; a refused record raises and is never sent;
* the key is the key field, the partition the Java default for it, chosen
  here, so every client library agrees with ingestion;
* the Kafka producer is idempotent with ``acks=all``: a retried batch is
  written once, and an acknowledged record is on every in-sync replica;
* at most ``max_in_flight`` records wait for their acknowledgement; ``send``
  waits (backpressure) until the oldest are acknowledged;
* with allocated sequences, numbers are stored before the records carrying
  them are handed to the client (see :mod:`.sequences`); records wait in a
  small stage so one store commit covers many records;
* :meth:`StreamProducer.close` flushes: it returns once every record sent was
  acknowledged or failed.

Over 300 lines: :class:`StreamProducer`'s send, staging, backpressure and close share one
in-flight window and sequence stage; splitting them would split those invariants.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ..catalog import TopicRole, load_catalog
from ..config import Settings, load_settings
from ..errors import BrokerError, StreamLakeError
from ..kafka.client import client_kwargs
from ..kafka.sample_producer import check_source_topic
from ..topology import Stream, discover_streams
from .errors import DeliveryFailed, ProducerError, RecordRefused
from .prepare import PreparedRecord, Value, key_of, prepare_record
from .sequences import SequenceAllocator, SequenceSource

__all__ = ["StreamProducer", "Delivered", "Delivery", "ProducerMetrics", "find_stream", "default_sequence_store"]

_STAGE_SIZE = 1000  # allocated records per sequence-store commit


class Delivered(NamedTuple):
    """Where an acknowledged record was written."""

    topic: str
    partition: int
    offset: int
    key: bytes
    seq: int


class Delivery:
    """A record handed to the producer; ``await`` it for its :class:`Delivered` (or :class:`DeliveryFailed`)."""

    __slots__ = ("topic", "record", "_future")

    def __init__(self, topic: str, record: PreparedRecord, future: asyncio.Future) -> None:
        self.topic = topic
        self.record = record
        self._future = future

    @property
    def key(self) -> bytes:
        return self.record.key

    @property
    def seq(self) -> int:
        return self.record.seq

    def done(self) -> bool:
        return self._future.done()

    def __await__(self) -> Generator[Any, None, Delivered]:
        return self._result().__await__()

    async def _result(self) -> Delivered:
        try:
            meta = await self._future
        except KafkaError as exc:
            raise DeliveryFailed(f"{self.topic}: key {self.record.key[:64]!r} seq {self.record.seq} "
                                 f"was not acknowledged: {type(exc).__name__}: {exc}") from exc
        return Delivered(self.topic, meta.partition, meta.offset, self.record.key, self.record.seq)


@dataclass
class ProducerMetrics:
    """What a producer did so far. ``sent == delivered + failed + in_flight`` always.

    Acknowledgements are counted as the producer collects them (on later sends,
    when it waits for room, and on flush), so after a flush they are exact.
    """

    sent: int = 0
    delivered: int = 0
    failed: int = 0
    refused: int = 0
    refused_by_reason: collections.Counter = field(default_factory=collections.Counter)
    bytes_sent: int = 0
    backpressure_waits: int = 0
    sequence_commits: int = 0

    @property
    def in_flight(self) -> int:
        return self.sent - self.delivered - self.failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent, "delivered": self.delivered, "failed": self.failed, "in_flight": self.in_flight,
            "refused": self.refused, "refused_by_reason": dict(self.refused_by_reason),
            "bytes_sent": self.bytes_sent, "backpressure_waits": self.backpressure_waits,
            "sequence_commits": self.sequence_commits,
        }


def find_stream(settings: Settings, name: str) -> Stream:
    """The stream declared as *name* (``<domain>.<dataset>``) under the topologies folder."""
    streams = {s.name: s for s in discover_streams(settings.topologies_dir)}
    stream = streams.get(name)
    if stream is None:
        raise StreamLakeError(f"no stream {name!r} under {settings.topologies_dir}; "
                              f"declared: {', '.join(sorted(streams)) or 'none'}")
    return stream


def default_sequence_store(settings: Settings, stream: Stream) -> Path:
    """Where a producer keeps its allocated sequences unless told otherwise."""
    return settings.root / ".streamlake" / "producer" / f"{stream.name}.sequences.sqlite"


class StreamProducer:
    """Send records to a declared stream's source topic, checked and keyed as ingestion wants them.

    Use it as ``async with StreamProducer(stream, settings) as producer:``;
    ``await producer.send(value)`` returns a :class:`Delivery` once the record
    is queued (or raises :class:`RecordRefused`), ``await delivery`` gives where
    it was written.
    """

    def __init__(self, stream: Stream, settings: Settings | None = None, *, partitions: int | None = None,
                 sequence: SequenceSource = SequenceSource.FIELD, sequence_store: Path | None = None,
                 max_in_flight: int = 20_000, linger_ms: int = 5, client_id: str = "streamlake-producer",
                 **producer_options: Any) -> None:
        if max_in_flight < 1:
            raise ProducerError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.stream = stream
        self.settings = settings or load_settings()
        self.topic = str(stream.source_topic(self.settings.topic_prefix))
        self.partitions = partitions or load_catalog(self.settings, [stream]).for_stream(
            stream.name, TopicRole.SOURCE).partitions
        self.sequence = sequence
        self.metrics = ProducerMetrics()
        self._allocator = (SequenceAllocator(sequence_store or default_sequence_store(self.settings, stream))
                           if sequence is SequenceSource.ALLOCATE else None)
        self._max_in_flight = max_in_flight
        self._linger = linger_ms / 1000
        self._producer_options = {
            **client_kwargs(self.settings), "linger_ms": linger_ms, "max_batch_size": 256 * 1024,
            "client_id": client_id, **producer_options, "acks": "all", "enable_idempotence": True}
        self._producer: AIOKafkaProducer | None = None  # built on the loop that starts it
        self._pending: collections.deque[asyncio.Future] = collections.deque()
        self._stage: list[tuple[PreparedRecord, asyncio.Future]] = []
        self._stage_lock = asyncio.Lock()
        self._stage_timer: asyncio.TimerHandle | None = None
        self._started = False

    @classmethod
    def for_stream(cls, name: str, settings: Settings | None = None, **options: Any) -> StreamProducer:
        """A producer for the stream declared as *name* under the topologies folder."""
        settings = settings or load_settings()
        return cls(find_stream(settings, name), settings, **options)

    async def __aenter__(self) -> StreamProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Check the source topic against the catalog, connect, and open the sequence store."""
        await check_source_topic(self.settings, self.topic, self.partitions)
        if self._allocator is not None:
            self._allocator.open()
        self._producer = producer = AIOKafkaProducer(**self._producer_options)
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            if self._allocator is not None:
                self._allocator.close()
            raise BrokerError(f"cannot reach Kafka at {self.settings.bootstrap_servers}: {exc}") from exc
        self._started = True

    def prepare(self, value: Value, headers: Iterable[tuple[str, bytes]] = ()) -> PreparedRecord:
        """Check *value* against the stream's rules without sending it (raises :class:`RecordRefused`)."""
        return prepare_record(self.stream, value, self.partitions, self.topic, tuple(headers))

    async def send(self, value: Value, headers: Iterable[tuple[str, bytes]] = ()) -> Delivery:
        """Queue one record; wait only when ``max_in_flight`` records are unacknowledged.

        Raises:
            RecordRefused: the record breaks a rule of the stream; nothing was sent.
        """
        if not self._started:
            raise ProducerError("the producer is not started; use `async with` or await start() first")
        headers = tuple(headers)
        try:
            if self._allocator is None:
                record = prepare_record(self.stream, value, self.partitions, self.topic, headers)
            else:
                record = self._prepare_allocated(value, headers)
        except RecordRefused as exc:
            self.metrics.refused += 1
            self.metrics.refused_by_reason[exc.reason.value] += 1
            raise
        pending = self._pending
        while pending and pending[0].done():
            self._count(pending.popleft())
        if len(pending) >= self._max_in_flight:
            await self._wait_for_room()
        if self._allocator is None:
            return Delivery(self.topic, record, await self._send(record))
        future = asyncio.get_running_loop().create_future()
        self._stage.append((record, future))
        self._pending.append(future)
        self.metrics.sent += 1
        if len(self._stage) >= _STAGE_SIZE:
            await self._drain_stage()
        elif self._stage_timer is None:
            self._stage_timer = asyncio.get_running_loop().call_later(self._linger, self._drain_soon)
        return Delivery(self.topic, record, future)

    async def send_and_wait(self, value: Value, headers: Iterable[tuple[str, bytes]] = ()) -> Delivered:
        """Send one record and wait for its acknowledgement."""
        delivery = await self.send(value, headers)
        await self._drain_stage()
        return await delivery

    async def flush(self) -> None:
        """Return once every record sent so far is acknowledged or failed."""
        await self._drain_stage()
        pending = list(self._pending)
        self._pending.clear()
        if pending:
            await asyncio.wait(pending)
        for future in pending:
            self._count(future)

    async def close(self) -> None:
        """Flush, then disconnect and release the sequence store."""
        if not self._started:
            return
        try:
            await self.flush()
        finally:
            self._started = False
            if self._stage_timer is not None:
                self._stage_timer.cancel()
            if self._producer is not None:
                await self._producer.stop()
            if self._allocator is not None:
                self._allocator.close()

    # -- internals ---------------------------------------------------------------------

    def _prepare_allocated(self, value: Value, headers: tuple) -> PreparedRecord:
        assert self._allocator is not None
        doc = _loads_or_none(value) if isinstance(value, (bytes, str)) else value
        key = key_of(self.stream, dict(doc) if isinstance(doc, Mapping) else doc)
        if key is None:  # no number to give: the rules say what is wrong with the key
            return prepare_record(self.stream, value, self.partitions, self.topic, headers)
        record = prepare_record(self.stream, value, self.partitions, self.topic, headers,
                                seq=self._allocator.peek(key))
        self._allocator.take(key)  # consumed only once the record is accepted
        return record

    async def _send(self, record: PreparedRecord) -> asyncio.Future:
        try:
            assert self._producer is not None  # send() checked that the producer started
            future = await self._producer.send(self.topic, record.value, key=record.key,
                                               partition=record.partition, headers=list(record.headers) or None)
        except KafkaError as exc:
            raise DeliveryFailed(f"{self.topic}: cannot queue key {record.key[:64]!r}: {exc}") from exc
        self.metrics.bytes_sent += len(record.value)
        if self._allocator is None:
            self.metrics.sent += 1
            self._pending.append(future)
        return future

    def _count(self, future: asyncio.Future) -> None:
        """Count a settled send (no callback per record: sends are counted as they are collected)."""
        if future.cancelled() or future.exception() is not None:
            self.metrics.failed += 1
        else:
            self.metrics.delivered += 1

    async def _wait_for_room(self) -> None:
        self.metrics.backpressure_waits += 1
        pending = self._pending
        await self._drain_stage()
        while len(pending) >= self._max_in_flight:
            oldest = pending.popleft()
            await asyncio.wait([oldest])
            self._count(oldest)

    def _drain_soon(self) -> None:
        self._stage_timer = None
        asyncio.ensure_future(self._drain_stage())

    async def _drain_stage(self) -> None:
        """Store the stage's sequence numbers, then hand its records to the client, in order."""
        if not self._stage:
            return
        async with self._stage_lock:
            stage, self._stage = self._stage, []
            if self._stage_timer is not None:
                self._stage_timer.cancel()
                self._stage_timer = None
            if not stage:
                return
            assert self._allocator is not None
            self._allocator.persist()
            self.metrics.sequence_commits += 1
            for record, outer in stage:
                try:
                    inner = await self._send(record)
                except DeliveryFailed as exc:
                    _fail(outer, exc)  # counted as failed when collected
                    continue
                inner.add_done_callback(functools.partial(_copy, target=outer))


def _loads_or_none(value: bytes | str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


def _copy(source: asyncio.Future, target: asyncio.Future) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())  # type: ignore[arg-type]
    else:
        target.set_result(source.result())


def _fail(target: asyncio.Future, exc: BaseException) -> None:
    if not target.done():
        target.set_exception(exc)
