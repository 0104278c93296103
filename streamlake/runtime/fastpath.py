"""Batch fast path: StreamLake's source topics leave Faust's drain loop in batches.

Faust's per-record path (message objects, the conductor, channel queues,
events, acks under a lock) costs about 220-250 µs a record. This module swaps
in a Consumer whose drain loop hands every fetched batch of a *fast* topic
straight to its stream binding, and leaves every other topic (changelogs,
DLQ agents, anything user-defined) on Faust's normal per-message path.

What it keeps from Faust: the consumer group, the assignor, tables and their
changelogs, the commit timer and the commit-after-ack rule. A batch's
offsets are put on Faust's acked lists only after every send of the batch has
been acknowledged, and only if no rebalance happened meanwhile; a token in
the unacked set makes a revoke wait for a batch in flight. Buffered table
state is flushed before each commit (see :meth:`BatchConsumer.force_commit`).

It reaches into Faust internals (``_drain_messages``, ``_acked``,
``_acked_index``, ``_read_offset``, ``_add_gap``, ``_unacked_messages``), so it
is pinned to the Faust version below and refuses to run under another.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Mapping

import faust
import orjson
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from mode.utils.futures import notify

from ..core.records import ConsumedRecord
from ..errors import ConfigError

if TYPE_CHECKING:
    from .binding import StreamBinding

log = logging.getLogger("streamlake.fastpath")

PINNED_FAUST_VERSION = "0.15.3"

def check_faust_version(version: str = faust.__version__) -> None:
    if version != PINNED_FAUST_VERSION:
        raise ConfigError(
            f"the batch fast path is written against faust-streaming {PINNED_FAUST_VERSION}, found {version}; "
            f"pin faust-streaming=={PINNED_FAUST_VERSION} or set STREAMLAKE_FAST_PATH=0"
        )


class _BatchToken:
    """Stands in the consumer's unacked set while a batch is in flight, so a revoke waits for it."""

    __slots__ = ("acked", "refcount", "__weakref__")

    def __init__(self) -> None:
        self.acked = False
        self.refcount = 1


class BatchConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka Consumer with a batch drain loop for StreamLake's source topics."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._committing = False
        #: (generation, spans) of batches that finished while a commit was flushing state.
        self._deferred_acks: list[tuple[int, Mapping[Any, tuple[int, int]]]] = []

    def fast_bindings(self) -> Mapping[str, "StreamBinding"]:
        return getattr(self.app, "fast_bindings", {})

    async def force_commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        """Flush buffered state and counters to the changelog, then let Faust commit.

        A batch that finishes while this runs has its state in the next flush,
        so its ack waits until this commit has computed its offsets: a
        committed offset never runs ahead of the state written for it.
        """
        self._committing = True
        try:
            for binding in {id(b): b for b in self.fast_bindings().values()}.values():
                await binding.flush_state()
            return await super().force_commit(topics, start_new_transaction=start_new_transaction)
        finally:
            self._committing = False
            deferred, self._deferred_acks = self._deferred_acks, []
            for generation, spans in deferred:
                if generation == self.app.consumer_generation_id:
                    self._bulk_ack(spans)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by integration tests
        if not self.fast_bindings():
            return await super()._drain_messages(fetcher)
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                await self.sleep(0)
                records, active = await self._wait_next_records(1.0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    await self._seek_after_flow_stop()
                    continue
                await self._drain_batch(records, active)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag("CONSUMER_FETCHING")

    async def perform_seek(self) -> None:
        """Seek to committed offsets, and a fast topic's uncommitted partitions to their beginning.

        aiokafka's ``seek_to_committed`` leaves a partition without a committed
        offset where its fetcher stood. Records fetched and then dropped by a
        rebalance would be skipped there, and Faust's commit computation would
        later commit past them. Going back to the beginning is what
        ``auto_offset_reset=earliest`` means for such a partition; whatever was
        already processed comes back as duplicates and is dropped.
        """
        await super().perform_seek()
        fast = self.fast_bindings()
        uncommitted = [tp for tp in self.assignment() if tp.topic in fast and not self._committed_offset.get(tp)]
        if uncommitted:
            await self._thread.seek_to_beginning(*(self._new_topicpartition(tp.topic, tp.partition)
                                                   for tp in uncommitted))
            for tp in uncommitted:
                self._read_offset[tp] = None

    async def _seek_after_flow_stop(self) -> None:
        try:
            await self.perform_seek()
        except Exception as exc:
            self.log.warning("exception performing seek when flow not active %r", exc)

    async def _drain_batch(self, records: Mapping[Any, list], active: Any) -> None:
        generation = self.app.consumer_generation_id
        fast = self.fast_bindings()
        by_binding: dict[Any, list[ConsumedRecord]] = {}
        spans: dict[Any, tuple[int, int]] = {}
        monitor = self.app.monitor
        now = time.monotonic()
        for tp, recs in records.items():
            if not recs or (active is not None and tp not in active and tp not in self._buffered_partitions):
                continue
            binding = fast.get(tp.topic)
            if binding is None:
                await self._deliver_classic(tp, recs, generation)
                continue
            fresh = await self._track_read(tp, recs)
            if not fresh:
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            if monitor is not None and monitor.stream_inbound_time is not None:
                monitor.stream_inbound_time[tp] = now
            by_binding.setdefault(binding, []).extend(fresh)  # aiokafka's records, as they are
            spans[tp] = (fresh[0].offset, fresh[-1].offset)
        if not by_binding:
            return
        token = _BatchToken()
        self._unacked_messages.add(token)  # type: ignore[arg-type]
        try:
            for binding, batch in by_binding.items():
                await binding.handle_batch_until_done(batch)
            if self.app.consumer_generation_id != generation:
                # A rebalance happened meanwhile: these records will be read again by
                # their owner. Their state is already buffered, so they come back as
                # duplicates and are dropped, never forwarded twice... nor lost.
                return
            if self._committing:
                self._deferred_acks.append((generation, spans))
            else:
                self._bulk_ack(spans)
        finally:
            token.acked = True
            self._unacked_messages.discard(token)  # type: ignore[arg-type]
            notify(self._waiting_for_ack)

    async def _track_read(self, tp: Any, recs: list) -> list:
        """Keep Faust's read-offset and gap bookkeeping; drop records already read.

        For fast topics the read offset is the next offset expected (Faust sets
        it to the committed position on assignment, which means the same).
        """
        expected = self._read_offset[tp]
        if expected is not None:
            recs = [r for r in recs if r.offset >= expected]
            if not recs:
                return recs
        for r in recs:
            if expected is not None and r.offset > expected:
                # offsets skipped by compaction or transaction markers must not block commits
                await self._add_gap(tp, expected, r.offset - 1)
            expected = r.offset + 1
        self._read_offset[tp] = expected
        return recs

    def _bulk_ack(self, spans: Mapping[Any, tuple[int, int]]) -> None:
        for tp, (first, last) in spans.items():
            committed = self._committed_offset[tp]
            if committed is not None and first < committed:
                first = committed
            if first > last:
                continue
            offsets = range(first, last + 1)
            index = self._acked_index[tp]
            fresh = [o for o in offsets if o not in index] if index else list(offsets)
            index.update(fresh)
            self._acked[tp].extend(fresh)
            self._n_acked += len(fresh)

    async def _deliver_classic(self, tp: Any, recs: list, generation: int) -> None:
        """Faust's own per-message path, for topics that are not StreamLake sources."""
        callback = self.callback
        for record in recs:
            if self.app.consumer_generation_id != generation or not self.flow_active:
                return
            offset = record.offset
            r_offset = self._read_offset[tp]
            if r_offset is None or offset >= r_offset:
                gap = offset - (r_offset or 0)
                if gap > 1 and r_offset and self.app.topics.acks_enabled_for(record.topic):
                    await self._add_gap(tp, r_offset + 1, offset)
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                await self.wait_first(callback(self._to_message(tp, record)), self.suspend_flow.wait())
                self._read_offset[tp] = offset


class BatchTransport(aiokafka_driver.Transport):
    Consumer = BatchConsumer


async def write_table_rows(app: faust.App, table: Any, rows: Mapping[bytes, tuple[int, Any]]) -> None:
    """Store rows in *table* and write them to its changelog; return once the broker acknowledged them.

    *rows* maps a key to (partition, value). Faust's own ``table[key] = value``
    costs a coroutine, a future and a buffered send per key, and its RocksDB
    store needs a current event to know the partition; here each partition's
    rows go out as record batches and the partition is explicit. The
    changelog records are exactly what Faust writes (raw key, JSON value), so
    recovery and standbys read them as usual.
    """
    if not rows:
        return
    store = table.data
    rocksdb = hasattr(store, "_db_for_partition")
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, (partition, value) in rows.items():
        encoded = orjson.dumps(value)
        if rocksdb:  # keep RocksDB's per-partition databases and key index as Faust would
            store._db_for_partition(partition).put(key, encoded)
            store._key_index[key] = partition
        else:
            store[key] = value
        by_partition.setdefault(partition, []).append((key, encoded))
    producer = app.producer._ensure_producer()
    topic = table.changelog_topic.get_topic_name()
    pending: list[tuple[int, asyncio.Future]] = []
    for partition, items in by_partition.items():
        batch = producer.create_batch()
        for key, value in items:
            if batch.append(key=key, value=value, timestamp=None, headers=[]) is None:
                pending.append((partition, await producer.send_batch(batch, topic, partition=partition)))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None, headers=[])
        pending.append((partition, await producer.send_batch(batch, topic, partition=partition)))
    for partition, future in pending:
        meta = await future
        if rocksdb:  # lets a restarted worker replay only the changelog's tail
            store.set_persisted_offset(TP(topic, partition), meta.offset)
