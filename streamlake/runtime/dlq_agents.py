"""DLQ agents: count, log, retry transient failures with backoff, park the rest.

One agent per DLQ topic, in the app's consumer group, at concurrency 1. For
each DLQ record it:

1. updates the per-partition counts in a changelog-backed table (co-partitioned
   with the DLQ topic: each entry is written to its record's partition, so it
   moves with it on a rebalance);
2. writes one structured log line (no payload unless ``dlq.log_payload``);
3. decides with :func:`streamlake.core.dlq_policy.decide_retry`: a ``transform-retryable``
   record with attempts left goes back to ``<source>.retry`` after its backoff;
   anything else is parked (it stays in the DLQ, counted, for ``dlq redrive``).

Records come in batches (``app.batch_size``): one counts write per partition
and batch, acknowledged by the broker before the batch's records are acked
(a table write per record was most of a worker's cost of a DLQ record).
Under exactly_once records come one by one and the counts go through Faust's
table, which writes them in the record's transaction.

Crash safety: the stream is ``noack`` and events are acknowledged per partition
strictly in offset order, a retried record only once its retry send is
acknowledged by the broker. Faust commits the first contiguous run of acked
offsets, so the committed offset never passes a pending retry: after a crash
the record is read again and retried again (at least once; the ingestion
tracker drops the duplicate). Acking out of order is not safe in Faust 0.15.3:
``Consumer._new_offset`` can commit past one unacked offset. Waiting never
blocks other records: each retry waits in its own task. See docs/DLQ.md.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import faust
import orjson

from ..catalog import Catalog, TopicRole
from ..config import Settings
from ..core.dlq_policy import DlqEntry, DlqTally, RetryVerdict, decide_retry, format_ms, render_preview, retry_delay
from ..naming import changelog_topic_for, source_of_derived, table_name_for
from ..topology import Stream
from .record_path import RecordPath
from .state_buffer import RowWriter, write_table_rows, write_until_acknowledged

__all__ = ["bind_dlq_agents", "DlqAgent", "empty_counts", "fold_counts"]

log = logging.getLogger("streamlake.dlq")

#: How often a waiting retry checks whether a rebalance or shutdown wants it out of the way.
_TICK = 0.25
#: Send attempts for one retry before it is left parked in the DLQ.
_SEND_TRIES = 5


def empty_counts() -> dict[str, Any]:
    """The counts-table value of one DLQ partition before any record."""
    return {"hwm": -1, "records": 0, "retried": 0, "parked": 0, "exhausted": 0, "malformed": 0,
            "by_reason": {}}


def fold_counts(counts: dict[str, Any], entry: DlqEntry, verdict: RetryVerdict) -> dict[str, Any]:
    """Return *counts* with *entry* added (a new dict); an offset at or below ``hwm`` was counted already."""
    if entry.offset <= counts.get("hwm", -1):
        return counts  # re-read after a crash or rebalance: counted before
    tally = DlqTally.from_counts(counts)
    tally.count(entry, verdict)
    return {"hwm": entry.offset, **tally.to_counts()}


@dataclass
class _Slot:
    offset: int
    event: Any
    done: bool = False
    retry: tuple[DlqEntry, float] | None = None  # (entry, due time) of a record to retry
    task: asyncio.Task | None = None


@dataclass
class DlqAgent:
    """The Faust agent, table and retry machinery of one stream's DLQ topic."""

    app: faust.App
    stream: Stream
    settings: Settings
    catalog: Catalog
    _ledgers: dict[int, collections.deque] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = self.catalog.for_stream(self.stream.name, TopicRole.DLQ)
        self.dlq_name = spec.name
        self.partitions = spec.partitions
        retry = self.catalog.for_stream(self.stream.name, TopicRole.RETRY)
        self.retry_name = retry.name
        self.retry_partitions = retry.partitions
        self.source_name = source_of_derived(self.dlq_name)
        self.topic = self.app.topic(self.dlq_name, key_serializer="raw", value_serializer="raw",
                                    partitions=self.partitions)
        table = table_name_for(self.dlq_name, "counts")
        changelog_topic_for(self.app.conf.id, table)  # fail at import time on a bad name, not at first write
        self.table = self.app.Table(
            table, default=None, partitions=self.partitions, key_type=str, value_type=None,
            help=f"DLQ counts per partition of {self.dlq_name}",
        )
        self.agent = self.app.agent(self.topic, name=f"dlq-{self.stream.name}", concurrency=1)(self._consume)
        self.retries_sent = 0  # this worker's, since it started (the table has the durable counts)
        #: (table, rows) -> the acknowledged write of rows, which map a key to (partition, value)
        self.write_rows: RowWriter = partial(write_table_rows, self.app)

    # -- the agent

    async def _consume(self, agent_stream: faust.StreamT) -> None:
        stream = cast(faust.Stream, agent_stream)  # noack_take is on the class, not on StreamT
        if RecordPath.for_settings(self.settings) is RecordPath.EXACTLY_ONCE:
            async for event in stream.noack().events():
                self._write_in_transaction(self._handle([event]))
                self._start(event.message.partition)
        else:
            async for events in stream.noack_take(self.settings.batch_size, self.settings.batch_within):
                await write_until_acknowledged(self.write_rows, self.table, self._handle(events),
                                               f"{self.dlq_name} counts")
                for partition in {event.message.partition for event in events}:
                    self._start(partition)

    def _handle(self, events: Iterable[Any]) -> dict[str, tuple[int, dict[str, Any]]]:
        """Count, log and decide each event; return the new counts rows of the partitions they came from.

        Their slots are marked done (and retries started) only by :meth:`_start`,
        once the counts are written: an ack never passes an uncounted record.
        """
        rows: dict[str, tuple[int, dict[str, Any]]] = {}  # table key -> (partition, counts)
        for event in events:
            msg = event.message
            slot = self._track(event)
            try:
                entry = DlqEntry.of(msg.topic, msg.partition, msg.offset, int(round(msg.timestamp * 1000)),
                                    msg.key, msg.value, _headers(msg.headers))
                verdict = decide_retry(entry, self.settings.dlq_retry_attempts)
                key = str(msg.partition)
                before = rows[key][1] if key in rows else self.table.get(key) or empty_counts()
                rows[key] = (msg.partition, fold_counts(before, entry, verdict))
                delay = 0.0
                if verdict is RetryVerdict.RETRY:
                    assert entry.attempt is not None
                    delay = retry_delay(entry.attempt, self.settings.dlq_retry_backoff,
                                        self.settings.dlq_retry_backoff_max)
                self._log(entry, verdict, delay)
                if verdict is RetryVerdict.RETRY:  # due from the failure: a restart keeps the clock
                    slot.retry = (entry, entry.timestamp / 1000 + delay)
            except Exception:  # a weird record must never stop the DLQ partition
                log.exception("dlq: could not handle %s[%s]@%s; it stays in the DLQ", self.dlq_name, msg.partition,
                              msg.offset)
        return rows

    def _write_in_transaction(self, rows: dict[str, tuple[int, dict[str, Any]]]) -> None:
        # Inside stream iteration: Faust writes the changelog record in the current event's transaction.
        for key, (_, value) in rows.items():
            self.table[key] = value

    def _start(self, partition: int) -> None:
        """Counts written: finish the partition's handled slots, start their retries, ack what is done."""
        for slot in self._ledgers.get(partition, ()):
            if slot.done or slot.task is not None:
                continue
            if slot.retry is None:
                slot.done = True
            else:
                entry, due = slot.retry
                slot.task = asyncio.ensure_future(self._retry_later(entry, due, slot))
        self._release(partition)

    def _log(self, entry: DlqEntry, verdict: RetryVerdict, delay: float) -> None:
        line: dict[str, Any] = {
            "event": "dlq-record", "stream": self.stream.name, "dlq": f"{entry.topic}[{entry.partition}]@{entry.offset}",
            "origin_topic": entry.origin_topic, "origin_partition": entry.origin_partition,
            "origin_offset": entry.origin_offset, "stage": entry.stage_code, "reason": entry.reason_code,
            "attempt": entry.attempt, "failed_at": format_ms(entry.timestamp), "verdict": verdict.value,
        }
        if verdict is RetryVerdict.RETRY:
            line["retry_in_s"] = round(max(0.0, entry.timestamp / 1000 + delay - time.time()), 3)
        if verdict is RetryVerdict.MALFORMED:
            line["problems"] = entry.problems()
        if self.settings.dlq_log_payload:
            line["key"] = render_preview(entry.key)
            line["value"] = render_preview(entry.value)
        level = logging.WARNING if verdict is RetryVerdict.MALFORMED else logging.INFO
        log.log(level, "%s", orjson.dumps(line).decode())

    # -- retries

    async def _retry_later(self, entry: DlqEntry, due: float, slot: _Slot) -> None:
        try:
            # Sleep in ticks: a rebalance waits for every unacked event (stream_wait_empty),
            # so a pending retry is sent early rather than holding the group up.
            # (rebalancing is a flag, not an event: it is polled in ticks)
            while time.time() < due and not self.app.rebalancing and not self.app.should_stop:  # noqa: ASYNC110
                await asyncio.sleep(min(_TICK, max(0.0, due - time.time())))
            if self.app.should_stop:
                return  # not acked: the record is read again after the restart
            await self._send_retry(entry)
            slot.done = True
            self._release(entry.partition)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("dlq: retry of %s[%s]@%s failed; it stays parked in the DLQ",
                          entry.topic, entry.partition, entry.offset)
            slot.done = True
            self._release(entry.partition)

    async def _send_retry(self, entry: DlqEntry) -> None:
        # Same key and, when the retry topic has it, the origin partition: per-key order is kept
        # among retries, and the ingestion agent reads the record on the partition that owns its key.
        partition = entry.origin_partition
        if partition is None or partition >= self.retry_partitions:
            partition = None  # the producer's murmur2 partitioner, like the Java client's
        for attempt in range(1, _SEND_TRIES + 1):
            try:
                await self.app.producer.send_and_wait(self.retry_name, entry.key, entry.value, partition, None,
                                                      list(entry.headers))
                self.retries_sent += 1
                log.info("%s", orjson.dumps({
                    "event": "dlq-retry-sent", "stream": self.stream.name, "retry_topic": self.retry_name,
                    "partition": partition, "dlq": f"{entry.topic}[{entry.partition}]@{entry.offset}",
                    "attempt": entry.attempt}).decode())
                return
            except Exception as exc:
                if attempt == _SEND_TRIES:
                    raise
                log.warning("dlq: retry send to %s failed (%s: %s); trying again", self.retry_name,
                            type(exc).__name__, exc)
                await asyncio.sleep(min(2.0 ** attempt, 30.0))

    # -- ordered acks

    def _track(self, event: Any) -> _Slot:
        partition, offset = event.message.partition, event.message.offset
        ledger = self._ledgers.setdefault(partition, collections.deque())
        if ledger and offset <= ledger[-1].offset:
            # The partition was reassigned and re-read from its committed offset: the old
            # slots belong to a finished assignment.
            for old in ledger:
                if old.task is not None:
                    old.task.cancel()
            ledger.clear()
        slot = _Slot(offset, event)
        ledger.append(slot)
        return slot

    def _release(self, partition: int) -> None:
        ledger = self._ledgers.get(partition)
        while ledger and ledger[0].done:
            ledger.popleft().event.ack()

    def pending_retries(self) -> int:
        return sum(1 for ledger in self._ledgers.values() for slot in ledger if not slot.done)

    def local_counts(self) -> dict[str, Any]:
        """The counts of the DLQ partitions this worker holds."""
        return {str(k): v for k, v in self.table.items()}


def _headers(headers: Any) -> list[tuple[str, bytes]]:
    if not headers:
        return []
    if isinstance(headers, dict):
        return list(headers.items())
    return [(k, v) for k, v in headers]


def bind_dlq_agents(app: faust.App, streams: Iterable[Stream], settings: Settings, catalog: Catalog) -> list[DlqAgent]:
    """Bind one DLQ agent per stream to *app*; call once per app, at import time."""
    agents = [DlqAgent(app, stream, settings, catalog) for stream in streams]

    @app.page("/streamlake/dlq")
    async def dlq_counts(web: Any, request: Any) -> Any:
        """This worker's DLQ counts (the partitions it holds) and its pending retries."""
        return web.json({a.stream.name: {"topic": a.dlq_name, "partitions": a.local_counts(),
                                         "pending_retries": a.pending_retries(), "retries_sent": a.retries_sent}
                         for a in agents})

    return agents
