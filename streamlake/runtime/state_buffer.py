"""A stream's table state between batches: changed key states, counter deltas, processed marks.

Invariant: state changed by a batch is in the buffer from the moment the
batch is handled until :meth:`StateBuffer.flush` has written it to the tables
and the broker acknowledged the changelog records. The fast path flushes
before every offset commit (see checkpoint.py), the classic path after every
batch, exactly_once inside the open transaction. A failed write puts nothing
back into the commit: offsets wait while the write is retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import faust
import orjson
from faust.types import TP

from ..core.pipeline import BatchResult, StreamCounters
from ..core.sequence import KeyState, decode_key_state, encode_key_state
from ..partitioner import cached_partition_for_key
from .compat import is_rocksdb_store, raw_producer, store_in_rocksdb
from .declarations import StreamTopics
from .sender import Backoff
from .table_store import SequenceMemoryStore

__all__ = ["StateBuffer", "TableRows", "write_table_rows", "write_until_acknowledged"]

log = logging.getLogger("streamlake.ingest")

#: key -> (partition, value); a key is bytes, or str for a table keyed by str (its changelog key is UTF-8)
TableRows = Mapping[Any, tuple[int, Any]]
RowWriter = Callable[[Any, TableRows], Awaitable[None]]


class StateBuffer:
    """Unflushed per-key states, per-partition counter deltas and processed marks of one stream."""

    def __init__(self, topics: StreamTopics, write_rows: RowWriter) -> None:
        self.topics = topics
        self.write_rows = write_rows
        self._dirty_states: dict[bytes, KeyState] = {}
        self._dirty_counters: dict[int, StreamCounters] = {}
        # Per partition, the highest offset processed of each input topic: the
        # mark below which a record is a re-read (see process_batch).
        self._processed: dict[int, dict[str, int]] = {}

    def load_state(self, key: bytes) -> KeyState | None:
        state = self._dirty_states.get(key)
        if state is not None:
            return state
        raw = self.topics.table.get(key)
        return decode_key_state(raw) if raw else None

    def state_loader(self, partition: int) -> Callable[[bytes], KeyState | None]:
        """:meth:`load_state` for the keys whose home is *partition* (the only ones a batch of it loads).

        With the memory store it reads that partition's rows directly: through
        Faust's table a lookup passes mapping layers and tries every partition,
        and a new key's miss raises KeyError on the way; that was an eighth of a
        worker's time.
        """
        store = self.topics.table.data
        if not isinstance(store, SequenceMemoryStore):
            return self.load_state
        dirty = self._dirty_states
        rows = store.data.rows_of(partition)

        def load(key: bytes) -> KeyState | None:
            state = dirty.get(key)
            if state is not None:
                return state
            raw = rows.get(key)
            return decode_key_state(raw) if raw else None

        return load

    def processed_of(self, partition: int) -> dict[str, int]:
        marks = self._processed.get(partition)
        if marks is None:
            row = self.topics.counters_table.get(self.topics.counter_keys[partition]) or {}
            marks = self._processed[partition] = {t: int(o) for t, o in row.get("processed", {}).items()}
        return marks

    def add(self, partition: int, result: BatchResult, last_offsets: Mapping[str, int]) -> None:
        """Keep a batch's changed key states, its partition's counter deltas and its processed marks."""
        self._dirty_states.update(result.states)
        pending = self._dirty_counters.get(partition)
        if pending is None:
            self._dirty_counters[partition] = pending = StreamCounters()
        pending.add(result.counters)
        marks = self.processed_of(partition)
        for topic, offset in last_offsets.items():
            if offset > marks.get(topic, -1):
                marks[topic] = offset

    def discard(self, partitions: Iterable[int]) -> None:
        """Forget the states, counter deltas and marks buffered for *partitions*, which were revoked.

        What is still buffered for a revoked partition after the commit that
        revocation runs came from batches whose offsets were not committed
        (a batch that finished during or after that commit). The partition's
        next owner reads those records again and decides them from the
        changelog. Flushed later, these states would land in the changelog
        after, and over, the states the next owner writes: a later owner
        restoring from it would count records again as new.
        """
        revoked = set(partitions)
        if not revoked:
            return
        count = self.topics.partitions
        self._dirty_states = {key: state for key, state in self._dirty_states.items()
                              if cached_partition_for_key(key, count) not in revoked}
        for partition in revoked:
            self._dirty_counters.pop(partition, None)
            self._processed.pop(partition, None)

    def take(self) -> tuple[dict[bytes, tuple[int, Any]], dict[bytes, tuple[int, Any]]]:
        """Empty the buffer into rows to write, as key -> (partition, value), for the state and counters tables."""
        states, self._dirty_states = self._dirty_states, {}
        counters, self._dirty_counters = self._dirty_counters, {}
        partitions = self.topics.partitions
        state_rows = {key: (cached_partition_for_key(key, partitions), encode_key_state(state))
                      for key, state in states.items()}
        counter_rows: dict[bytes, tuple[int, Any]] = {}
        for partition, delta in counters.items():
            ckey = self.topics.counter_keys[partition]
            stored = StreamCounters.from_dict(self.topics.counters_table.get(ckey) or {})
            stored.add(delta)
            counter_rows[ckey] = (partition, {**stored.to_dict(), "processed": dict(self.processed_of(partition))})
        return state_rows, counter_rows

    async def flush(self) -> None:
        """Write buffered state and counters (one changelog record per dirty key), acknowledged.

        On failure the write is retried with backoff: offsets are not
        committed meanwhile, so nothing is lost.
        """
        state_rows, counter_rows = self.take()
        name = self.topics.stream.name
        await write_until_acknowledged(self.write_rows, self.topics.table, state_rows, f"{name} state")
        await write_until_acknowledged(self.write_rows, self.topics.counters_table, counter_rows, f"{name} counters")

    def flush_in_transaction(self) -> None:
        """exactly_once: write through Faust's tables so the changelog joins the open transaction."""
        state_rows, counter_rows = self.take()
        for table, rows in ((self.topics.table, state_rows), (self.topics.counters_table, counter_rows)):
            for key, (_, value) in rows.items():
                table[key] = value


async def write_until_acknowledged(write_rows: RowWriter, table: Any, rows: TableRows, what: str) -> None:
    """Write *rows* with *write_rows*; on failure log it and retry with backoff until the broker acknowledged them.

    Callers hold back their offset commits or acks meanwhile, so nothing is lost.
    """
    backoff = Backoff()
    while rows:
        try:
            await write_rows(table, rows)
            return
        except Exception as exc:
            log.error("writing %s to its changelog failed (%s: %s); retrying in %.1fs — offsets and acks wait, "
                      "nothing is lost", what, type(exc).__name__, exc, backoff.delay)
            await backoff.wait()


async def write_table_rows(app: faust.App, table: Any, rows: TableRows) -> None:
    """Store rows in *table* and write them to its changelog; return once the broker acknowledged them.

    *rows* maps a key to (partition, value). Faust's own ``table[key] = value``
    costs a coroutine, a future and a buffered send per key, and its RocksDB
    store needs a current event to know the partition; here each partition's
    rows go out as record batches and the partition is explicit. The
    changelog records are exactly what Faust writes (raw key; a bytes value as
    it is, the sequence table's binary state; any other value as JSON), so
    recovery and standbys read them as usual.
    """
    if not rows:
        return
    store = table.data
    rocksdb = is_rocksdb_store(store)
    partitioned = isinstance(store, SequenceMemoryStore)
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, (partition, value) in rows.items():
        encoded = value if isinstance(value, bytes) else orjson.dumps(value)
        raw_key = key.encode() if isinstance(key, str) else key
        if rocksdb:  # keep RocksDB's per-partition databases and key index as Faust would
            store_in_rocksdb(store, partition, raw_key, encoded)
        elif partitioned:
            store.data.rows_of(partition)[raw_key] = encoded
        else:
            store[key] = value
        by_partition.setdefault(partition, []).append((raw_key, encoded))
    producer = raw_producer(app)
    topic = table.changelog_topic.get_topic_name()
    pending: list[tuple[int, asyncio.Future[Any]]] = []
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
        if rocksdb or partitioned:  # lets a restart (rocksdb) or a standby taking over resume from here
            store.set_persisted_offset(TP(topic, partition), meta.offset)
