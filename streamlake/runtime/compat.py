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
  aiokafka consumer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any

import aiokafka
import faust
from aiokafka.cluster import ClusterMetadata
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from mode.utils.futures import notify

from ..errors import ConfigError

__all__ = [
    "PINNED_VERSIONS", "check_versions", "ConsumerSeam", "raw_producer", "store_in_rocksdb",
    "is_rocksdb_store", "committed_offsets", "recovery_completed", "fetch_cluster_metadata",
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
        """The offset Faust's commit would commit for *tp* (first gap in the acked list)."""
        return super()._new_offset(tp)

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
        """Tell Faust's commit that offsets *first*..*last* of *tp* do not exist (compacted, transaction markers)."""
        await self._add_gap(tp, first, last)

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

