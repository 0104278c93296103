"""The main job: broker, topics, N workers through the Procfile, a sample load, live progress, reconciliation.

:func:`run_demo` owns every process it starts and stops them on the way out
(normal end, error or Ctrl-C): the workers (through honcho), then the broker
if it started it. The numbers come from the broker, not from worker logs:
stream totals from the counters changelog (every worker's rows, latest per
key), lag and DLQ depth from the group's committed offsets and end offsets.

Over 300 lines: the demo is one sequence with one cleanup path (broker, topics,
workers, console, lander, load, reconciliation, stop); the process group it
starts and the live view stay beside it so that path is read in one place.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .broker import local
from .catalog import Catalog, TopicRole, load_catalog
from .config import Settings, load_settings, with_overrides
from .console.process import ConsoleProcess
from .core.pipeline import StreamCounters
from .core.sample import Reconciliation, SampleMix, SampleSummary, counters_delta, generate_sample
from .errors import StreamLakeError
from .kafka.admin import ApplyOutcome, apply_catalog
from .kafka.group_status import CountersReader, read_group_status
from .kafka.sample_producer import produce_sample
from .lake.reconcile import LakeReconciliation, reconcile_lake, table_rows
from .topology import Partitioning, Stream, discover_streams

__all__ = ["DemoOptions", "DemoProgress", "DemoResult", "run_demo", "WorkerGroup", "find_free_port_block", "AsyncRunner"]

_T = TypeVar("_T")


class AsyncRunner(Protocol):
    """Runs one coroutine to completion on a fresh event loop: the CLI passes ``asyncio.run``."""

    def __call__(self, main: Coroutine[Any, Any, _T], /) -> _T: ...

STREAM = "sales.orders"


@dataclass(frozen=True)
class DemoOptions:
    workers: int = 2
    events: int = 20_000
    rate: float | None = 5_000.0
    bad_ratio: float = 0.01
    keys: int = 1_000
    seed: int = 1
    keep_running: bool = False
    ready_timeout: float = 180.0


@dataclass
class DemoProgress:
    """One refresh of the live view."""

    elapsed: float
    produced: int
    target: int
    counted: StreamCounters
    lag: int
    dlq_depth: int
    produce_rate: float
    process_rate: float


@dataclass
class DemoResult:
    reconciliation: Reconciliation | None
    timings: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    broker: str = ""
    workers: int = 0
    worker_log: str = ""
    console: str = ""
    lake: LakeReconciliation | None = None
    lander_log: str = ""


def find_free_port_block(count: int, start: int = 5000, step: int = 100, limit: int = 60000) -> int:
    """The first base port (start, start+step, ...) with *count* free ports on 127.0.0.1 after it."""
    base = start
    while base + count < limit:
        if all(local.port_free(base + i) for i in range(count)):
            return base
        base += step
    raise StreamLakeError(f"no block of {count} free ports on 127.0.0.1 between {start} and {limit}")


class WorkerGroup:
    """``honcho start -f Procfile -p BASE -c worker=N worker``: N workers, web ports BASE..BASE+N-1.

    ``process_type="lander"`` runs the Procfile's landers the same way.
    """

    def __init__(self, root: Path, count: int, env: dict[str, str], log_path: Path,
                 process_type: str = "worker") -> None:
        self.root = root
        self.count = count
        self.env = env
        self.log_path = log_path
        self.process_type = process_type
        self.base_port = find_free_port_block(count)
        self.proc: subprocess.Popen | None = None

    @property
    def ports(self) -> list[int]:
        return [self.base_port + i for i in range(self.count)]

    def start(self) -> None:
        honcho = shutil.which("honcho", path=self.env.get("PATH"))
        if honcho is None:
            raise StreamLakeError("honcho was not found; install the package (pip install -e .) in this venv")
        procfile = self.root / "Procfile"
        if not procfile.is_file():
            raise StreamLakeError(f"no Procfile at {procfile}; run the demo from a StreamLake checkout")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [honcho, "start", "-f", str(procfile), "-d", str(self.root), "-p", str(self.base_port),
                 "-c", f"{self.process_type}={self.count}", "--no-colour", self.process_type],
                cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the demo only; it stops the workers in order
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def ready_ports(self) -> list[int]:
        ready = []
        for port in self.ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as resp:
                    if resp.status == 200:
                        ready.append(port)
            except (urllib.error.URLError, OSError):
                pass
        return ready

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise StreamLakeError(f"the workers exited during start; see {self.log_path}:\n{self.log_tail()}")
            if len(self.ready_ports()) == self.count:
                return
            time.sleep(0.5)
        raise StreamLakeError(f"{self.count - len(self.ready_ports())} of {self.count} worker(s) not ready after "
                              f"{timeout:.0f}s; see {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM honcho (it stops its workers, SIGKILL after 5 s); kill what is left after *timeout*."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def _interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM both end the demo through its cleanup, even when started with SIGINT ignored."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def _stream(settings: Settings) -> tuple[Stream, Catalog]:
    streams = discover_streams(settings.topologies_dir)
    stream = next((s for s in streams if s.name == STREAM), None)
    if stream is None:
        raise StreamLakeError(f"the demo needs the {STREAM} topology under {settings.topologies_dir}")
    return stream, load_catalog(settings, streams)


def _ensure_broker(settings: Settings, say: Callable[[str], None], timings: dict[str, float]) -> tuple[Settings, bool]:
    """Use the configured broker if it answers, else start the local one. Returns (settings, started)."""
    status = local.broker_status(settings.root / settings.local_broker_data_dir)
    if status.get("running") and status.get("accepting"):
        say(f"using the local broker already running at {status['bootstrap']} (pid {status['pid']})")
        return with_overrides(settings, broker=f"kafka://{status['bootstrap']}"), False
    if os.environ.get("STREAMLAKE_BROKER"):
        say(f"using STREAMLAKE_BROKER={settings.broker}")
        return settings, False
    began = time.monotonic()
    libs = local.resolve_jars(settings.kafka_version)
    timings["jars"] = time.monotonic() - began
    say(f"kafka {settings.kafka_version} jars ready in {timings['jars']:.1f}s ({libs})")
    began = time.monotonic()
    state = local.start_broker(settings.local_broker_port, settings.root / settings.local_broker_data_dir,
                               settings.kafka_version)
    timings["broker"] = time.monotonic() - began
    say(f"broker started in {timings['broker']:.1f}s at {state.bootstrap} (pid {state.pid})")
    return with_overrides(settings, broker=state.url), True


def run_demo(options: DemoOptions, run: AsyncRunner, say: Callable[[str], None] = print,
             show: Callable[[DemoProgress], None] | None = None, settings: Settings | None = None) -> DemoResult:
    """Run the whole demo and return its reconciliation; every started process is stopped before returning.

    The demo owns processes and signal handlers and waits on them blocking, so it stays
    synchronous; its three broker phases (topics, load and watch, lake reconciliation) are
    coroutines that *run* (the caller's event-loop runner) carries out, each on its own loop
    so Ctrl-C during one still ends in the cleanup below.
    """
    settings = settings or load_settings()
    stream, catalog = _stream(settings)
    partitions = catalog.for_stream(stream.name, TopicRole.SOURCE).partitions
    if not 1 <= options.workers <= partitions:
        raise StreamLakeError(f"--workers must be between 1 and {partitions} (the partition count of "
                              f"{stream.name}): a worker beyond that would own no partition")
    result = DemoResult(None, workers=options.workers)
    began = time.monotonic()
    _interrupt_on_signals()
    settings, started_broker = _ensure_broker(settings, say, result.timings)
    result.broker = settings.bootstrap_servers
    workers: WorkerGroup | None = None
    console: ConsoleProcess | None = None
    landers: WorkerGroup | None = None
    try:
        t = time.monotonic()
        report = run(apply_catalog(settings, catalog))
        if report.outcome is ApplyOutcome.REFUSED:
            raise StreamLakeError("the topic catalog cannot be applied: " + "; ".join(
                f"{c.topic}: {c.reason}" for c in report.plan.refused) + " (see `streamlake topics plan`)")
        result.timings["topics"] = time.monotonic() - t
        say(f"topics {report.outcome.value} in {result.timings['topics']:.1f}s")
        env = dict(os.environ)
        env.update(STREAMLAKE_BROKER=settings.broker, STREAMLAKE_HOME=str(settings.root), PYTHONUNBUFFERED="1",
                   STREAMLAKE_DATADIR=str(settings.root / ".streamlake" / "demo" / "worker"),
                   PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
        env.pop("PORT", None)
        workers = WorkerGroup(settings.root, options.workers, env, settings.root / ".streamlake" / "demo" / "workers.log")
        result.worker_log = str(workers.log_path)
        t = time.monotonic()
        workers.start()
        console = ConsoleProcess(settings.root, env, settings.root / ".streamlake" / "demo" / "console.log",
                                 find_free_port_block(1, start=8070, step=1))
        console.start()  # starts while the workers join; its URL is printed once they are ready
        say(f"starting {options.workers} worker(s) through the Procfile (honcho, web ports "
            f"{workers.ports[0]}-{workers.ports[-1]}, log {workers.log_path})")
        workers.wait_ready(options.ready_timeout)
        result.timings["workers"] = time.monotonic() - t
        say(f"{options.workers} worker(s) ready in {result.timings['workers']:.1f}s")
        result.console = console.wait_url()
        say(f"console: {result.console}  (streams, DLQ, lag; log {console.log_path})")
        landers = WorkerGroup(settings.root, 1, env, settings.root / ".streamlake" / "demo" / "landers.log", "lander")
        result.lander_log = str(landers.log_path)
        t = time.monotonic()
        landers.start()
        say(f"starting a lander through the Procfile (web port {landers.ports[0]}, log {landers.log_path})")
        landers.wait_ready(options.ready_timeout)
        result.timings["lander"] = time.monotonic() - t
        rows_before = table_rows(settings, STREAM)
        live = _Live()
        try:
            run(_load_and_watch(settings, stream, partitions, options, workers, show, result.timings, live))
        except KeyboardInterrupt:
            result.interrupted = True
        if live.summary is not None:
            result.reconciliation = Reconciliation(live.summary, live.counted)
            if not result.interrupted:
                t = time.monotonic()
                result.lake = run(reconcile_lake(settings, STREAM, rows_before, live.counted.forwarded,
                                                 wait_s=60.0 + options.events / 1000))
                result.timings["land"] = time.monotonic() - t
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        if console is not None:
            console.stop()
        if landers is not None:
            landers.stop()
        if workers is not None:
            t = time.monotonic()
            workers.stop()
            result.timings["stop-workers"] = time.monotonic() - t
        if started_broker:
            t = time.monotonic()
            local.stop_broker(settings.root / settings.local_broker_data_dir)
            result.timings["stop-broker"] = time.monotonic() - t
        result.timings["total"] = time.monotonic() - began
    return result


@dataclass
class _Live:
    """The latest numbers, kept outside the event loop so Ctrl-C still gets a reconciliation."""

    summary: SampleSummary | None = None
    counted: StreamCounters = field(default_factory=StreamCounters)


async def _wait_idle(settings: Settings, catalog: Catalog, topics: set[str], within_s: float) -> int:
    """Wait until the group has no lag on *topics* (records left by an earlier run); return the lag left."""
    deadline = time.monotonic() + within_s
    while True:
        lag = (await read_group_status(settings, catalog)).total_lag(topics)
        if lag == 0 or time.monotonic() > deadline:
            return lag
        await asyncio.sleep(0.5)


def _misroutable(stream: Stream, partitions: int) -> bool:
    """Whether the sample may include wrong-partition records: malformed only for strict streams."""
    return partitions > 1 and stream.partitioning is Partitioning.STRICT


async def _load_and_watch(settings: Settings, stream: Stream, partitions: int, options: DemoOptions,
                          workers: WorkerGroup, show: Callable[[DemoProgress], None] | None,
                          timings: dict[str, float], live: _Live) -> None:
    catalog = load_catalog(settings, [stream])
    source = str(stream.source_topic(settings.topic_prefix))
    consumed = {source, stream.retry_topic(settings.topic_prefix)}
    await _wait_idle(settings, catalog, consumed, 60.0)
    async with CountersReader(settings, {stream.name: source}) as reader:
        baseline = (await reader.poll())[stream.name]
        produced = [0]
        records = generate_sample(options.events, options.keys, SampleMix(bad=options.bad_ratio), options.seed,
                                  key_prefix=f"ord-{secrets.token_hex(3)}", misroute=_misroutable(stream, partitions))
        t0 = time.monotonic()
        live.summary = SampleSummary()
        producer = asyncio.create_task(produce_sample(
            settings, source, partitions, records, options.rate, stream.policies,
            on_progress=lambda n: produced.__setitem__(0, n), summary=live.summary))
        last = (t0, 0, 0)
        summary: SampleSummary | None = None
        done_at: float | None = None
        drain_deadline: float | None = None
        while True:
            await asyncio.sleep(1.0)
            if not workers.alive():
                raise StreamLakeError(f"the workers stopped unexpectedly; see {workers.log_path}:\n{workers.log_tail()}")
            counted = live.counted = counters_delta((await reader.poll())[stream.name], baseline)
            status = await read_group_status(settings, catalog)
            now = time.monotonic()
            lag = status.total_lag(consumed)
            dt = max(now - last[0], 1e-6)
            progress = DemoProgress(now - t0, produced[0], options.events, counted, lag,
                                    sum(d.depth for d in status.dlq),
                                    (produced[0] - last[1]) / dt, (counted.records_in - last[2]) / dt)
            last = (now, produced[0], counted.records_in)
            if show is not None:
                show(progress)
            if summary is None and producer.done():
                summary = producer.result()  # raises what the producer raised
                # one more read: the counters may have moved since this loop's read
                counted = live.counted = counters_delta((await reader.poll())[stream.name], baseline)
                timings["produce"] = now - t0
                drain_deadline = now + 120.0 + options.events / 500
            if summary is not None and done_at is None and counted.records_in >= summary.produced and lag == 0:
                done_at = now
                timings["process"] = now - t0
                if not options.keep_running:
                    break
            if summary is not None and drain_deadline is not None and done_at is None and now > drain_deadline:
                raise StreamLakeError(f"the workers counted {counted.records_in} of {summary.produced} records "
                                      f"and lag is {lag} after waiting; see {workers.log_path}")
