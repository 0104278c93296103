"""Broker, settings and worker fixtures shared by integration and fault tests.

The broker is started once per session with the same code as
``streamlake broker start`` (or taken from ``STREAMLAKE_TEST_BROKER``). If it
cannot start, the tests fail: they are never skipped.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streamlake.broker import local
from streamlake.config import Settings, load_settings
from streamlake.kafka.group_status import read_group_status

ROOT = Path(__file__).resolve().parent.parent


def wait_for(condition: Callable[[], object], timeout: float = 60.0, interval: float = 0.2, what: str = "condition") -> object:
    """Poll *condition* until it returns something truthy; fail after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class TestBroker:
    url: str
    state: local.BrokerState | None = None

    @property
    def bootstrap(self) -> str:
        return self.url.split("://", 1)[-1]


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestBroker]:
    external = os.environ.get("STREAMLAKE_TEST_BROKER")
    if external:
        yield TestBroker(external if "://" in external else f"kafka://{external}")
        return
    data_dir = tmp_path_factory.mktemp("broker")
    try:
        state = local.start_broker(port=0, data_dir=data_dir, kafka_version=local.DEFAULT_KAFKA_VERSION, timeout=180)
    except Exception as exc:  # the broker is required: fail loudly, never skip
        pytest.fail(f"could not start the Kafka broker for integration tests: {exc}", pytrace=False)
    yield TestBroker(state.url, state)
    local.stop_broker(data_dir)


@dataclass
class TestEnv:
    """Unique names for one test: a topic prefix and an app id (= consumer group)."""

    __test__ = False  # not a test class, despite the name

    broker: TestBroker
    prefix: str
    app_id: str
    tmp: Path
    extra: dict[str, str] = field(default_factory=dict)

    def environ(self, **overrides: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "STREAMLAKE_ENV": "test",
            "STREAMLAKE_HOME": str(ROOT),
            "STREAMLAKE_BROKER": self.broker.url,
            "STREAMLAKE_TOPIC_PREFIX": self.prefix,
            "STREAMLAKE_APP_ID": self.app_id,
        })
        env.update(self.extra)
        env.update(overrides)
        return env

    def settings(self, **overrides: str) -> Settings:
        return load_settings(env="test", root=ROOT, environ=self.environ(**overrides))


@pytest.fixture
def test_env(kafka_broker: TestBroker, tmp_path: Path) -> TestEnv:
    tag = uuid.uuid4().hex[:10]
    return TestEnv(broker=kafka_broker, prefix=f"t{tag}", app_id=f"sl-test-{tag}", tmp=tmp_path)


#: What a worker and a lander log once their web server listens (runtime/web.py, lake/metrics.py).
WEB_LISTENING = re.compile(r"web server listening on http://\S+:(\d+)")


@dataclass
class WorkerProcess:
    name: str
    proc: subprocess.Popen
    log_path: Path
    kind: str = "process"  # worker, lander: names are numbered per kind
    log_start: int = 0  # the log is appended to: where this run's lines begin

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def run_log(self) -> str:
        """This run's part of the log."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_start)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def web_port(self) -> int:
        """The port the process's web server listens on, as it logged it (it binds any free port)."""
        found = WEB_LISTENING.search(self.run_log())
        if found is None:
            raise AssertionError(f"{self.name} has not logged its web server's port (yet): wait_ready() first")
        return int(found.group(1))

    def wait_ready(self, timeout: float = 120.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            text = self.run_log()
            return "Ready" in text and WEB_LISTENING.search(text) is not None
        wait_for(ready, timeout=timeout, what=f"worker {self.name} to be ready")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


class ProcessFactory:
    """Start a test's StreamLake processes (workers, landers) from one Python; :meth:`stop_all` at the end.

    Every process gets a data dir of its own under the test's tmp, and a web server on any free
    port: it binds port 0 and logs the port it got (:attr:`WorkerProcess.web_port`). A port probed
    free here and passed on could be taken by another process before the child binds it.
    """

    def __init__(self, env: TestEnv, python: str | Path = sys.executable, ready_timeout: float = 120.0) -> None:
        self.env = env
        self.python = str(python)
        self.ready_timeout = ready_timeout
        self.started: list[WorkerProcess] = []

    def start(self, name: str, args: list[str], wait: bool = True, web_host: bool = True,
              **env_overrides: str) -> WorkerProcess:
        log_path = self.env.tmp / f"{name}.log"
        env = self.env.environ(STREAMLAKE_WEB_PORT="0", STREAMLAKE_DATADIR=str(self.env.tmp / f"{name}-data"),
                               **env_overrides)
        web_args = ["--web-port", "0"] + (["--web-host", "127.0.0.1"] if web_host else [])
        with open(log_path, "ab") as log:
            log_start = log.tell()
            proc = subprocess.Popen([self.python, *args, *web_args], cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        process = WorkerProcess(name, proc, log_path, log_start=log_start)
        self.started.append(process)
        if wait:
            process.wait_ready(self.ready_timeout)
        return process

    def worker(self, name: str | None = None, wait: bool = True, **env_overrides: str) -> WorkerProcess:
        """``faust -A streamlake.app worker`` in the test's group."""
        name = name or f"w{sum(1 for p in self.started if p.kind == 'worker')}"
        process = self.start(name, ["-m", "faust", "-A", "streamlake.app", "worker", "-l", "info"], wait,
                             **env_overrides)
        process.kind = "worker"
        return process

    def lander(self, name: str | None = None, wait: bool = True, loglevel: str = "info",
               **env_overrides: str) -> WorkerProcess:
        """``streamlake land`` in the test's lander group."""
        name = name or f"lander{sum(1 for p in self.started if p.kind == 'lander')}"
        process = self.start(name, ["-m", "streamlake", "land", "-l", loglevel], wait, web_host=False,
                             **env_overrides)
        process.kind = "lander"
        return process

    def stop_all(self, timeout: float = 30.0) -> None:
        for process in self.started:
            process.stop(timeout=timeout)

    def report_failure(self, tail_chars: int = 12_000, stacks_chars: int = 16_000) -> None:
        """For a failed test's report (pytest shows teardown output): every process's log end, and
        the task stacks of the workers still running (a stalled worker shows what it awaits).

        Workers dump their threads' and asyncio tasks' stacks on SIGUSR1 (mode's worker).
        Call before the processes are stopped.
        """
        logs = {process.name: len(process.log()) for process in self.started}
        live = [p for p in self.started if p.kind == "worker" and p.proc.poll() is None]
        for process in live:
            os.kill(process.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all("TASKS" in p.log()[logs[p.name]:] for p in live):
            time.sleep(0.2)
        time.sleep(0.5)  # the dump is written in one go; let its last task finish
        for process in self.started:
            text = process.log()
            print(f"\n----- {process.name} log ({process.log_path}), last {tail_chars} characters -----")
            print(text[:logs[process.name]][-tail_chars:])
            if process in live:
                print(f"\n----- {process.name}: asyncio task stacks at the failure, StreamLake's first "
                      f"(first {stacks_chars} characters) -----")
                print(task_stacks(text[logs[process.name]:])[:stacks_chars])


def task_stacks(dump: str) -> str:
    """The asyncio tasks of a mode worker's stack dump, those running StreamLake's code first, without locals."""
    tasks = dump.split("\n  TASK ")[1:]
    tasks = [("  TASK " + t.split("\nTHREAD ")[0]) for t in tasks]
    frames_only = ["\n".join(line for line in t.splitlines() if not line.startswith("        ") and " = " not in line)
                   for t in tasks]
    return "\n".join(sorted(frames_only, key=lambda t: "streamlake" not in t))


def call_failed(request: pytest.FixtureRequest) -> bool:
    """Whether the test using this fixture has failed (set by the report hook in tests/conftest.py)."""
    report = getattr(request.node, "report_call", None)
    return report is not None and report.failed


@pytest.fixture
def worker_factory(test_env: TestEnv, request: pytest.FixtureRequest) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``faust -A streamlake.app worker`` processes in the test's group."""
    factory = ProcessFactory(test_env)
    yield factory.worker
    if call_failed(request):
        factory.report_failure()
    factory.stop_all()


def stable_with(settings: Settings, catalog: Any, count: int, source: str) -> Callable[[], object]:
    """A wait_for condition: the group is stable with *count* members, each holding partitions of *source*."""
    def check() -> object:
        status = asyncio.run(read_group_status(settings, catalog))
        owners = [m for m in status.members if any(t == source for t, _ in m.assignment)]
        return status.state == "Stable" and len(status.members) == count and len(owners) == count and status
    return check


# -- creating, producing and reading back ---------------------------------------

async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    """Create topics directly (not from the catalog), e.g. to set up a mismatch or a small DLQ."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()


@dataclass(frozen=True)
class Out:
    """A record as read back from a topic."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        for k, v in reversed(self.headers):
            if k == name:
                return v.decode()
        return None


async def produce(bootstrap: str, topic: str, records: list[dict], partitions: int | None = None) -> list[tuple[int, int]]:
    """Produce *records* in order; each is a dict of key/value/headers/partition/timestamp_ms.

    Without an explicit partition a keyed record goes where the Java default
    partitioner puts it. Returns (partition, offset) per record.
    """
    from aiokafka import AIOKafkaProducer

    from streamlake.partitioner import partition_for_key

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        coords = []
        for rec in records:
            partition = rec.get("partition")
            if partition is None and partitions and rec.get("key"):
                partition = partition_for_key(rec["key"], partitions)
            meta = await producer.send_and_wait(
                topic, rec.get("value"), key=rec.get("key"), partition=partition if partition is not None else 0,
                headers=list(rec.get("headers", ())), timestamp_ms=rec.get("timestamp_ms"))
            coords.append((meta.partition, meta.offset))
        return coords
    finally:
        await producer.stop()


async def read_until(bootstrap: str, topic: str, done: Callable[[list[Out]], object] = lambda out: True,
                     timeout: float = 60.0, isolation_level: str = "read_uncommitted",
                     client: Mapping[str, Any] | None = None) -> list[Out]:
    """Read *topic* from the beginning until ``done(records)`` holds at a moment the end offsets are reached.

    ``isolation_level="read_committed"`` reads only committed transactional
    records (and stops at the last stable offset), like a downstream consumer
    of an exactly-once pipeline would. *client* adds connection settings (SASL/TLS).
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level=isolation_level,
                                max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=16 * 1024 * 1024,
                                **(client or {}))
    await consumer.start()
    out: list[Out] = []
    try:
        deadline = time.monotonic() + timeout
        partitions = None
        while not partitions:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                if time.monotonic() > deadline:
                    raise AssertionError(f"topic {topic} does not exist")
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            batch = await consumer.getmany(*tps, timeout_ms=300)
            for msgs in batch.values():
                out.extend(Out(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value, tuple(m.headers))
                           for m in msgs)
            ends = await consumer.end_offsets(tps)
            caught_up = all([await consumer.position(tp) >= ends[tp] for tp in tps])
            if caught_up and done(out):
                return sorted(out, key=lambda o: (o.partition, o.offset))
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: condition not met after {timeout:.0f}s ({len(out)} records read)")
    finally:
        await consumer.stop()


async def read_topic(bootstrap: str, topic: str, min_count: int = 0, timeout: float = 60.0) -> list[Out]:
    """Read *topic* from the beginning until at least *min_count* records arrived and the end is reached.

    Reading on to the end offsets means extra, unexpected records are seen too.
    """
    return await read_until(bootstrap, topic, lambda out: len(out) >= min_count, timeout)
