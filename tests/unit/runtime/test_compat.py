"""Contract tests for every private Faust/mode/aiokafka name that runtime/compat.py touches.

Each test pins a name's shape (it exists, its parameters, what it holds) in
the installed, pinned versions; a release that renames or reshapes one of
them fails here before it fails in a worker.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import defaultdict
from types import SimpleNamespace
from weakref import WeakSet

import aiokafka
import faust
import pytest
from aiokafka.cluster import ClusterMetadata
from aiokafka.consumer.group_coordinator import GroupCoordinator
from faust.exceptions import NotReady
from faust.stores import rocksdb as faust_rocksdb
from faust.tables.manager import TableManager
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from streamlake.errors import ConfigError
from streamlake.runtime import compat

Consumer = aiokafka_driver.Consumer


def params(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_pinned_versions_are_the_installed_ones() -> None:
    assert compat.installed_versions() == dict(compat.PINNED_VERSIONS)
    compat.check_versions()  # does not raise


@pytest.mark.parametrize("package", ["faust-streaming", "aiokafka"])
def test_another_version_of_either_package_is_refused(package: str) -> None:
    found = {**compat.PINNED_VERSIONS, package: "99.0.0"}
    with pytest.raises(ConfigError, match=f"{package} .*found 99.0.0"):
        compat.check_versions(found)


@pytest.mark.parametrize(("name", "expected", "is_async"), [
    ("_new_offset", ["self", "tp"], False),
    ("_filter_tps_with_pending_acks", ["self", "topics"], False),
    ("_drain_messages", ["self", "fetcher"], True),
    ("_wait_next_records", ["self", "timeout"], True),
    ("_seek", ["self", "partition", "offset"], True),
    ("_to_message", ["self", "tp", "record"], False),
])
def test_consumer_private_methods_keep_their_shape(name: str, expected: list[str], is_async: bool) -> None:
    method = getattr(Consumer, name)
    assert params(method) == expected
    assert inspect.iscoroutinefunction(method) is is_async


def test_consumer_seam_overrides_exactly_the_hooks_faust_calls() -> None:
    # The seam's forwarding methods must shadow methods Faust's consumer really has.
    for hook in ("_new_offset", "_filter_tps_with_pending_acks", "_drain_messages"):
        assert hook in vars(compat.ConsumerSeam)
        assert callable(getattr(Consumer, hook))


@pytest.fixture
def consumer() -> Consumer:
    app = faust.App("compat-contract", broker="kafka://127.0.0.1:1", autodiscover=False)
    return app.consumer


def test_consumer_private_state_keeps_its_shape(consumer: Consumer) -> None:
    tp = TP("t", 0)
    assert isinstance(consumer._committed_offset, defaultdict) and consumer._committed_offset[tp] is None
    assert isinstance(consumer._read_offset, defaultdict) and consumer._read_offset[tp] is None
    assert isinstance(consumer._unacked_messages, WeakSet)
    assert isinstance(consumer._buffered_partitions, set)
    assert consumer._waiting_for_ack is None  # a future only while someone waits for acks
    assert isinstance(consumer._gap, defaultdict)  # known gaps: intervaltree.IntervalTree per partition
    assert type(consumer._gap[tp]).__name__ == "IntervalTree"
    assert isinstance(consumer._acked, defaultdict) and consumer._acked[tp] == []
    assert isinstance(consumer._acked_index, defaultdict) and consumer._acked_index[tp] == set()


def test_consumer_seam_reads_and_writes_that_state(consumer: Consumer) -> None:
    seam = compat.ConsumerSeam.__new__(compat.ConsumerSeam)
    seam.__dict__.update(consumer.__dict__)
    tp = TP("t", 1)
    assert seam.committed_offset(tp) is None and seam.read_offset(tp) is None
    seam.set_read_offset(tp, 7)
    assert seam.read_offset(tp) == 7
    token = type("Token", (), {"__weakref__": None, "acked": False, "refcount": 1})()
    seam.hold_acks(token)
    assert token in seam._unacked_messages
    seam.release_acks(token)
    assert token not in seam._unacked_messages
    assert seam.is_buffered(tp) is False
    assert compat.committed_offsets(seam) is seam._committed_offset


def test_faust_producer_exposes_its_aiokafka_producer_only_once_started() -> None:
    assert params(aiokafka_driver.Producer._ensure_producer) == ["self"]
    app = faust.App("compat-producer", broker="kafka://127.0.0.1:1", autodiscover=False)
    with pytest.raises(NotReady):
        compat.raw_producer(app)
    # what the record-batch path calls on it
    assert params(aiokafka.AIOKafkaProducer.create_batch) == ["self"]
    assert params(aiokafka.AIOKafkaProducer.send_batch) == ["self", "batch", "topic", "partition"]


def test_rocksdb_store_keeps_per_partition_databases_and_a_key_index() -> None:
    assert params(faust_rocksdb.Store._db_for_partition) == ["self", "partition"]
    assert "_key_index" in faust_rocksdb.Store.__annotations__
    assert compat.is_rocksdb_store(faust_rocksdb.Store) is True
    assert compat.is_rocksdb_store({}) is False


def test_table_manager_keeps_recovery_in_an_optional_attribute() -> None:
    assert TableManager._recovery is None  # created lazily by the public ``recovery`` property
    assert isinstance(TableManager.__dict__["recovery"], property)
    app = faust.App("compat-recovery", broker="kafka://127.0.0.1:1", autodiscover=False)
    assert compat.recovery_completed(app) is False
    app.tables.recovery.completed.set()
    assert compat.recovery_completed(app) is True


async def test_aiokafka_consumer_keeps_a_client_that_fetches_all_metadata() -> None:
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
    assert inspect.iscoroutinefunction(consumer._client.fetch_all_metadata)
    assert params(consumer._client.fetch_all_metadata) == []
    assert params(ClusterMetadata.partitions_for_topic) == ["self", "topic"]
    await asyncio.sleep(0)  # the consumer binds to the running loop


async def test_the_group_member_id_sits_in_the_consumer_threads_aiokafka_coordinator() -> None:
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", group_id="g")
    assert "_coordinator" in vars(consumer)  # a GroupCoordinator once the consumer started
    assert "self.member_id = " in inspect.getsource(GroupCoordinator.__init__)
    assert "self._consumer = " in inspect.getsource(aiokafka_driver.AIOKafkaConsumerThread)
    joined = SimpleNamespace(_consumer=SimpleNamespace(_coordinator=SimpleNamespace(member_id="m-1")))
    assert compat.group_member_id(SimpleNamespace(_thread=joined)) == "m-1"
    not_joined = SimpleNamespace(_consumer=SimpleNamespace(_coordinator=SimpleNamespace(member_id="")))
    assert compat.group_member_id(SimpleNamespace(_thread=not_joined)) is None
    assert compat.group_member_id(SimpleNamespace(_thread=None)) is None  # before the consumer thread exists
    await asyncio.sleep(0)  # the consumer binds to the running loop


def test_fetchers_and_consumers_answer_should_stop() -> None:
    # The drain loop asks services should_stop (mode's public property) instead of their _stopped events.
    from mode import Service
    assert isinstance(inspect.getattr_static(Service, "should_stop"), property)
    assert issubclass(Consumer, Service)


async def test_the_workers_producer_is_idempotent_and_reports_failed_sends() -> None:
    assert params(aiokafka_driver.Producer._settings_extra) == ["self"]
    assert isinstance(aiokafka_driver.Producer.__dict__["_producer_type"], property)
    app = faust.App("compat-idempotent", broker="kafka://127.0.0.1:1", autodiscover=False)
    faust_producer = compat.IdempotentProducer(app.transport)
    producer = faust_producer._new_producer()
    assert isinstance(producer, compat.ReportingProducer)
    assert producer._txn_manager is not None and producer._txn_manager.transactional_id is None
    assert compat.producer_id(producer) == -1  # no id until the sender asks for one
    # a failed delivery reaches the hook with the producer id it was sent under
    seen: list[tuple[object, BaseException, int]] = []
    hook = compat.ReportingProducer.on_failed_send
    compat.ReportingProducer.on_failed_send = lambda p, e, pid: seen.append((p, e, pid))
    try:
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        producer._reporting(delivery)
        refused = aiokafka.errors.OutOfOrderSequenceNumber()
        delivery.set_exception(refused)
        await asyncio.sleep(0)
    finally:
        compat.ReportingProducer.on_failed_send = hook
    assert seen == [(producer, refused, -1)]


async def test_renewing_the_producer_id_restarts_every_sequence_once() -> None:
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", enable_idempotence=True)
    txn = producer._txn_manager
    tp = aiokafka.TopicPartition("t", 0)
    txn.set_pid_and_epoch(7, 0)
    txn.increment_sequence_number(tp, 5)
    assert compat.producer_id(producer) == 7
    assert compat.renew_producer_id(producer, 6) is False  # sent under an older id: renewed already
    assert compat.renew_producer_id(producer, 7) is True
    assert compat.producer_id(producer) == -1 and not txn.has_pid() and txn.sequence_number(tp) == 0
    assert compat.renew_producer_id(producer, 7) is False
    txn.set_pid_and_epoch(8, 0)  # what the sender's InitProducerId does next: a fresh waiter accepts it
    assert compat.producer_id(producer) == 8
    transactional = aiokafka.AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", transactional_id="x")
    transactional._txn_manager.set_pid_and_epoch(3, 0)
    assert compat.renew_producer_id(transactional, 3) is False  # transactions fence, they are never renewed


def _seam_with_acks(consumer: Consumer, cls: type = compat.ConsumerSeam, committed: int | None = 651,
                    acked: tuple[int, ...] = (652, 653)) -> compat.ConsumerSeam:
    seam = cls.__new__(cls)
    seam.__dict__.update(consumer.__dict__)
    tp = TP("t", 0)
    if committed is not None:
        seam._committed_offset[tp] = committed
    seam._acked[tp] = list(acked)
    seam._acked_index[tp] = set(acked)
    return seam


def test_faust_commits_past_one_unacked_record_at_the_head(consumer: Consumer) -> None:
    # Why the seam guards new_offset: committed 651 (the next to read), 651 still in
    # flight, 652 and 653 acked -- Faust's own rule commits 654 and skips 651.
    seam = _seam_with_acks(consumer)
    assert Consumer._new_offset(seam, TP("t", 0)) == 654


def test_the_seam_commits_nothing_while_the_head_record_is_unacked(consumer: Consumer) -> None:
    tp = TP("t", 0)
    seam = _seam_with_acks(consumer)
    assert seam.new_offset(tp) is None
    seam._acked[tp].insert(0, 651)
    seam._acked_index[tp].add(651)
    assert seam.new_offset(tp) == 654


def test_a_known_gap_at_the_head_settles_it(consumer: Consumer) -> None:
    tp = TP("t", 0)
    seam = _seam_with_acks(consumer)
    asyncio.run(seam.add_gap(tp, 640, 651))  # e.g. a transaction marker at 651, verified by a re-read
    assert [(iv.begin, iv.end) for iv in seam._gap[tp]] == [(651, 652)]  # nothing below the committed offset
    assert seam.new_offset(tp) == 654


def test_without_a_committed_offset_the_batch_consumer_starts_where_its_seek_did(consumer: Consumer) -> None:
    from streamlake.core.progress import ReadProgress
    from streamlake.runtime.fastpath import BatchConsumer

    tp = TP("t", 0)
    seam = _seam_with_acks(consumer, BatchConsumer, committed=None, acked=(1, 2))
    seam.__dict__["app"] = type("App", (), {"fast_bindings": {}})()
    seam.progress = ReadProgress()
    assert seam.new_offset(tp) is None  # no known start: commit nothing
    seam.progress.establish(tp, 0)
    assert seam.new_offset(tp) is None  # offset 0 not acked yet
    seam.progress.establish(tp, 1)
    assert seam.new_offset(tp) == 3


async def test_a_batch_handed_to_the_workers_producer_is_closed_and_aiokafka_sends_a_closed_batch_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from aiokafka.producer.message_accumulator import MessageBatch

    handed: list[object] = []

    async def send_batch(self: object, batch: object, topic: str, *, partition: int) -> asyncio.Future[None]:
        handed.append(batch)
        return asyncio.get_running_loop().create_future()

    monkeypatch.setattr(aiokafka.AIOKafkaProducer, "send_batch", send_batch)
    producer = compat.ReportingProducer(bootstrap_servers="127.0.0.1:1")
    batch = producer.create_batch()
    assert batch.append(key=b"k", value=b"v", timestamp=None, headers=[]) is not None
    await producer.send_batch(batch, "t", partition=0)
    assert handed == [batch] and batch.closed()
    # aiokafka lingers only on open batches: a closed one is ready for the sender now
    tp = aiokafka.TopicPartition("t", 0)
    assert MessageBatch(tp, batch, ttl=30, linger_time=5.0).remaining_linger() is None
    still_open = producer.create_batch()
    assert MessageBatch(tp, still_open, ttl=30, linger_time=5.0).remaining_linger() > 4
