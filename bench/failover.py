"""Failover: kill -9 one of two workers holding N keys; time until its partitions forward again.

Per variant (standby replicas 0 and 1, by default):

1. the sequence table's changelog is prefilled with N keys (as ``bench recovery`` does);
2. two workers of one group start and recover it; a steady load (``--failover-rate``
   records/s, over every partition) is offered to the source topic;
3. once both workers are ready and every output partition moves, one worker
   gets SIGKILL;
4. the harness watches the output topic: a partition "forwards again" when
   its end offset moves past where it stood half a second after the kill
   (a produce request sent just before the kill may still land).

Reported per variant, from the kill: when the survivor's group rejoined
(its log; the session timeout is most of this), when its recovery completed,
and when the last stalled partition forwarded again. The kill cannot be
noticed before the session timeout (``--session-timeout``, default 6 s: the
minimum of a broker with Kafka's defaults; the local broker accepts 2 s; the
project's default is 10 s), so "forwarding again" includes it and the report
also gives the part after the rejoin.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

from streamlake.broker.local import free_port
from streamlake.kafka.offsets import OffsetAdmin
from streamlake.partitioner import partition_for_key

from .common import Child, ChildFailed, broker_settings, end_offsets, proc_status_kb
from .prefilled import STORES, prefill_group, prefilled_run
from .report import print_simple
from .throughput import streamlake_argv
from .workload import order_value

READY_LINE = "Worker ready"
REJOIN_LINE = "(Re-)joining group"
RECOVERED_LINE = "Recovery complete"
SETTLE_S = 0.5


class OfferedLoad:
    """Produces in-order records for fresh keys at a steady rate until stopped."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, rate: int, keys: int = 2000) -> None:
        self.bootstrap, self.topic, self.partitions, self.rate = bootstrap, topic, partitions, rate
        self.keys = [f"f-{i:06d}".encode() for i in range(keys)]
        self.part = [partition_for_key(k, partitions) for k in self.keys]
        self.next_seq = [0] * keys
        self.sent = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> OfferedLoad:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks=1, linger_ms=5)
        await producer.start()
        rng = random.Random(15)
        started = time.monotonic()
        try:
            while not self._stop.is_set():
                due = int((time.monotonic() - started) * self.rate)
                while self.sent < due:
                    i = self.sent % len(self.keys)
                    key = self.keys[i]
                    value = order_value(key.decode(), self.next_seq[i], rng)
                    self.next_seq[i] += 1
                    await producer.send(self.topic, value, key=key, partition=self.part[i])
                    self.sent += 1
                await asyncio.sleep(0.01)
        finally:
            await producer.stop()


def log_times(child: Child, line: str) -> list[float]:
    """Wall-clock times (epoch seconds) of the child's log lines that contain *line*."""
    out = []
    for text in child.log().splitlines():
        if line in text and text.startswith("[") and "]" in text:
            try:
                out.append(datetime.strptime(text[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp())
            except ValueError:
                continue
    return out


def child_pids(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def first_after(times: list[float], t0: float) -> float | None:
    later = [t - t0 for t in times if t >= t0]
    return round(min(later), 2) if later else None


async def wait_forwarding(kafka: OffsetAdmin, output: str, partitions: int, workers: list[Child],
                          limit_s: float, say: Callable[[str], None]) -> None:
    """Wait until both workers are ready and every output partition moved in each of 3 checks 1 s apart."""
    deadline = time.monotonic() + limit_s
    before = await end_offsets(kafka, output, partitions)
    streak = 0
    while streak < 3:
        await asyncio.sleep(1.0)
        for w in workers:
            if not w.alive():
                raise ChildFailed(f"{w.name} exited with {w.proc.returncode}:\n{w.tail()}")
        now = await end_offsets(kafka, output, partitions)
        ready = all(log_times(w, READY_LINE) for w in workers)
        moving = all(now[tp] > before[tp] for tp in now)
        streak = streak + 1 if ready and moving else 0
        before = now
        if time.monotonic() > deadline:
            raise ChildFailed(f"the two workers were not both forwarding within {limit_s:.0f}s:\n"
                              + "\n".join(w.tail(15) for w in workers))
    say("both workers ready, every partition forwarding")


async def measure_failover(url: str, keys: int, standbys: tuple[int, ...], stores: tuple[str, ...], partitions: int,
                           rate: int, session_timeout: float, say: Callable[[str], None],
                           watchdogs: tuple[bool, ...] = (False,)) -> dict:
    rows = []
    timeout = 180 + keys / 1000
    async with prefilled_run(url, keys, partitions, say) as run:
        for store, replicas, watchdog in ((s, r, w) for s in stores for r in standbys for w in watchdogs):
            label = f"{store}-sb{replicas}" + ("-wd" if watchdog else "")
            group = await prefill_group(run, f"fo-{label}", store, env={
                "STREAMLAKE_SESSION_TIMEOUT": str(session_timeout),
                "STREAMLAKE_TABLE_STANDBY_REPLICAS": str(replicas),
                "TABLE_STANDBY_REPLICAS": str(replicas),  # Faust's own name, for workers that predate the setting
                "PYTHONUNBUFFERED": "1"})
            say(f"{label}: prefilled {group.changelog} with {keys:,} keys in {group.prefill_s:.1f}s")
            row = await run_variant(url, label, group.env, run.run_dir, group.source, group.output, partitions,
                                    rate, timeout, say, watchdog)
            rows.append({"store": STORES[store], "standby_replicas": replicas, "keys": keys,
                         "session_timeout_s": session_timeout, "watchdog": watchdog, **row})
    return {"run": run.tag, "rate": rate, "results": rows}


async def run_variant(url: str, label: str, base: dict[str, str], run_dir: Path, source: str, output: str,
                      partitions: int, rate: int, limit_s: float, say: Callable[[str], None],
                      watchdog: bool = False) -> dict:
    bootstrap = broker_settings(url).bootstrap_servers
    workers = []
    for n in ("a", "b"):
        port = free_port()
        env = base | {"STREAMLAKE_WEB_PORT": str(port), "STREAMLAKE_DATADIR": str(run_dir / f"{label}-{n}-data")}
        argv = streamlake_argv(port, "info")
        if watchdog:  # `streamlake worker`, which runs the worker as the watchdog's child
            env["STREAMLAKE_WORKER_WATCHDOG"] = "1"
            argv = [argv[0], "-m", "streamlake", *argv[argv.index("worker"):]]
        workers.append(Child.spawn(f"{label}-{n}", argv, env, run_dir / f"{label}-{n}.log"))
    victim, survivor = workers
    try:
        async with OfferedLoad(bootstrap, source, partitions, rate), OffsetAdmin(broker_settings(url)) as kafka:
            await wait_forwarding(kafka, output, partitions, workers, limit_s, say)
            # with the watchdog, the worker alone is killed, as the OOM killer would; its watchdog sees it die
            worker_pid = child_pids(victim.proc.pid)[0] if watchdog else victim.proc.pid
            kb = proc_status_kb(worker_pid, "VmRSS")
            victim_rss = None if kb is None else round(kb / 1024, 1)
            killed_at = time.time()
            if watchdog:
                os.kill(worker_pid, signal.SIGKILL)
            else:
                os.killpg(victim.proc.pid, signal.SIGKILL)
            t0 = time.monotonic()
            say(f"{label}: killed {victim.name} (pid {worker_pid}, RSS {victim_rss} MB)")
            await asyncio.sleep(SETTLE_S)
            mark = await end_offsets(kafka, output, partitions)
            stalled: dict[tuple[str, int], float | None] = {}
            moved_by_settle = 0
            while True:
                if not survivor.alive():
                    raise ChildFailed(f"{survivor.name} exited:\n{survivor.tail()}")
                now = await end_offsets(kafka, output, partitions)
                elapsed = time.monotonic() - t0
                for tp, end in now.items():
                    if tp not in stalled and end > mark[tp]:
                        stalled[tp] = elapsed
                        if elapsed < SETTLE_S + 1.0:
                            moved_by_settle += 1
                if len(stalled) == len(now):
                    break
                if elapsed > limit_s:
                    raise ChildFailed(f"{label}: partitions not forwarding {limit_s:.0f}s after the kill: "
                                      f"{sorted(p for (_, p) in set(now) - set(stalled))}\n{survivor.tail()}")
                await asyncio.sleep(0.05)
        forwarding = round(max(stalled.values()), 2)  # type: ignore[type-var]
        rejoin = first_after(log_times(survivor, REJOIN_LINE), killed_at)
        recovered = first_after(log_times(survivor, RECOVERED_LINE), killed_at)
        say(f"{label}: rejoined after {rejoin}s, recovery complete after {recovered}s, "
            f"all partitions forwarding after {forwarding}s")
        return {"victim_rss_mb": victim_rss, "rejoin_s": rejoin, "recovered_s": recovered,
                "forwarding_s": forwarding,
                "forwarding_after_rejoin_s": None if rejoin is None else round(forwarding - rejoin, 2),
                "partitions_never_stalled": moved_by_settle}
    finally:
        for w in workers:
            w.stop(timeout=60)


def print_failover(report: dict, markdown: bool) -> None:
    headers = ["store", "standby replicas", "watchdog", "tracked keys", "session timeout", "victim RSS",
               "survivor rejoined", "recovery complete", "all partitions forwarding", "of which after rejoin"]
    rows = []
    for r in report["results"]:
        rows.append([r["store"], str(r["standby_replicas"]), "yes" if r.get("watchdog") else "no", f"{r['keys']:,}",
                     f"{r['session_timeout_s']} s",
                     f"{r['victim_rss_mb']} MB", f"{r['rejoin_s']} s", f"{r['recovered_s']} s",
                     f"{r['forwarding_s']} s", f"{r['forwarding_after_rejoin_s']} s"])
    print_simple(f"Failover after kill -9 of one of two workers (times from the kill; {report['rate']:,} records/s "
                 "offered)", headers, rows, markdown)
