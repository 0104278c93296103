"""The one fence around Faust's and aiokafka's private names.

Every access to a private (underscore) member of faust-streaming, mode or
aiokafka lives in this module; ruff's SLF001 keeps it so for the rest of
``streamlake/``. Each name used here has a contract test
(``tests/unit/runtime/test_compat.py``) that fails when the pinned version
renames it or changes its shape, and :func:`check_versions` refuses to run
under any other version, whatever the processing guarantee.

Public seams are used where they exist: the batch consumer is registered as a
Faust transport by URL scheme (the ``faust.transports`` entry point in
setup.cfg), and services are asked ``should_stop`` rather than for their
stop events. What is left:

* :class:`ConsumerSeam` - Faust's aiokafka consumer with the private hooks
  StreamLake overrides (``_drain_messages``, ``_new_offset``,
  ``_filter_tps_with_pending_acks``) renamed to public methods, and the
  private state it reads or writes (read and committed offsets, the gap tree,
  the unacked set) behind named methods;
* :func:`raw_producer` - the aiokafka producer inside Faust's producer, for
  record-batch sends;
* :func:`store_in_rocksdb` - a row written into a RocksDB table store's
  per-partition database, as Faust's own ``__setitem__`` would;
* :func:`committed_offsets`, :func:`recovery_completed` - read-only state for
  metrics and readiness;
* :func:`fetch_cluster_metadata` - fresh cluster metadata from a plain
  aiokafka consumer;
* :class:`IdempotentProducer` - Faust's producer with aiokafka's idempotence on
  (Faust turns it on only for transactions), on a :class:`ReportingProducer`
  that reports failed sends, and :func:`renew_producer_id`, which gets an
  idempotent producer out of aiokafka's lost-sequence state;
* table recovery in bulk (table_store.py): :func:`changelog_table`,
  :func:`finish_recovery_if_caught_up` (what Faust's changelog reader does
  after each record), :func:`write_rocksdb_batch`, and
  :func:`start_tables_now` (the table manager's start without its fixed
  one-second sleep), :func:`set_fetch_limit` (smaller hand-overs while
  restoring);
* :class:`SeekSafeRecovery` - Faust's recovery without its crash when a
  rebalance adds changelog partitions to a round that is already seeking;
* :func:`set_fetch_max_wait` - a shorter broker-side wait for empty fetches
  than the 1.5 s Faust fixes;
* :func:`group_member_id` - the worker's group member id, which its watchdog
  leaves the group with when the worker is killed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

import aiokafka
import faust
from aiokafka.cluster import ClusterMetadata
from aiokafka.producer.transaction_manager import NO_PRODUCER_EPOCH, NO_PRODUCER_ID, PidAndEpoch
from faust.tables.recovery import RebalanceAgain, Recovery
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from mode.utils.futures import notify

from ..errors import ConfigError

__all__ = [
    "PINNED_VERSIONS", "check_versions", "ConsumerSeam", "raw_producer", "store_in_rocksdb",
    "is_rocksdb_store", "committed_offsets", "recovery_completed", "fetch_cluster_metadata",
    "ReportingProducer", "IdempotentProducer", "producer_id", "renew_producer_id",
    "changelog_table", "finish_recovery_if_caught_up", "start_tables_now", "write_rocksdb_batch",
    "set_fetch_limit", "SeekSafeRecovery", "seek_safe_recovery", "set_fetch_max_wait", "group_member_id",
]

#: The versions every name below was checked against (and tests/unit/runtime/test_compat.py pins).
PINNED_VERSIONS: Mapping[str, str] = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


def installed_versions() -> dict[str, str]:
    return {"faust-streaming": faust.__version__, "aiokafka": aiokafka.__version__}


def check_versions(found: Mapping[str, str] | None = None) -> None:
    """Refuse to run against any other Faust or aiokafka than the pinned ones (every guarantee)."""
    found = installed_versions() if found is None else found
    wrong = [f"{name} {PINNED_VERSIONS[name]} (found {found.get(name)})"
             for name in PINNED_VERSIONS if found.get(name) != PINNED_VERSIONS[name]]
    if wrong:
        pins = " ".join(f"{name}=={version}" for name, version in PINNED_VERSIONS.items())
        raise ConfigError("StreamLake's runtime reaches into Faust and aiokafka internals and is written against "
                          + ", ".join(wrong) + f"; install the pinned versions ({pins})")


class ConsumerSeam(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer, its private hooks renamed to public methods.

    A subclass overrides :meth:`drain_records`, :meth:`new_offset` and
    :meth:`tps_with_pending_acks`, and reaches Faust's private consumer state
    only through the methods below.
    """

    # -- hooks Faust calls, forwarded to public names ------------------------------------

    def _new_offset(self, tp: TP) -> int | None:
        return self.new_offset(tp)

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        return self.tps_with_pending_acks(topics)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by integration tests
        """Faust's drain loop with its per-record body replaced by :meth:`drain_records`."""
        try:
            while not (self.should_stop or fetcher.should_stop):
                await self.sleep(0)
                records, active = await self._wait_next_records(1.0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    await self.seek_after_flow_stop()
                    continue
                await self.drain_records(records, active)
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

    # -- Faust's behaviour, for subclasses to extend -------------------------------------

    def new_offset(self, tp: TP) -> int | None:
        """The offset to commit for *tp*: Faust's (the first run of acked offsets), never past an unacked head.

        Faust's own rule lets the lowest acked offset be one past the committed
        position, and skips the check when nothing (or 0) is committed: a record
        at the head still in flight -- re-read after a rebalance while a stale
        ack of the next one arrives -- would be committed past and never
        processed. Here the acked offsets (and known gaps) must start exactly
        at :meth:`commit_floor`, or nothing is committed for *tp* yet.
        """
        floor = self.commit_floor(tp)
        settled = self.lowest_settled_offset(tp)
        if settled is not None and (floor is None or settled > floor):
            return None
        return super()._new_offset(tp)

    def commit_floor(self, tp: TP) -> int | None:
        """Where *tp*'s next commit must start: its committed offset (None when unknown)."""
        return self.committed_offset(tp)

    def lowest_settled_offset(self, tp: TP) -> int | None:
        """The lowest offset of *tp* that is acked or a known gap (None when there is none)."""
        acked = self._acked.get(tp)
        gaps = self._gap.get(tp)
        lows = ([min(acked)] if acked else []) + ([min(iv.begin for iv in gaps)] if gaps else [])
        return min(lows) if lows else None

    def tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        """Partitions a commit considers, of *topics* (all when None)."""
        return iter(super()._filter_tps_with_pending_acks(topics))

    async def drain_records(self, records: Mapping[TP, list[Any]], active: Any) -> None:
        """Handle one fetched record map; *active* is the set of partitions still wanted (or None)."""
        raise NotImplementedError

    async def seek_after_flow_stop(self) -> None:
        try:
            await self.perform_seek()
        except Exception as exc:
            self.log.warning("exception performing seek when flow not active %r", exc)

    # -- Faust's private consumer state, by name -----------------------------------------

    def committed_offset(self, tp: TP) -> int | None:
        """The committed offset of *tp* as Kafka stores it (next to read), or None."""
        return self._committed_offset.get(tp)

    def read_offset(self, tp: TP) -> int | None:
        return self._read_offset[tp]

    def set_read_offset(self, tp: TP, offset: int) -> None:
        self._read_offset[tp] = offset

    async def add_gap(self, tp: TP, first: int, last: int) -> None:
        """Tell Faust's commit that offsets *first*..*last* of *tp* do not exist (compacted, transaction markers).

        Faust's ``_add_gap`` drops the committed offset itself from a gap (it
        clamps to committed + 1, as if committed were the last record read, not
        the next): a transaction marker right at the committed position could
        then never be committed past. So the gap tree is filled here, from the
        committed offset on.
        """
        committed = self._committed_offset.get(tp)
        if committed is not None:
            first = max(first, committed)
        if first <= last:
            gaps = self._gap[tp]
            gaps.addi(first, last + 1)  # intervaltree intervals exclude their end
            gaps.merge_overlaps()

    async def seek_partition(self, tp: TP, offset: int) -> None:
        await self._seek(tp, offset)

    def is_buffered(self, tp: TP) -> bool:
        """Whether records of *tp* fetched before a revoke may still be delivered."""
        return tp in self._buffered_partitions

    def to_message(self, tp: TP, record: Any) -> Any:
        return self._to_message(tp, record)

    def hold_acks(self, token: Any) -> None:
        """Put *token* in the unacked set: a revoke (``stream_wait_empty``) waits until it is released."""
        self._unacked_messages.add(token)

    def release_acks(self, token: Any) -> None:
        self._unacked_messages.discard(token)
        notify(self._waiting_for_ack)


def raw_producer(app: faust.App) -> aiokafka.AIOKafkaProducer:
    """The started aiokafka producer inside Faust's producer (record batches go straight to it)."""
    producer: aiokafka.AIOKafkaProducer = app.producer._ensure_producer()  # type: ignore[attr-defined]
    return producer


def is_rocksdb_store(store: Any) -> bool:
    return hasattr(store, "_db_for_partition")


def store_in_rocksdb(store: Any, partition: int, key: bytes, encoded: bytes) -> None:
    """Write *encoded* under *key* into the RocksDB database of *partition*, and index the key, as Faust does."""
    store._db_for_partition(partition).put(key, encoded)
    store._key_index[key] = partition


def committed_offsets(consumer: Any) -> Mapping[TP, int | None]:
    """The consumer's committed offsets (set by seeks and commits); empty before it exists."""
    offsets: Mapping[TP, int | None] = getattr(consumer, "_committed_offset", {})
    return offsets


def recovery_completed(app: Any) -> bool:
    """Whether table recovery has completed (without creating the recovery service early)."""
    recovery = getattr(getattr(app, "tables", None), "_recovery", None)
    return bool(recovery is not None and recovery.completed.is_set())


async def fetch_cluster_metadata(consumer: aiokafka.AIOKafkaConsumer) -> ClusterMetadata:
    """Fresh metadata of every topic (``consumer.topics()`` fetches it but does not keep it)."""
    cluster: ClusterMetadata = await consumer._client.fetch_all_metadata()
    return cluster



# -- the workers' idempotent producer ------------------------------------------------------


class ReportingProducer(aiokafka.AIOKafkaProducer):
    """aiokafka's producer that reports every send the broker or producer failed.

    :attr:`on_failed_send` (set once by the runtime's sender) is called with the
    producer, the error and the producer id the send was made under.
    """

    on_failed_send: ClassVar[Callable[[aiokafka.AIOKafkaProducer, BaseException, int], None] | None] = None

    async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        return self._reporting(await super().send(*args, **kwargs))

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        # A batch handed over is complete: closed, aiokafka sends it at once instead of letting
        # it linger (producer_linger) for records that only send() could still add. The batch
        # paths wait for these acknowledgements before they fetch again, so lingering was dead time.
        batch.close()
        return self._reporting(await super().send_batch(batch, topic, partition=partition))

    def _reporting(self, delivery: asyncio.Future[Any]) -> asyncio.Future[Any]:
        pid = producer_id(self)

        def settled(done: asyncio.Future[Any]) -> None:
            hook = ReportingProducer.on_failed_send
            if hook is not None and not done.cancelled() and (exc := done.exception()) is not None:
                hook(self, exc, pid)

        delivery.add_done_callback(settled)
        return delivery


class IdempotentProducer(aiokafka_driver.Producer):
    """Faust's producer with aiokafka's idempotence (acks=all) on, on a :class:`ReportingProducer`."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}

    @property
    def _producer_type(self) -> type[aiokafka.AIOKafkaProducer]:
        return ReportingProducer


def producer_id(producer: aiokafka.AIOKafkaProducer) -> int:
    """The producer id an idempotent producer writes under; -1 without idempotence or while it asks for one."""
    txn = producer._txn_manager
    return NO_PRODUCER_ID if txn is None else int(txn.producer_id)


def renew_producer_id(producer: aiokafka.AIOKafkaProducer, seen_pid: int) -> bool:
    """Make an idempotent (not transactional) producer ask for a new producer id; sequences restart at 0.

    aiokafka 0.14 gives a batch its sequence number when it leaves the
    accumulator, also when the batch then expires there without a leader: the
    broker never sees that number, and every later batch of the partition is
    refused with ``OutOfOrderSequenceNumber`` for the life of the producer id.
    A new id (what Kafka's Java producer does for an idempotent producer)
    starts every partition again at 0. Batches already sent keep their id and
    sequence, so the broker still deduplicates their retries. The sender asks
    for the id (``InitProducerId``) before its next drain. Returns False, doing
    nothing, when *seen_pid* is no longer the current id (renewed already).
    """
    txn = producer._txn_manager
    if txn is None or txn.transactional_id is not None or seen_pid == NO_PRODUCER_ID or txn.producer_id != seen_pid:
        return False
    txn._pid_and_epoch = PidAndEpoch(NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
    txn._pid_waiter = asyncio.get_running_loop().create_future()
    txn._sequence_numbers.clear()
    return True


# -- table recovery and start-up (issue 15) ----------------------------------------------


def changelog_table(app: Any, topic: str) -> Any | None:
    """The table whose changelog topic is *topic*, or None."""
    table: Any | None = app.tables._changelogs.get(topic)
    return table


def finish_recovery_if_caught_up(recovery: Any) -> bool:
    """End active recovery when every active changelog partition reached its highwater, as Faust's reader does.

    Faust checks this only when a record reaches its own changelog reader, so
    records applied in bulk (which never reach it) must check it themselves.
    Returns whether recovery ended now.
    """
    if recovery.in_recovery and not recovery.need_recovery():
        recovery.flush_buffers()
        recovery._set_recovery_ended()
        recovery.signal_recovery_end.set()
        return True
    return False


async def start_tables_now(manager: Any) -> None:
    """Start the table manager as Faust does, without its fixed one-second sleep first."""
    await manager._update_channels()
    await manager.recovery.start()


def write_rocksdb_batch(store: Any, partition: int, items: Iterable[tuple[bytes, bytes | None]]) -> None:
    """Write (key, value) pairs into the RocksDB database of *partition* in one write batch; None deletes."""
    import rocksdict  # only with the rocksdb extra; memory:// never gets here

    batch = rocksdict.WriteBatch(raw_mode=True)
    for key, value in items:
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
    store._db_for_partition(partition).write(batch)


def set_fetch_limit(consumer: Any, max_records: int | None) -> None:
    """Hand at most *max_records* fetched records to the drain loop per step (None: all that were fetched).

    Faust's consumer thread reads the limit from the aiokafka consumer at every hand-over.
    """
    consumer._thread._ensure_consumer()._max_poll_records = max_records


class SeekSafeRecovery(Recovery):
    """Faust's table recovery without its crash on changelog partitions whose start offset is not built yet.

    A rebalance that lands while a recovery round is past its last wait (the
    changelog caught up at the same moment) leaves that round running on the
    new assignment: the partitions the rebalance added have no start offset
    yet (``None``, filled in by the next round), and Faust's ``_seek_offsets``
    hands that None to aiokafka, which raises "Offset must be a positive
    integer" and takes the worker down. Here the stale round ends the way
    Faust's own waits end one (RebalanceAgain: the next round starts at once
    and builds every offset); an offset still unknown outside that race is
    read from the partition's start, as Faust does for -1.
    """

    async def _seek_offsets(self, consumer: Any, tps: Any, offsets: Any, title: str) -> None:
        if self.signal_recovery_start.is_set():
            raise RebalanceAgain()
        for tp in tps:
            if offsets.get(tp) is None:
                offsets[tp] = -1
        await super()._seek_offsets(consumer, tps, offsets, title)

    async def _build_highwaters(self, consumer: Any, tps: Any, destination: Any, title: str) -> None:
        # Under exactly_once Faust takes a changelog's highwater from the last stable
        # offset its past fetches saw: unknown (so -1: "empty") until a fetch of that
        # partition returned, which made a restarted worker restore nothing at all.
        if self.app.in_transaction:
            consumer = ListedHighwaters(consumer)
        await super()._build_highwaters(consumer, tps, destination, title)


class ListedHighwaters:
    """A Faust consumer whose highwaters come from a ListOffsets request.

    Sent with the consumer's isolation level, so under read_committed the
    broker answers with each partition's last stable offset.
    """

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.consumer, name)

    async def highwaters(self, *tps: TP) -> Mapping[TP, int]:
        thread = self.consumer._thread
        listed: Mapping[TP, int] = await thread.call_thread(thread._ensure_consumer().end_offsets, list(tps))
        return listed


def seek_safe_recovery(manager: Any) -> SeekSafeRecovery:
    """The table manager's recovery service, made once as Faust makes it, but a :class:`SeekSafeRecovery`."""
    if manager._recovery is None:
        manager._recovery = SeekSafeRecovery(manager.app, manager, beacon=manager.beacon, loop=manager.loop)
    recovery: SeekSafeRecovery = manager._recovery
    return recovery


def group_member_id(consumer: Any) -> str | None:
    """The member id the group coordinator gave the worker's consumer at its last join (None before)."""
    thread = getattr(consumer, "_thread", None)
    kafka_consumer = getattr(thread, "_consumer", None)
    coordinator = getattr(kafka_consumer, "_coordinator", None)
    member_id = getattr(coordinator, "member_id", None)
    return member_id if isinstance(member_id, str) and member_id else None


def set_fetch_max_wait(consumer: Any, wait_ms: int) -> None:
    """Let the broker hold an empty fetch at most *wait_ms* (Faust fixes 1.5 s, aiokafka reads it per fetch).

    Requests on a broker connection are answered in order, so a held fetch
    also holds every request queued behind it on that connection, such as the
    offset look-ups of a seek.
    """
    consumer._thread._ensure_consumer()._fetcher._fetch_max_wait_ms = wait_ms
