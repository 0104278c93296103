"""A stream's batches, from records in to results out: decide, send, buffer state.

Records reach :meth:`StreamBinding.handle_batch` in batches, from StreamLake's
consumer (the fast path) or from a Faust agent (classic and exactly_once).
The pure core decides every record's fate; this module produces the results,
waits for their acknowledgement and buffers the changed per-key state, so a
batch's offsets are completed (and later committed) only after all of that
succeeded. Its collaborators each do one job: :mod:`.declarations` (topics
and tables), :mod:`.sender` (sends, error classes, backoff),
:mod:`.state_buffer` (unflushed state) and :mod:`.checkpoint` (the commit).

Just over 300 lines: ``handle_batch`` and its two failure paths (a send refused for
good, a DLQ record too large) share the batch's bookkeeping; they stay in one class.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

import faust

from ..config import Settings
from ..core.dlq import VALUE_OMITTED, DeadLetter, Reason, build_dlq_headers
from ..core.pipeline import BatchResult, Forward, StreamCounters, process_batch
from ..core.records import ConsumedRecord, SourceRecord
from ..core.repartition import REPARTITIONED_FROM, Misplaced, split_misplaced
from .compat import raw_producer
from .declarations import StreamTopics
from .record_path import RecordPath
from .sender import Backoff, Sender, SendItem, is_permanent
from .state_buffer import StateBuffer, write_table_rows

__all__ = ["StreamBinding", "worker_id"]

log = logging.getLogger("streamlake.ingest")

Coords = tuple[str, int, int]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class StreamBinding:
    """One stream's agent and the code that moves its batches."""

    def __init__(self, app: faust.App, topics: StreamTopics, settings: Settings, path: RecordPath,
                 sender: Sender | None = None, state: StateBuffer | None = None, worker: str | None = None) -> None:
        self.app = app
        self.topics = topics
        self.stream = topics.stream
        self.settings = settings
        self.path = path
        self.worker = worker or worker_id()
        self.sender = sender or Sender(app, path)
        self.state = state or StateBuffer(topics, lambda table, rows: write_table_rows(app, table, rows))
        self.counters = StreamCounters()  # this worker's counts since it started
        self.agent = app.agent(topics.source, name=f"ingest-{self.stream.name}", concurrency=1)(self._consume)

    @property
    def source_name(self) -> str:
        return self.topics.source_name

    @property
    def retry_name(self) -> str:
        return self.topics.retry_name

    # -- Faust's agent (exactly_once, and the classic path when the fast path is off)

    async def _consume(self, agent_stream: faust.StreamT) -> None:
        events_stream = cast(faust.Stream, agent_stream)  # take_events is on the class, not on StreamT
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
        await self.app.producer.maybe_start()
        for table in self.topics.tables:
            # The changelog exists: prepare_worker created it before Faust started (a metadata
            # request for a missing topic makes a broker with auto.create.topics.enable create
            # it with num.partitions, breaking co-partitioning).
            await raw_producer(self.app).partitions_for(table.changelog_topic.get_topic_name())

    async def handle_batch_until_done(self, records: Sequence[ConsumedRecord]) -> None:
        """Handle a batch; on an unexpected error, log it and try the same batch again.

        Faust acks a batch once the agent moves on, even after an exception, so
        giving up here would commit records whose state was never stored.
        Retrying may forward some records twice (at-least-once), never zero times.
        """
        backoff = Backoff()
        while True:
            try:
                await self.handle_batch(records)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handling a batch of %d record(s) of %s failed; retrying in %.1fs (nothing is acked)",
                              len(records), self.stream.name, backoff.delay)
                await backoff.wait()

    # -- one batch, whatever path delivered it

    async def handle_batch(self, records: Sequence[ConsumedRecord]) -> list[BatchResult]:
        """Decide, produce, wait for acknowledgements, buffer state. Never raises for a bad record.

        The batch is split by partition: keys never span partitions, so this
        changes no verdict and keeps the counters exact per partition. Under
        ``partitioning = repartition``, source records on another partition than
        their key's are first written to the repartition topic (one batch step)
        and are decided when they are read back there.
        """
        read_offsets: dict[int, dict[str, int]] = {}
        for record in records:
            # within a topic-partition records come in offset order: the last one is the highest
            read_offsets.setdefault(record.partition, {})[record.topic] = record.offset
        moved: list[Misplaced] = []
        if self.topics.repartition is not None:
            records, moved = split_misplaced(records, self.topics.source_name, self.topics.partitions)
        by_partition: dict[int, list[ConsumedRecord]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)
        results = {p: self._decide(recs) for p, recs in by_partition.items()}
        moves = await self._repartition(moved) if moved else {}
        failed = await self._forward([f for r in results.values() for f in r.forwards])
        if failed:
            for p in {partition for _, partition, _ in failed}:
                results[p] = self._reprocess_with_failures(by_partition[p], failed)
        for p, outcome in moves.items():
            result = results.setdefault(p, BatchResult())
            result.counters.add(outcome.counters)
            result.dead_letters.extend(outcome.dead_letters)
        await self._dead_letter([letter for r in results.values() for letter in r.dead_letters])
        for partition, result in results.items():
            self.counters.add(result.counters)
            self.state.add(partition, result, read_offsets[partition])
        if self.path is RecordPath.EXACTLY_ONCE:
            self.state.flush_in_transaction()
        elif self.path is RecordPath.CLASSIC:
            await self.state.flush()
        return list(results.values())

    def _decide(self, records: Sequence[ConsumedRecord]) -> BatchResult:
        partition = records[0].partition
        return process_batch(self.stream, records, self.state.state_loader(partition), self.topics.partitions,
                             self.state.processed_of(partition))

    async def _forward(self, forwards: list[Forward]) -> dict[Coords, DeadLetter]:
        """Send every forward; return the ones the output topic refused for good."""
        pending = forwards
        failed: dict[Coords, DeadLetter] = {}
        backoff = Backoff()
        out_partitions = self.topics.output_partitions
        moved_topic = self.topics.repartition_name
        while pending:
            outcomes = await self.sender.produce(self.topics.output, [
                (rec.partition % out_partitions, rec.key, value,
                 _without_provenance(rec.headers) if rec.topic == moved_topic else rec.headers, rec.timestamp)
                for rec, value in pending
            ])
            if not any(outcomes):
                break
            retry: list[tuple[Forward, BaseException]] = []
            for fwd, outcome in zip(pending, outcomes, strict=True):
                if outcome is None:
                    continue
                if is_permanent(outcome):
                    rec = fwd.record
                    failed[(rec.topic, rec.partition, rec.offset)] = DeadLetter.from_exception(
                        rec, Reason.PRODUCE_FAILED, outcome)
                else:
                    retry.append((fwd, outcome))
            if retry:
                log.error("output topic %s not writable (%s: %s); retrying %d record(s) in %.1fs — "
                          "nothing is skipped, this stream's partitions wait",
                          self.topics.output_name, type(retry[0][1]).__name__, retry[0][1], len(retry), backoff.delay)
                await backoff.wait()
            pending = [fwd for fwd, _ in retry]
        return failed

    async def _repartition(self, moved: list[Misplaced]) -> dict[int, BatchResult]:
        """Write records read on another partition than their key's to that partition of the repartition topic.

        One batch step, acknowledged before the batch completes (so before its
        offsets can be committed): a crash in between only makes the source
        records be read and written again, and the tracker drops the second
        copies as duplicates. A record the topic refuses for good goes to the
        DLQ (``produce-failed``). Outcomes count on the partition the record was read from.
        """
        outcomes_by_partition: dict[int, BatchResult] = {}
        pending = moved
        backoff = Backoff()
        while pending:
            outcomes = await self.sender.produce(self.topics.repartition, [
                (m.partition, m.record.key, m.record.value,
                 (*m.record.headers, (REPARTITIONED_FROM, f"{m.record.partition}:{m.record.offset}".encode())),
                 m.record.timestamp)
                for m in pending
            ])
            retry: list[tuple[Misplaced, BaseException]] = []
            for item, outcome in zip(pending, outcomes, strict=True):
                result = outcomes_by_partition.setdefault(item.record.partition, BatchResult())
                if outcome is None:
                    result.counters.repartitioned += 1
                elif is_permanent(outcome):
                    result.counters.records_in += 1
                    result.counters.dlq += 1
                    result.counters.dlq_by_reason[Reason.PRODUCE_FAILED.value] += 1
                    result.dead_letters.append(DeadLetter.from_exception(item.record, Reason.PRODUCE_FAILED, outcome))
                else:
                    retry.append((item, outcome))
            if retry:
                log.error("repartition topic %s not writable (%s: %s); retrying %d record(s) in %.1fs — "
                          "nothing is skipped, this stream's partitions wait", self.topics.repartition_name,
                          type(retry[0][1]).__name__, retry[0][1], len(retry), backoff.delay)
                await backoff.wait()
            pending = [item for item, _ in retry]
        return outcomes_by_partition

    def _reprocess_with_failures(self, records: Sequence[ConsumedRecord],
                                 failed: dict[Coords, DeadLetter]) -> BatchResult:
        """Recompute the batch's states as if the refused forwards had gone to the DLQ.

        Keeps the rule that a DLQ record never counts as seen. Forwards already
        acknowledged are not sent again.
        """
        partition = records[0].partition
        kept = [r for r in records if (r.topic, r.partition, r.offset) not in failed]
        result = process_batch(self.stream, kept, self.state.state_loader(partition), self.topics.partitions,
                               self.state.processed_of(partition))
        mine = [letter for (_, p, _), letter in failed.items() if p == partition]
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
        backoff = Backoff()
        while pending:
            now_ms = int(time.time() * 1000)
            outcomes = await self.sender.produce(self.topics.dlq, [self._dlq_item(letter, now_ms) for letter in pending])
            failures = [(letter, o) for letter, o in zip(pending, outcomes, strict=True) if o is not None]
            if not failures:
                return
            retry: list[DeadLetter] = []
            stalled: list[tuple[DeadLetter, BaseException]] = []
            for letter, exc in failures:
                if is_permanent(exc) and letter.shrink < 2:
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
                          self.topics.dlq_name, type(exc).__name__, exc, len(stalled),
                          sorted({f"{s.record.topic}[{s.record.partition}]" for s, _ in stalled}), backoff.delay)
                await backoff.wait()
            pending = retry

    def _dlq_item(self, letter: DeadLetter, now_ms: int) -> SendItem:
        rec = letter.record
        headers = build_dlq_headers(letter, self.settings.app_id, self.worker, now_ms)
        value = rec.value
        if letter.shrink >= 2 and value is not None:
            headers.append((VALUE_OMITTED, str(len(value)).encode()))
            value = None
        return (rec.partition % self.topics.dlq_partitions, rec.key, value, headers, None)


def _without_provenance(headers: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """A repartitioned record is forwarded with its own headers only (its DLQ copy keeps the provenance)."""
    return [h for h in headers if h[0] != REPARTITIONED_FROM]


def _to_record(message: Any) -> SourceRecord:
    headers = message.headers or ()
    if isinstance(headers, dict):
        headers = list(headers.items())
    return SourceRecord(message.topic, message.partition, message.offset, int(round(message.timestamp * 1000)),
                        message.key, message.value, tuple(headers))
