"""The one seam to Faust: topologies become topics, tables and agents.

For each declared stream this binds:

* the source and retry topics (raw bytes in) and the output and DLQ topics;
* a changelog-backed sequence table, co-partitioned with the source;
* a counters table (one row per source partition, on that partition);
* one ingestion agent at concurrency 1.

Records reach :meth:`StreamBinding.handle_batch` in batches. The pure core
decides every record's fate; this module only produces the results, waits
for their acknowledgement and stores the changed per-key state, so a batch's
offsets are acked (and later committed) only after all of that succeeded.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import faust

from ..catalog import Catalog, TopicRole
from ..config import Settings
from ..core.dlq import DeadLetter, Reason, build_dlq_headers
from ..core.pipeline import BatchResult, Forward, StreamCounters, process_batch
from ..core.records import ConsumedRecord, SourceRecord
from ..core.sequence import KeyState
from ..naming import table_name_for
from ..partitioner import cached_partition_for_key, partition_for_key
from ..topology import Stream
from .compat import raw_producer
from .fastpath import write_table_rows

log = logging.getLogger("streamlake.ingest")

#: aiokafka errors that are the record's fault: retrying cannot help.
PERMANENT_SEND_ERRORS = ("MessageSizeTooLargeError", "RecordTooLargeError", "InvalidRecordError",
                         "CorruptRecordException", "InvalidTimestampError")
DLQ_BACKOFF_MAX = 30.0
#: Larger values take the per-record path, where the producer checks the size
#: and an oversized record fails alone instead of with its whole batch.
BATCH_RECORD_LIMIT = 64 * 1024
#: On a DLQ record written without its value: the value's size in bytes.
VALUE_OMITTED = "streamlake.dlq.value-omitted"


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def counters_key_for(stream: str, partition: int, partitions: int) -> bytes:
    """A counters-table key that the Java partitioner puts on *partition*.

    The table is written with ``use_partitioner``; choosing the key this way
    keeps each source partition's counters on the same changelog partition,
    so they move with the partition on a rebalance.
    """
    i = 0
    while True:
        key = f"{stream}|{partition}|{i}".encode()
        if partition_for_key(key, partitions) == partition:
            return key
        i += 1


class RecordPath(enum.Enum):
    """How records reach the binding, and how results and state leave it."""

    #: Faust's per-event path; sends and table writes join the transaction of
    #: the source partition, committed with its offset.
    EXACTLY_ONCE = "exactly_once"
    #: A Faust agent with ``take_events`` batches; state written after each batch.
    CLASSIC = "classic"
    #: The batch fast path (fastpath.py); state written before each offset commit.
    FAST = "fast"


@dataclass(eq=False)
class StreamBinding:
    """Faust objects for one stream and the code that moves its batches."""

    app: faust.App
    stream: Stream
    settings: Settings
    catalog: Catalog
    worker: str = field(default_factory=worker_id)

    def __post_init__(self) -> None:
        prefix = self.settings.topic_prefix
        spec = self.catalog.for_stream(self.stream.name, TopicRole.SOURCE)
        self.partitions = spec.partitions
        self.source_name = str(self.stream.source_topic(prefix))
        self.retry_name = self.stream.retry_topic(prefix)
        self.output_name = str(self.stream.output_topic(prefix))
        self.dlq_name = self.stream.dlq_topic(prefix)
        self.output_partitions = self.catalog.for_stream(self.stream.name, TopicRole.OUTPUT).partitions
        self.dlq_partitions = self.catalog.for_stream(self.stream.name, TopicRole.DLQ).partitions
        raw = dict(key_serializer="raw", value_serializer="raw")
        self.source = self.app.topic(self.source_name, self.retry_name, partitions=self.partitions, **raw)
        self.output = self.app.topic(self.output_name, partitions=self.output_partitions, **raw)
        self.dlq = self.app.topic(self.dlq_name, partitions=self.dlq_partitions, **raw)
        self.table = self.app.Table(
            table_name_for(self.source_name, "seq"), default=None, partitions=self.partitions,
            key_type=bytes, value_type=None, use_partitioner=True,
            help=f"per-key sequence state of {self.stream.name}",
        )
        self.counters_table = self.app.Table(
            table_name_for(self.source_name, "counters"), default=None, partitions=self.partitions,
            key_type=bytes, value_type=None, use_partitioner=True,
            help=f"per-partition counters of {self.stream.name}",
        )
        self.counters = StreamCounters()  # this worker's counts since it started
        # Per-key states and per-partition counter deltas not yet in the tables.
        # The fast path flushes them before every offset commit; the classic
        # path flushes after every batch.
        self._dirty_states: dict[bytes, KeyState] = {}
        self._dirty_counters: dict[int, StreamCounters] = {}
        # Per partition, the highest offset processed of each input topic: the
        # mark below which a record is a re-read (see process_batch).
        self._processed: dict[int, dict[str, int]] = {}
        self.path = RecordPath.EXACTLY_ONCE if self.settings.processing_guarantee == "exactly_once" else RecordPath.CLASSIC
        self._counter_keys = {p: counters_key_for(self.stream.name, p, self.partitions) for p in range(self.partitions)}
        self.agent = self.app.agent(self.source, name=f"ingest-{self.stream.name}", concurrency=1)(self._consume)

    # -- the classic Faust path (used for exactly_once, and when the fast path is off)

    async def _consume(self, events_stream: faust.StreamT) -> None:
        await self.ensure_changelog_metadata()
        if self.path is RecordPath.EXACTLY_ONCE:
            # One record per event: each send then joins the transaction of its
            # source partition, which Faust commits together with the offset.
            async for event in events_stream.events():
                await self.handle_batch_until_done([_to_record(event.message)])
        else:
            async for events in events_stream.take_events(self.settings.batch_size, self.settings.batch_within):
                await self.handle_batch_until_done([_to_record(e.message) for e in events])

    async def ensure_changelog_metadata(self) -> None:
        """Load the changelog topics' partitions into the producer before the first table write.

        Table writes pick their partition synchronously from producer metadata,
        which a fresh worker does not have yet.
        """
        producer = self.app.producer
        await producer.maybe_start()
        for table in (self.table, self.counters_table):
            # Declare first: a metadata request for a missing topic makes a broker with
            # auto.create.topics.enable create it with num.partitions (1), breaking co-partitioning.
            await table.changelog_topic.maybe_declare()
            await raw_producer(self.app).partitions_for(table.changelog_topic.get_topic_name())

    async def handle_batch_until_done(self, records: Sequence[ConsumedRecord]) -> None:
        """Handle a batch; on an unexpected error, log it and try the same batch again.

        Faust acks a batch once the agent moves on, even after an exception, so
        giving up here would commit records whose state was never stored.
        Retrying may forward some records twice (at-least-once), never zero times.
        """
        delay = 0.5
        while True:
            try:
                await self.handle_batch(records)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handling a batch of %d record(s) of %s failed; retrying in %.1fs (nothing is acked)",
                              len(records), self.stream.name, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, DLQ_BACKOFF_MAX)

    # -- one batch, whatever path delivered it

    async def handle_batch(self, records: Sequence[ConsumedRecord]) -> list[BatchResult]:
        """Decide, produce, wait for acknowledgements, store state. Never raises for a bad record.

        The batch is split by partition: keys never span partitions, so this
        changes no verdict and keeps the counters exact per partition.
        """
        by_partition: dict[int, list[ConsumedRecord]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)
        results = {p: process_batch(self.stream, recs, self._load_state, self.partitions, self._processed_of(p))
                   for p, recs in by_partition.items()}
        failed = await self._forward([f for r in results.values() for f in r.forwards])
        if failed:
            for p in {partition for _, partition, _ in failed}:
                results[p] = self._reprocess_with_failures(by_partition[p], failed)
        await self._dead_letter([l for r in results.values() for l in r.dead_letters])
        for partition, result in results.items():
            self._buffer(partition, result)
            marks = self._processed_of(partition)
            # within a topic-partition records come in offset order: the last one is the highest
            for topic, offset in {r.topic: r.offset for r in by_partition[partition]}.items():
                if offset > marks.get(topic, -1):
                    marks[topic] = offset
        if self.path is RecordPath.EXACTLY_ONCE:
            self.flush_state_in_transaction()
        elif self.path is RecordPath.CLASSIC:
            await self.flush_state()
        return list(results.values())

    def _processed_of(self, partition: int) -> dict[str, int]:
        marks = self._processed.get(partition)
        if marks is None:
            row = self.counters_table.get(self._counter_keys[partition]) or {}
            marks = self._processed[partition] = {t: int(o) for t, o in row.get("processed", {}).items()}
        return marks

    def _load_state(self, key: bytes) -> KeyState | None:
        state = self._dirty_states.get(key)
        if state is not None:
            return state
        raw = self.table.get(key)
        return KeyState.from_json(raw) if raw else None

    async def _forward(self, forwards: list[Forward]) -> dict[tuple[str, int, int], DeadLetter]:
        """Send every forward; return the ones the output topic refused for good."""
        pending = forwards
        failed: dict[tuple[str, int, int], DeadLetter] = {}
        delay = 0.5
        while pending:
            outcomes = await self._produce(self.output, [
                (f.record.partition % self.output_partitions, f.record.key, f.value, f.record.headers, f.record.timestamp)
                for f in pending
            ])
            retry = []
            for fwd, outcome in zip(pending, outcomes):
                if outcome is not None:
                    if type(outcome).__name__ in PERMANENT_SEND_ERRORS:
                        rec = fwd.record
                        failed[(rec.topic, rec.partition, rec.offset)] = DeadLetter.from_exception(
                            rec, Reason.PRODUCE_FAILED, outcome)
                    else:
                        retry.append((fwd, outcome))
            if retry:
                log.error("output topic %s not writable (%s: %s); retrying %d record(s) in %.1fs — "
                          "nothing is skipped, this stream's partitions wait",
                          self.output_name, type(retry[0][1]).__name__, retry[0][1], len(retry), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, DLQ_BACKOFF_MAX)
            pending = [fwd for fwd, _ in retry]
        return failed

    def _reprocess_with_failures(self, records: Sequence[ConsumedRecord],
                                 failed: dict[tuple[str, int, int], DeadLetter]) -> BatchResult:
        """Recompute the batch's states as if the refused forwards had gone to the DLQ.

        Keeps the rule that a DLQ record never counts as seen. Forwards already
        acknowledged are not sent again.
        """
        def coords(r: ConsumedRecord) -> tuple[str, int, int]:
            return (r.topic, r.partition, r.offset)

        kept = [r for r in records if coords(r) not in failed]
        result = process_batch(self.stream, kept, self._load_state, self.partitions,
                               self._processed_of(records[0].partition))
        mine = [l for (_, p, _), l in failed.items() if p == records[0].partition]
        result.counters.records_in += len(mine)
        for letter in mine:
            result.dead_letters.append(letter)
            result.counters.dlq += 1
            result.counters.dlq_by_reason[letter.reason.value] += 1
        return result

    async def _dead_letter(self, letters: Iterable[DeadLetter]) -> None:
        """Write DLQ records; on failure retry with backoff forever (never drop, never skip).

        A DLQ record the topic refuses as too large is shrunk instead of
        retried in vain: first without its stack trace, then without its value
        (header ``streamlake.dlq.value-omitted`` gives the value's size; the
        bytes stay in the source topic at the origin offset the headers name).
        """
        pending = list(letters)
        delay = 0.5
        while pending:
            now_ms = int(time.time() * 1000)
            outcomes = await self._produce(self.dlq, [self._dlq_item(l, now_ms) for l in pending])
            failures = [(l, o) for l, o in zip(pending, outcomes) if o is not None]
            if not failures:
                return
            retry, stalled = [], []
            for letter, exc in failures:
                if type(exc).__name__ in PERMANENT_SEND_ERRORS and letter.shrink < 2:
                    log.error("DLQ record for %s[%d]@%d refused (%s); writing it smaller", letter.record.topic,
                              letter.record.partition, letter.record.offset, type(exc).__name__)
                    retry.append(letter.shrunk())
                else:
                    retry.append(letter)
                    stalled.append((letter, exc))
            if stalled:
                letter, exc = stalled[0]
                log.error("DLQ topic %s not writable (%s: %s): %d record(s) from %s wait, retrying in %.1fs — "
                          "the partition stalls, nothing is dropped or skipped",
                          self.dlq_name, type(exc).__name__, exc, len(stalled),
                          sorted({f"{l.record.topic}[{l.record.partition}]" for l, _ in stalled}), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, DLQ_BACKOFF_MAX)
            pending = retry

    def _dlq_item(self, letter: DeadLetter, now_ms: int) -> tuple:
        rec = letter.record
        headers = build_dlq_headers(letter, self.settings.app_id, self.worker, now_ms)
        value = rec.value
        if letter.shrink >= 2 and value is not None:
            headers.append((VALUE_OMITTED, str(len(value)).encode()))
            value = None
        return (rec.partition % self.dlq_partitions, rec.key, value, headers, None)

    async def _produce(self, topic: Any, items: Sequence[tuple[int, bytes | None, bytes | None, Any, int | None]]
                       ) -> list[BaseException | None]:
        """Produce (partition, key, value, headers, timestamp ms) items in order; return each one's error or None.

        The fast path writes record batches straight to aiokafka, one batch per
        partition at a time, so per-partition order holds and there is one
        future per batch instead of one per record. Under exactly_once every
        record goes through Faust's topic, which routes it into the
        transaction of its source partition.
        """
        if self.path is RecordPath.EXACTLY_ONCE:
            futures = [await self._enqueue(topic, k, v, p, h, ts) for p, k, v, h, ts in items]
            results = await asyncio.gather(*futures, return_exceptions=True)
            return [r if isinstance(r, BaseException) else None for r in results]
        producer = raw_producer(self.app)
        name = topic.get_topic_name()
        slots: list[asyncio.Future] = []
        open_batches: dict[int, Any] = {}
        for partition, key, value, headers, ts in items:
            if value is not None and len(value) > BATCH_RECORD_LIMIT:
                slots.append(await self._enqueue(topic, key, value, partition, headers, ts))
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
        results = await asyncio.gather(*slots, return_exceptions=True)
        outcomes: list[BaseException | None] = []
        for item, result in zip(items, results):
            if isinstance(result, BaseException) and type(result).__name__ in PERMANENT_SEND_ERRORS:
                # The broker refused the whole batch for one record: find out which, one by one.
                p, k, v, h, ts = item
                try:
                    await (await self._enqueue(topic, k, v, p, h, ts))
                    result = None
                except Exception as exc:
                    result = exc
            outcomes.append(result if isinstance(result, BaseException) else None)
        return outcomes

    async def _enqueue(self, topic: Any, key: bytes | None, value: bytes | None, partition: int,
                       headers: Any, timestamp_ms: int | None) -> asyncio.Future:
        """Hand one record to the producer, in call order; return its delivery future.

        Records are enqueued one after another (never from concurrent tasks,
        which could reorder them) and their acknowledgements awaited together.
        """
        try:
            # Faust turns seconds back into ms with int(); the half-ms keeps it exact.
            ts = (timestamp_ms + 0.5) / 1000.0 if timestamp_ms is not None else None
            return await topic.send(key=key, value=value, partition=partition, headers=list(headers),
                                    timestamp=ts, force=True)
        except Exception as exc:  # refused before it was queued (e.g. too large): same path as a failed delivery
            failed: asyncio.Future = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed

    def _buffer(self, partition: int, result: BatchResult) -> None:
        """Keep changed key states and the partition's counter deltas until the next flush."""
        self._dirty_states.update(result.states)
        self.counters.add(result.counters)
        pending = self._dirty_counters.get(partition)
        if pending is None:
            self._dirty_counters[partition] = pending = StreamCounters()
        pending.add(result.counters)

    def _take_dirty(self) -> tuple[dict[bytes, tuple[int, Any]], dict[bytes, tuple[int, Any]]]:
        """Rows to write, as key -> (partition, value), for the state and counters tables."""
        states, self._dirty_states = self._dirty_states, {}
        counters, self._dirty_counters = self._dirty_counters, {}
        state_rows = {key: (cached_partition_for_key(key, self.partitions), state.to_json()) for key, state in states.items()}
        counter_rows = {}
        for partition, delta in counters.items():
            ckey = self._counter_keys[partition]
            stored = StreamCounters.from_dict(self.counters_table.get(ckey) or {})
            stored.add(delta)
            counter_rows[ckey] = (partition, {**stored.to_dict(), "processed": dict(self._processed_of(partition))})
        return state_rows, counter_rows

    async def flush_state(self) -> None:
        """Write buffered state and counters (one changelog record per dirty key), acknowledged.

        On failure the rows go back into the buffer and the write is retried
        with backoff: offsets are not committed meanwhile, so nothing is lost.
        """
        state_rows, counter_rows = self._take_dirty()
        delay = 0.5
        while state_rows or counter_rows:
            try:
                await write_table_rows(self.app, self.table, state_rows)
                state_rows = {}
                await write_table_rows(self.app, self.counters_table, counter_rows)
                return
            except Exception as exc:
                log.error("writing %s state to its changelog failed (%s: %s); retrying in %.1fs — "
                          "offsets wait, nothing is lost", self.stream.name, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, DLQ_BACKOFF_MAX)

    def flush_state_in_transaction(self) -> None:
        """exactly_once: write through Faust's tables so the changelog joins the open transaction."""
        state_rows, counter_rows = self._take_dirty()
        for table, rows in ((self.table, state_rows), (self.counters_table, counter_rows)):
            for key, (_, value) in rows.items():
                table[key] = value


class _OpenBatch:
    """A record batch being filled; ``future`` settles when the broker acknowledges it."""

    __slots__ = ("builder", "future")

    def __init__(self, builder: Any) -> None:
        self.builder = builder
        self.future: asyncio.Future = asyncio.get_running_loop().create_future()

    async def send(self, producer: Any, topic: str, partition: int) -> None:
        try:
            delivered = await producer.send_batch(self.builder, topic, partition=partition)
        except Exception as exc:
            self.future.set_exception(exc)
            return
        delivered.add_done_callback(self._settle)

    def _settle(self, delivered: asyncio.Future) -> None:
        if delivered.cancelled():
            self.future.cancel()
        elif delivered.exception() is not None:
            self.future.set_exception(delivered.exception())  # type: ignore[arg-type]
        else:
            self.future.set_result(None)


def _to_record(message: Any) -> SourceRecord:
    headers = message.headers or ()
    if isinstance(headers, dict):
        headers = list(headers.items())
    return SourceRecord(message.topic, message.partition, message.offset, int(round(message.timestamp * 1000)),
                        message.key, message.value, tuple(headers))


def bind_streams(app: faust.App, streams: Iterable[Stream], settings: Settings, catalog: Catalog) -> list[StreamBinding]:
    """Bind every stream to the app; the DLQ agents come along."""
    bindings = [StreamBinding(app, stream, settings, catalog) for stream in streams]
    try:
        from .dlq_agents import bind_dlq_agents
    except ImportError:  # the DLQ agents module is optional while it is being built
        return bindings
    bind_dlq_agents(app, list(streams), settings, catalog)
    return bindings
