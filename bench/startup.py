"""Start-up: where a new worker's time goes between its spawn and its first output (empty table).

Per repetition a fresh group gets its topics from the catalog (as a deploy
would) and a handful of records in its source topic; then a worker is spawned
and the harness waits for the first record on the output topic. The worker's
log (level info) dates the steps in between, all counted from the spawn:

* **worker starting** - interpreter, imports and building the app;
* **joining group** - Faust's services started (producer, web, tables, recovery);
* **joined group** - Kafka's group join (a single member; the broker's
  ``group.initial.rebalance.delay.ms`` is added to a first join);
* **recovery complete** - offsets of the changelogs read (nothing to restore);
* **worker ready** - committed offsets read and the source partitions sought;
* **first output** - the first fetch, batch and send, as the harness saw it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import time
from collections.abc import Callable
from datetime import datetime

from streamlake.broker.local import free_port
from streamlake.kafka.offsets import OffsetAdmin

from .common import RUNS_DIR, Child, ChildFailed, broker_settings, delete_topics_with, end_offsets, run_tag
from .report import print_simple
from .throughput import apply_streamlake_catalog, streamlake_argv, streamlake_env, streamlake_home
from .workload import make_workload, produce_workload

#: (label, log line), in the order they happen
STEPS = (("worker starting", "[^Worker]: Starting"), ("joining group", "(Re-)joining group"),
         ("joined group", "Joined group"), ("recovery complete", "Recovery complete"),
         ("worker ready", "Worker ready"))


def step_times(log: str, spawned_at: float) -> dict[str, float | None]:
    """Seconds from the spawn to the first log line of each step."""
    found: dict[str, float | None] = dict.fromkeys(label for label, _ in STEPS)
    for line in log.splitlines():
        if not line.startswith("["):
            continue
        for label, text in STEPS:
            if found[label] is None and text in line:
                try:
                    at = datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                except ValueError:
                    continue
                found[label] = round(at - spawned_at, 3)
    return found


async def measure_startup(url: str, repeat: int, partitions: int, say: Callable[[str], None]) -> dict:
    tag = run_tag()
    run_dir = RUNS_DIR / tag
    bootstrap = broker_settings(url).bootstrap_servers
    home = streamlake_home(partitions, run_dir)
    records = make_workload(100, partitions, 10).records
    samples = []
    try:
        async with OffsetAdmin(broker_settings(url)) as kafka:
            for i in range(repeat):
                prefix = app_id = f"bench-{tag}-start{i}"
                port = free_port()
                env = streamlake_env(dict(os.environ), url, prefix, app_id, port, run_dir / f"start{i}-data", home)
                await apply_streamlake_catalog(env)
                source, output = f"{prefix}.sales.orders.raw.v1", f"{prefix}.sales.orders.valid.v1"
                await produce_workload(bootstrap, source, records)
                spawned_at = time.time()
                child = Child.spawn(f"start{i}", streamlake_argv(port, "info"), env, run_dir / f"start{i}.log")
                try:
                    while not any((await end_offsets(kafka, output, partitions)).values()):
                        if not child.alive():
                            raise ChildFailed(f"{child.name} exited with {child.proc.returncode}:\n{child.tail()}")
                        if time.monotonic() - child.started > 120:
                            raise ChildFailed(f"{child.name}: no output within 120 s:\n{child.tail()}")
                        await asyncio.sleep(0.02)
                    first_output = round(time.monotonic() - child.started, 3)
                finally:
                    child.stop()
                sample = {**step_times(child.log(), spawned_at), "first output": first_output}
                say(f"start-up {i + 1}/{repeat}: " + ", ".join(f"{k} {v}" for k, v in sample.items()))
                samples.append(sample)
    finally:
        await delete_topics_with(url, tag)
        shutil.rmtree(run_dir, ignore_errors=True)
    labels = [label for label, _ in STEPS] + ["first output"]
    median = {label: round(statistics.median(v), 3) if (v := [s[label] for s in samples if s[label] is not None])
              else None for label in labels}
    return {"run": tag, "samples": samples, "median": median}


def print_startup(report: dict, markdown: bool) -> None:
    labels = list(report["median"])
    rows, previous = [], 0.0
    for label in labels:
        at = report["median"][label]
        step = None if at is None else round(at - previous, 3)
        rows.append([label, "—" if at is None else f"{at:.2f} s", "—" if step is None else f"{step:.2f} s",
                     " / ".join("—" if s[label] is None else f"{s[label]:.2f}" for s in report["samples"])])
        previous = at if at is not None else previous
    print_simple(f"Start-up of one worker, empty table (seconds from spawn; median of {len(report['samples'])})",
                 ["step", "from spawn", "this step", "each repetition"], rows, markdown)
