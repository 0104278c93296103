"""Shared pieces of the fault suite: a steady producer, topic reading, dedicated brokers, accounting.

Every fault test accounts for every record it produced, using the topics
themselves: the source topic says what went in, the output and DLQ topics say
where each record ended. A record is *forwarded* (its (key, seq) is in the
output), *dropped* (a deliberate duplicate of a (key, seq) already forwarded),
*in the DLQ* (a DLQ record names its origin partition and offset) or *lost*.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import orjson
import pytest

from streamlake.broker import local
from streamlake.core.dlq import H
from streamlake.partitioner import partition_for_key
from tests.kafka_fixtures import Out, TestBroker, TestEnv, read_until

PARTITIONS = 8  # conf/catalog.toml: sales.orders


def topics(env: TestEnv) -> tuple[str, str, str]:
    """Source, output and DLQ topic of sales.orders under the test's prefix."""
    source = f"{env.prefix}.sales.orders.raw.v1"
    return source, f"{env.prefix}.sales.orders.valid.v1", f"{source}.dlq"


# -- reading topics ---------------------------------------------------------------

def read_all(bootstrap: str, topic: str, **kwargs) -> list[Out]:
    return asyncio.run(read_until(bootstrap, topic, **kwargs))


# -- a steady, keyed, in-order workload ---------------------------------------------

@dataclass(frozen=True)
class Planned:
    """One record the producer will send and what must become of it."""

    key: bytes
    value: bytes
    kind: str  # "valid", "dup" (a deliberate re-send of an earlier valid record) or a DLQ reason
    seq: int | None = None


def plan_workload(n: int, keys: int, seed: int, bad: float = 0.01, dup: float = 0.01,
                  key_prefix: str = "k") -> list[Planned]:
    """*n* records over *keys* keys: per-key in-order seqs, a few deliberate duplicates and bad records.

    Every valid (key, seq) is unique; a duplicate repeats a valid record's
    bytes exactly; every bad record's bytes are unique.
    """
    rnd = random.Random(seed)
    next_seq = collections.Counter()
    sent: dict[bytes, list[bytes]] = collections.defaultdict(list)
    out: list[Planned] = []
    for i in range(n):
        key = f"{key_prefix}{rnd.randrange(keys)}".encode()
        roll = rnd.random()
        if roll < bad:
            if rnd.random() < 0.5:
                value = b'{"order_id": "%s", "seq": %d, "bad": %d' % (key, next_seq[key], i)  # truncated
                out.append(Planned(key, value, "invalid-json"))
            else:
                value = orjson.dumps({"order_id": key.decode(), "seq": f"s{i}"})
                out.append(Planned(key, value, "invalid-sequence"))
        elif roll < bad + dup and sent[key]:
            out.append(Planned(key, rnd.choice(sent[key][-20:]), "dup"))
        else:
            seq = next_seq[key]
            next_seq[key] += 1
            value = orjson.dumps({"order_id": key.decode(), "seq": seq, "amount": rnd.randrange(10_000), "n": i})
            sent[key].append(value)
            out.append(Planned(key, value, "valid", seq))
    return out


class SteadyProducer(threading.Thread):
    """Produce planned records at a steady rate from a thread with its own event loop.

    Sends are pipelined (idempotent producer, so per-partition order holds
    through retries) and awaited in small windows. The delivery timeout is long
    enough to ride out a broker restart. ``acked`` counts acknowledged records.
    """

    def __init__(self, bootstrap: str, topic: str, records: list[Planned], rate: float,
                 delivery_timeout: float = 90.0, client: Mapping[str, Any] | None = None) -> None:
        super().__init__(daemon=True, name="steady-producer")
        self.bootstrap, self.topic, self.records, self.rate = bootstrap, topic, records, rate
        self.delivery_timeout = delivery_timeout
        self.client = dict(client or {})  # SASL/TLS settings, when the broker asks for them
        self.acked = 0
        self.sent = 0  # handed to the client; after cancel() and join(), the first `sent` records were produced
        self.error: BaseException | None = None
        self.started_at = 0.0
        self.finished_at = 0.0
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        """Stop sending and wait for what was sent (a failed test's teardown, or the end of an open-ended load)."""
        self.cancelled.set()
        self.join(timeout=self.delivery_timeout + 10)

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.finished_at = time.monotonic()

    async def _run(self) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
                                    linger_ms=5, request_timeout_ms=int(self.delivery_timeout * 1000),
                                    retry_backoff_ms=250, max_request_size=4 * 1024 * 1024,
                                    client_id="fault-suite-producer", **self.client)
        await producer.start()
        try:
            self.started_at = time.monotonic()
            window: list[asyncio.Future] = []
            for i, rec in enumerate(self.records):
                if self.cancelled.is_set():
                    break
                due = self.started_at + i / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    if window:
                        await self._settle(window)
                    await asyncio.sleep(delay)
                window.append(await producer.send(self.topic, rec.value, key=rec.key,
                                                  partition=partition_for_key(rec.key, PARTITIONS)))
                self.sent = i + 1
                if len(window) >= 200:
                    await self._settle(window)
            await self._settle(window)
        finally:
            await producer.stop()

    async def _settle(self, window: list[asyncio.Future]) -> None:
        await asyncio.gather(*window)
        self.acked += len(window)
        window.clear()


# -- accounting ------------------------------------------------------------------------

@dataclass
class Accounting:
    """Where every produced record ended, from the topics themselves."""

    name: str
    records_in: int = 0
    forwarded: int = 0
    dropped: int = 0
    dlq: int = 0
    lost: list = field(default_factory=list)
    duplicates_forwarded: int = 0
    dlq_duplicates: int = 0
    misplaced: list = field(default_factory=list)  # in the DLQ but valid, or forwarded but bad / unknown
    order_violations: list = field(default_factory=list)

    def line(self) -> str:
        return (f"[{self.name}] records in {self.records_in}: forwarded {self.forwarded}, "
                f"dropped (counted duplicates) {self.dropped}, DLQ {self.dlq}, lost {len(self.lost)}, "
                f"duplicates forwarded {self.duplicates_forwarded}, DLQ duplicates {self.dlq_duplicates}")

    def report(self) -> None:
        print("\n" + self.line(), flush=True)

    def assert_complete(self) -> None:
        assert not self.lost, f"{self.name}: {len(self.lost)} record(s) lost, e.g. {self.lost[:5]}"
        assert not self.misplaced, f"{self.name}: misplaced records, e.g. {self.misplaced[:5]}"
        assert not self.order_violations, f"{self.name}: per-key order broken, e.g. {self.order_violations[:5]}"
        assert self.records_in == self.forwarded + self.dropped + self.dlq, self.line()


def account(name: str, planned: list[Planned], source: list[Out], output: list[Out], dlq: list[Out]) -> Accounting:
    """Match every source record to its fate.

    A valid (key, seq) is forwarded once (its first copy in the source) and
    every further source copy is a dropped duplicate; output copies beyond one
    are duplicates forwarded. A bad record is in the DLQ when a DLQ record
    names its origin offset.
    """
    acc = Accounting(name)
    kind_of = {p.value: p for p in planned}
    out_count = collections.Counter()
    seqs_by_key: dict[bytes, list[int]] = collections.defaultdict(list)
    for o in output:
        doc = orjson.loads(o.value)
        out_count[(o.key, doc["seq"])] += 1
        seqs_by_key[o.key].append(doc["seq"])
    dlq_count = collections.Counter((int(d.header(H.ORIGIN_PARTITION)), int(d.header(H.ORIGIN_OFFSET))) for d in dlq)
    acc.dlq_duplicates = sum(n - 1 for n in dlq_count.values())
    seen_valid: set = set()
    acc.records_in = len(source)
    for rec in source:
        plan = kind_of.get(rec.value)
        if plan is None:
            acc.misplaced.append(("unknown record in source", rec.partition, rec.offset))
            continue
        coords = (rec.partition, rec.offset)
        if plan.kind in ("valid", "dup"):
            ks = (rec.key, orjson.loads(rec.value)["seq"])
            if coords in dlq_count:
                acc.dlq += 1
                acc.misplaced.append(("valid record in the DLQ", ks))
            elif ks in seen_valid:
                acc.dropped += 1
            elif out_count[ks]:
                seen_valid.add(ks)
                acc.forwarded += 1
            else:
                acc.lost.append((*ks, rec.partition, rec.offset))
        elif coords in dlq_count:
            acc.dlq += 1
        else:
            acc.lost.append((plan.kind, rec.partition, rec.offset))
    valid = {(p.key, p.seq) for p in planned if p.kind == "valid"}
    acc.duplicates_forwarded = sum(n - 1 for n in out_count.values())
    acc.misplaced += [("forwarded but never valid", ks) for ks in out_count if ks not in valid]
    # per-key order: the first time each seq appears in the output, seqs increase
    for key, seqs in seqs_by_key.items():
        firsts, seen = [], set()
        for s in seqs:
            if s not in seen:
                seen.add(s)
                firsts.append(s)
        if firsts != sorted(firsts):
            acc.order_violations.append((key, firsts[:20]))
    # every record the producer had acknowledged is in the source
    assert len(source) >= len(planned), f"{name}: source holds {len(source)} of {len(planned)} produced records"
    return acc


def wait_all_landed(bootstrap: str, planned: list[Planned], output_topic: str, dlq_topic: str,
                    timeout: float = 120.0, isolation_level: str = "read_uncommitted",
                    client: Mapping[str, Any] | None = None) -> tuple[list[Out], list[Out]]:
    """Wait until every valid (key, seq) is in the output and every bad record in the DLQ."""
    want_out = {(p.key, p.seq) for p in planned if p.kind == "valid"}
    want_dlq = collections.Counter(p.value for p in planned if p.kind not in ("valid", "dup"))

    def all_out(out: list[Out]) -> bool:
        return want_out <= {(o.key, orjson.loads(o.value)["seq"]) for o in out}

    def all_dlq(out: list[Out]) -> bool:
        have = collections.Counter(d.value for d in out)
        return all(have[v] >= n for v, n in want_dlq.items())

    start = time.monotonic()
    try:
        output = asyncio.run(read_until(bootstrap, output_topic, all_out, timeout, isolation_level, client))
    except AssertionError as exc:  # the accounting then names what is missing
        print(f"\n{exc}", flush=True)
        output = asyncio.run(read_until(bootstrap, output_topic, timeout=30, isolation_level=isolation_level,
                                        client=client))
    left = max(timeout - (time.monotonic() - start), 10.0)
    try:
        dlq = asyncio.run(read_until(bootstrap, dlq_topic, all_dlq, left, isolation_level, client))
    except AssertionError as exc:
        print(f"\n{exc}", flush=True)
        dlq = asyncio.run(read_until(bootstrap, dlq_topic, timeout=30, isolation_level=isolation_level,
                                     client=client))
    return output, dlq


async def committed_offsets(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets (for diagnostics)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()


# -- dedicated brokers ---------------------------------------------------------------------

@dataclass
class DedicatedBroker:
    """A broker of one test's own, restartable on the same port and data dir."""

    data_dir: Path
    auto_create: bool = True
    state: local.BrokerState | None = None

    def start(self, port: int = 0) -> local.BrokerState:
        saved = os.environ.get("STREAMLAKE_BROKER_AUTO_CREATE")
        os.environ["STREAMLAKE_BROKER_AUTO_CREATE"] = "true" if self.auto_create else "false"
        try:
            self.state = local.start_broker(port=port, data_dir=self.data_dir,
                                            kafka_version=local.DEFAULT_KAFKA_VERSION, timeout=180)
        finally:
            if saved is None:
                os.environ.pop("STREAMLAKE_BROKER_AUTO_CREATE", None)
            else:
                os.environ["STREAMLAKE_BROKER_AUTO_CREATE"] = saved
        return self.state

    def stop(self) -> None:
        local.stop_broker(self.data_dir)

    def restart(self) -> local.BrokerState:
        assert self.state is not None
        port = self.state.port
        self.stop()
        return self.start(port=port)

    @property
    def url(self) -> str:
        assert self.state is not None
        return self.state.url

    @property
    def bootstrap(self) -> str:
        assert self.state is not None
        return self.state.bootstrap

    def use_for(self, env: TestEnv) -> None:
        """Point the test's workers and settings at this broker (STREAMLAKE_BROKER override)."""
        env.broker = TestBroker(self.url, self.state)
        env.extra["STREAMLAKE_BROKER"] = self.url


@pytest.fixture
def dedicated_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., DedicatedBroker]]:
    """Start brokers of the test's own (never the shared session broker); all stopped at the end."""
    started: list[DedicatedBroker] = []

    def start(auto_create: bool = True) -> DedicatedBroker:
        broker = DedicatedBroker(tmp_path_factory.mktemp(f"broker-{uuid.uuid4().hex[:6]}"), auto_create)
        started.append(broker)
        try:
            broker.start()
        except Exception as exc:
            pytest.fail(f"could not start a dedicated Kafka broker: {exc}", pytrace=False)
        return broker

    yield start
    for broker in started:
        broker.stop()


def worker_log_count(worker, text: str) -> int:
    return worker.log().count(text)


def diagnose(env: TestEnv, acc: Accounting, bootstrap: str, source: str) -> None:
    """On a loss, print what helps find it: committed offsets, error lines of every worker log."""
    if not acc.lost and not acc.misplaced:
        return
    try:
        committed = asyncio.run(committed_offsets(bootstrap, env.app_id))
        print(f"committed offsets of {source}:",
              sorted((p, o) for (t, p), o in committed.items() if t == source), flush=True)
    except Exception as exc:  # diagnostics only
        print(f"could not read committed offsets: {exc!r}")
    for log in sorted(env.tmp.glob("*.log")):
        lines = [line for line in log.read_text(errors="replace").splitlines()
                 if "ERROR" in line or "Traceback" in line or "WARNING" in line]
        print(f"--- {log.name}: {len(lines)} error/warning lines", *lines[-15:], sep="\n", flush=True)


def group_stable(env: TestEnv, members: int) -> Callable[[], bool]:
    """A condition: the group is Stable with *members* members, each owning source partitions."""
    from streamlake.catalog import load_catalog
    from streamlake.kafka.group_status import read_group_status
    from streamlake.topology import discover_streams

    settings = env.settings()
    catalog = load_catalog(settings, discover_streams(settings.topologies_dir))
    source = topics(env)[0]

    def check() -> bool:
        status = asyncio.run(read_group_status(settings, catalog))
        owners = [m for m in status.members if any(t == source for t, _ in m.assignment)]
        return status.state == "Stable" and len(status.members) == members and len(owners) == members

    return check
