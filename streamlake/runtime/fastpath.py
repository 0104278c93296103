"""Batch fast path: StreamLake's source topics leave Faust's drain loop in batches.

Faust's per-record path (message objects, the conductor, channel queues,
events, acks under a lock) costs about 220-250 µs a record. This module swaps
in a Consumer whose drain loop hands every fetched batch of a *fast* topic
straight to its stream binding, and leaves every other topic (changelogs,
DLQ agents, anything user-defined) on Faust's normal per-message path. Every
at_least_once worker runs this consumer: with the fast path off, the source
topics go the per-message way too, to a classic Faust agent.

What it keeps from Faust: the consumer group, the assignor, tables and their
changelogs, the commit timer and the commit itself. What it owns
(:class:`~streamlake.core.progress.ReadProgress`): the read and commit
positions of fast partitions, and the read positions of other acked topics
(the DLQ agents', whose acks stay Faust's). Faust's own bookkeeping (read
offsets, acked lists, gaps) races with its seeks during a rebalance and can
commit past records nobody processed; here a position is established only by
a seek to the committed offset, moves over contiguous lists only, and a
commit of a fast partition names only what was processed. A token
in the unacked set makes a revoke wait for a batch in flight. Buffered table
state is flushed before each commit (see :meth:`BatchConsumer.force_commit`).

Every Faust internal it needs is reached through
:class:`~streamlake.runtime.compat.ConsumerSeam`, which pins the version.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from ..core.progress import ReadProgress, Verdict
from ..core.records import ConsumedRecord
from .checkpoint import Checkpoint
from .compat import ConsumerSeam, IdempotentProducer, changelog_table, set_fetch_limit, set_fetch_max_wait
from .state_buffer import StateBuffer
from .table_store import BulkRestorable, followed_offsets, restore_in_bulk

if TYPE_CHECKING:
    from .binding import StreamBinding
    from .factory import StreamLakeApp

log = logging.getLogger("streamlake.fastpath")

#: Records per fetch hand-over while tables restore (none while processing). A restore keeps
#: every key it reads, and garbage from larger hand-overs in between stays in the worker's
#: RSS for good (about 370 instead of 136 MB per 1M keys, docs/BENCHMARKS.md).
RESTORE_FETCH_LIMIT = 2000

#: How long the broker may hold a fetch that finds nothing (Faust's: 1.5 s). aiokafka keeps one
#: fetch in flight per broker, and leaves out partitions whose records are still buffered: while a
#: batch is handled, the next fetch asks only for empty partitions, and the broker holds it this
#: long even if the batch's partitions get new records meanwhile. With 1.5 s, records waited up to
#: 1.5 s at 5k records/s (docs/BENCHMARKS.md), a new worker's seek waited behind a held fetch and
#: its first fetch behind another. An idle worker pays with 20 empty fetches a second per broker.
FETCH_MAX_WAIT_MS = 50


class _BatchToken:
    """Stands in the consumer's unacked set while a batch is in flight, so a revoke waits for it."""

    __slots__ = ("acked", "refcount", "__weakref__")

    def __init__(self) -> None:
        self.acked = False
        self.refcount = 1


class BatchConsumer(ConsumerSeam):
    """Faust's aiokafka Consumer with a batch drain loop for StreamLake's source topics."""

    app: StreamLakeApp

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.progress: ReadProgress[TP] = ReadProgress()
        self._seeking = 0
        # Partitions whose fetched list was dropped (position unknown) while a seek was under
        # way: that fetch moved the read position past where the seek establishes reading.
        self._dropped_while_seeking: set[TP] = set()
        self._fetch_limit: int | None = None
        self.checkpoint = Checkpoint(buffers=self._state_buffers, complete=self._complete,
                                     generation=lambda: self.app.consumer_generation_id)

    def fast_bindings(self) -> Mapping[str, StreamBinding]:
        return self.app.fast_bindings

    def _state_buffers(self) -> list[StateBuffer]:
        return list({id(b): b.state for b in self.fast_bindings().values()}.values())

    # -- commits: only what ReadProgress says is done ---------------------------------

    async def force_commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        """Commit through the checkpoint: buffered state flushed first, then Faust's commit (checkpoint.py)."""
        faust_commit = functools.partial(super().force_commit, topics, start_new_transaction=start_new_transaction)
        return await self.checkpoint.commit(faust_commit)

    def _positioned(self, topic: str) -> bool:
        """Fast topics, and topics of Faust agents (DLQ agents): their positions come from ReadProgress.

        Changelog topics are not acked and are sought by table recovery itself.
        """
        return topic in self.fast_bindings() or self.app.topics.acks_enabled_for(topic)

    def tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        fast_topics = self.fast_bindings()
        fast = [tp for tp in self.progress.partitions() if tp.topic in fast_topics
                and (topics is None or tp in topics or tp.topic in topics)]
        return itertools.chain(super().tps_with_pending_acks(topics), fast)

    def ack(self, message: Any) -> bool:
        """Faust's ack, refused for a message a stream skipped without processing it.

        Faust's stream skips a message that it takes while flow is suspended (a
        rebalance starting) or that is of an older generation, and then acks it
        anyway ("ack the filtered out message"): the revoke's commit could then
        pass a record nobody processed, which one classic-path kill -9 run lost.
        The stream tracks a message only after those checks, so an untracked
        message of an acked topic is not acked here: whoever owns its partition
        next reads it again from the committed offset.
        """
        if not message.tracked and self.app.topics.acks_enabled_for(message.topic):
            return False
        return bool(super().ack(message))

    def new_offset(self, tp: TP) -> int | None:
        if tp.topic in self.fast_bindings():
            return self.progress.committable(tp)
        return super().new_offset(tp)

    def commit_floor(self, tp: TP) -> int | None:
        # Faust keeps a committed 0 as None, and nothing for a partition never committed:
        # then reading started where the seek established it.
        committed = super().commit_floor(tp)
        return committed if committed is not None else self.progress.committable(tp)

    def _complete(self, spans: Mapping[TP, tuple[int, int]]) -> None:
        for tp, (start, end) in spans.items():
            self.progress.complete(tp, start, end)

    # -- positions: established by seeks to known offsets only ------------------------

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # After Faust's handler: a batch in flight finishes (and is committed) during its wait.
        await super().on_partitions_revoked(revoked)
        self.progress.forget(list(revoked))
        for buffer in self._state_buffers():  # what is left was not committed: the next owner reads it again
            inputs = set(buffer.topics.input_names)
            buffer.discard(tp.partition for tp in revoked if tp.topic in inputs)

    async def on_partitions_assigned(self, assigned: Any, generation_id: int = 0) -> None:
        self.progress.forget()  # unknown until the seek that ends recovery
        self._limit_fetches(RESTORE_FETCH_LIMIT)  # table recovery comes next
        set_fetch_max_wait(self, FETCH_MAX_WAIT_MS)
        await super().on_partitions_assigned(assigned, generation_id)

    def _limit_fetches(self, limit: int | None) -> None:
        if limit != self._fetch_limit:
            set_fetch_limit(self, limit)
            self._fetch_limit = limit

    async def perform_seek(self) -> None:
        """Seek to committed offsets, and establish where each positioned partition's reading starts.

        A partition without a committed offset is sought to its log start
        (what ``auto_offset_reset=earliest`` means), explicitly: aiokafka's
        ``seek_to_committed`` would leave it wherever its fetcher stood.
        """
        self._seeking += 1
        try:
            mine = [tp for tp in self.assignment() if self._positioned(tp.topic)]
            self.progress.forget(mine)
            await super().perform_seek()
            committed = {tp: self.committed_offset(tp) for tp in mine}
            starts = {tp: offset for tp, offset in committed.items() if offset}
            uncommitted = [tp for tp in mine if tp not in starts]
            if uncommitted:
                earliest = await self.earliest_offsets(*uncommitted)
                for tp in uncommitted:
                    starts[tp] = earliest[tp]
                    await self.seek_partition(tp, earliest[tp])
            for tp, offset in starts.items():
                self.progress.establish(tp, offset)
            # A list fetched after the seek but dropped before the positions above were known
            # left the fetch position at its end; with no later list (the load is over) no
            # head hole would ever send it back. Read those partitions again from their start.
            dropped, self._dropped_while_seeking = self._dropped_while_seeking, set()
            for tp in dropped:
                if tp in starts:
                    try:
                        await self.seek_partition(tp, starts[tp])
                    except Exception as exc:  # e.g. revoked meanwhile: unknown again, the next fetch seeks
                        log.warning("%s: seek to %d failed (%r); waiting for the next seek", tp, starts[tp], exc)
                        self.progress.forget([tp])
            # What /metrics shows as committed, through the monitor's public hook (runtime/monitor.py)
            self.app.monitor.on_tp_commit({tp: offset for tp, offset in committed.items() if offset})
        finally:
            self._seeking -= 1

    async def drain_records(self, records: Mapping[TP, list[Any]], active: Any) -> None:
        recovery = cast(Any, self.app.tables).recovery
        self._limit_fetches(RESTORE_FETCH_LIMIT if recovery.in_recovery or recovery.standby_remaining_total()
                            else None)
        generation = self.app.consumer_generation_id
        fast = self.fast_bindings()
        by_binding: dict[Any, list[ConsumedRecord]] = {}
        spans: dict[TP, tuple[int, int]] = {}
        seek_back: dict[TP, int] = {}
        unknown = False
        classic: list[tuple[TP, Sequence[Any], int | None]] = []
        put_back: dict[TP, int] = {}
        # Decide every fast list before the first await, so no seek can slip in between.
        for tp, recs in records.items():
            if not recs:
                continue
            binding = fast.get(tp.topic)
            if active is not None and tp not in active and not self.is_buffered(tp):
                # Dropped. A positioned partition's next list starts after a hole and is sent
                # back; a changelog's would not be, so it is sought back now (see _put_back).
                if binding is None and not self._positioned(tp.topic):
                    offset = _next_to_restore(recovery, tp)
                    if offset is not None:
                        put_back[tp] = offset
                continue
            if binding is None and not self._positioned(tp.topic):
                if not self._restored_in_bulk(tp, recs):
                    classic.append((tp, recs, None))  # a changelog: table recovery owns its position
                continue
            admission = self.progress.admit(tp, recs)
            if admission.verdict is Verdict.UNKNOWN:
                unknown = True
                if self._seeking:
                    self._dropped_while_seeking.add(tp)
            elif admission.verdict is Verdict.SEEK_BACK:
                seek_back[tp] = admission.offset
            elif not admission.records:
                continue
            elif binding is None:
                classic.append((tp, admission.records, admission.offset))
            else:
                by_binding.setdefault(binding, []).extend(admission.records)  # aiokafka's records, as they are
                spans[tp] = (admission.offset, admission.end)
        now = time.monotonic()
        monitor = self.app.monitor
        for tp in spans:
            monitor.track_tp_end_offset(tp, self.highwater(tp))
            if monitor.stream_inbound_time is not None:
                monitor.stream_inbound_time[tp] = now
        for tp, offset in put_back.items():
            await self._put_back(tp, offset)
        for tp, listed, start in classic:
            await self._deliver_classic(tp, listed, generation, start)
        for tp, offset in seek_back.items():
            log.info("%s: fetched records start after offset %d; reading again from there", tp, offset)
            try:
                await self.seek_partition(tp, offset)
            except Exception as exc:  # e.g. revoked meanwhile: the next assignment seeks anyway
                log.warning("%s: seek to %d failed (%r); waiting for the next seek", tp, offset, exc)
                self.progress.forget([tp])
        if unknown and not self._seeking:
            try:
                await self.perform_seek()
            except Exception as exc:  # e.g. a partition revoked meanwhile: still unknown, so nothing is admitted
                log.warning("seek to establish read positions failed (%r); trying again with the next fetch", exc)
        if not by_binding:
            return
        token = _BatchToken()
        self.hold_acks(token)
        try:
            for binding, batch in by_binding.items():
                await binding.handle_batch_until_done(batch)
            if self.app.consumer_generation_id != generation:
                # A rebalance happened meanwhile: the new owner reads these records again from
                # the committed offset; their state is buffered, so they come back as duplicates.
                return
            self.checkpoint.finish_batch(generation, spans)
        finally:
            token.acked = True
            self.release_acks(token)

    async def _put_back(self, tp: TP, offset: int) -> None:
        """Seek changelog partition *tp* back to *offset*, the first record its table has not applied.

        Faust hands the consumer thread its set of active partitions and changes
        that set while the thread fetches; aiokafka reads an empty set as "every
        partition". So a list of a changelog partition that was paused meanwhile
        (standbys, while active recovery ends) can arrive here with its position
        already past it. Dropped without this seek, those records were never
        applied: a standby that became active lacked their keys and took their
        duplicates as new.
        """
        log.info("%s: changelog records arrived while the partition was paused; reading again from %d", tp, offset)
        try:
            await self.seek_partition(tp, offset)
        except Exception as exc:  # e.g. revoked meanwhile: its next owner's recovery seeks it
            log.warning("%s: seek to %d failed (%r); the next recovery seeks it", tp, offset, exc)

    def _restored_in_bulk(self, tp: TP, recs: Sequence[Any]) -> bool:
        """Apply a changelog list of a table whose store restores in bulk (table_store.py); False for others.

        Runs before any await of this drain step, so no rebalance slips in between
        the generation check and the apply.
        """
        table = changelog_table(self.app, tp.topic)
        store = getattr(table, "data", None)
        if not isinstance(store, BulkRestorable):
            return False
        if self.flow_active:
            restore_in_bulk(cast(Any, self.app.tables).recovery, store, tp, recs)
            self.set_read_offset(tp, recs[-1].offset)
        return True

    async def _deliver_classic(self, tp: TP, recs: Sequence[Any], generation: int, start: int | None) -> None:
        """Faust's own per-message path, for topics that are not StreamLake sources.

        For an acked topic, *start* is where ReadProgress says this list
        begins: every hole from there is real (a head hole was read again
        first), so it joins Faust's gap tree and never blocks a commit.
        """
        callback = self.callback
        expected = start
        for record in recs:
            if self.app.consumer_generation_id != generation or not self.flow_active:
                if start is not None:
                    self.progress.forget([tp])  # the rest is read again after the next seek
                return
            offset = record.offset
            if start is None:
                r_offset = self.read_offset(tp)
                if r_offset is not None and offset < r_offset:
                    continue
            elif expected is not None and offset > expected:
                await self.add_gap(tp, expected, offset - 1)
            expected = offset + 1
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            await self.wait_first(callback(self.to_message(tp, record)), self.suspend_flow.wait())
            self.set_read_offset(tp, offset)


def _next_to_restore(recovery: Any, tp: TP) -> int | None:
    """The first offset of changelog partition *tp* that its table has not applied, or None if none follows it."""
    followed = followed_offsets(recovery, tp)
    if followed is None:
        return None  # not followed here: whoever gets it next seeks it when its recovery starts
    applied = followed[0].get(tp)
    return None if applied is None else max(applied + 1, 0)


class BatchTransport(aiokafka_driver.Transport):
    Consumer = BatchConsumer
    Producer = IdempotentProducer  # the workers' producer too (factory sets broker_producer to this transport)
