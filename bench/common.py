"""What every benchmark shares: the broker, machine facts, child processes, offset watching."""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiokafka.errors import KafkaError

from streamlake.broker import local
from streamlake.config import Settings
from streamlake.errors import StreamLakeError
from streamlake.kafka.offsets import OffsetAdmin

ROOT = Path(__file__).resolve().parent.parent
BENCH_BROKER_DIR = ROOT / ".streamlake" / "bench-broker"
RUNS_DIR = ROOT / ".streamlake" / "bench-runs"
PYTHON = sys.executable


def run_tag() -> str:
    """A short unique tag: every topic, group and app id of a run carries it."""
    return uuid.uuid4().hex[:8]


def broker_settings(url: str) -> Settings:
    """Settings that only point at the broker (for streamlake's Kafka-facing helpers)."""
    return Settings(broker=url if "://" in url else f"kafka://{url}")


@contextmanager
def bench_broker(url: str | None, log=print) -> Iterator[str]:
    """Yield a broker URL: *url* when given, else the bench broker (reused if it runs, else started and stopped)."""
    if url:
        yield url if "://" in url else f"kafka://{url}"
        return
    status = local.broker_status(BENCH_BROKER_DIR)
    if status.get("running") and status.get("accepting"):
        log(f"reusing the bench broker at {status['bootstrap']} ({BENCH_BROKER_DIR})")
        yield f"kafka://{status['bootstrap']}"
        return
    log(f"starting a Kafka broker in {BENCH_BROKER_DIR} ...")
    state = local.start_broker(port=0, data_dir=BENCH_BROKER_DIR, timeout=180)
    log(f"broker ready at {state.bootstrap} (pid {state.pid})")
    try:
        yield state.url
    finally:
        local.stop_broker(BENCH_BROKER_DIR)
        log("bench broker stopped")


def machine() -> dict:
    """The facts docs/BENCHMARKS.md records about the machine."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(), "kernel": platform.release(),
        "faust": installed("faust-streaming"), "aiokafka": installed("aiokafka"),
        "quixstreams": installed("quixstreams"),
        "load_avg_at_start": load_average(),
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: printed with every run, at its start and its end."""
    return [round(x, 2) for x in os.getloadavg()]


# -- memory -------------------------------------------------------------------

def proc_status_kb(pid: int, field: str) -> int | None:
    """A ``/proc/<pid>/status`` figure in kB (VmHWM = peak RSS, VmRSS = current)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def proc_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of *pid* so far, all its threads (``/proc/<pid>/stat``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # after the command name: state is field 3, utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- child processes ----------------------------------------------------------

@dataclass
class Child:
    """A process in its own session, so stopping it takes its whole group."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    started: float

    @classmethod
    def spawn(cls, name: str, argv: list[str], env: Mapping[str, str], log_path: Path) -> Child:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            started = time.monotonic()
            proc = subprocess.Popen(argv, cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        return cls(name, proc, log_path, started)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def peak_rss_mb(self) -> float | None:
        kb = proc_status_kb(self.proc.pid, "VmHWM")
        return None if kb is None else round(kb / 1024, 1)

    def cpu_seconds(self) -> float | None:
        return proc_cpu_seconds(self.proc.pid)

    def rss_mb(self) -> float | None:
        kb = proc_status_kb(self.proc.pid, "VmRSS")
        return None if kb is None else round(kb / 1024, 1)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        except ProcessLookupError:
            pass

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


class ChildFailed(RuntimeError):
    pass


# -- offsets ------------------------------------------------------------------

async def end_offsets(kafka: OffsetAdmin, topic: str, partitions: int) -> dict[tuple[str, int], int]:
    _, ends = await kafka.log_offsets([(topic, p) for p in range(partitions)])
    return ends


@dataclass
class Progress:
    """How a worker path went: when its output began, when its commits caught up."""

    first_output_s: float | None
    done_s: float | None
    peak_rss_mb: float | None
    cpu_s: float | None = None


async def watch_group(child: Child, kafka: OffsetAdmin, group: str, source: str, partitions: int,
                      output: str, limit_s: float, poll: float = 0.1) -> Progress:
    """Poll until *group*'s committed offsets reach the end of *source* on every partition.

    Times count from the child's spawn; nothing is subtracted. The child's
    peak RSS is read just before it is stopped (by the caller).
    """
    ends = await end_offsets(kafka, source, partitions)
    first_output = None
    out_tps = [(output, p) for p in range(partitions)]
    while True:
        now = time.monotonic() - child.started
        if not child.alive():
            raise ChildFailed(f"{child.name} exited with {child.proc.returncode}:\n{child.tail()}")
        try:
            if first_output is None:
                _, out_ends = await kafka.log_offsets(out_tps)
                if any(out_ends.values()):
                    first_output = time.monotonic() - child.started
            committed = await kafka.committed_offsets(group)
        except (KafkaError, StreamLakeError):  # e.g. the group coordinator is not there yet
            committed = {}
        if all(committed.get(tp, -1) >= end for tp, end in ends.items()):
            done = time.monotonic() - child.started
            return Progress(first_output or done, done, child.peak_rss_mb(), child.cpu_seconds())
        if now > limit_s:
            behind = {f"{t}[{p}]": end - committed.get((t, p), 0) for (t, p), end in ends.items()
                      if committed.get((t, p), -1) < end}
            raise ChildFailed(f"{child.name} did not commit to the end within {limit_s:.0f}s; behind: {behind}\n"
                              f"{child.tail()}")
        await asyncio.sleep(poll)


async def delete_topics_with(url: str, tag: str) -> int:
    """Delete every topic whose name contains *tag* (the run's own topics); return how many."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=broker_settings(url).bootstrap_servers)
    await admin.start()
    try:
        names = [n for n in await admin.list_topics() if tag in n]
        if names:
            await admin.delete_topics(names)
        return len(names)
    finally:
        await admin.close()
