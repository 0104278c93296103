"""The run setup ``bench recovery`` and ``bench failover`` share: a StreamLake group whose sequence table is prefilled.

One :func:`prefilled_run` per command: a run tag and directory, the broker's
address, a StreamLake home for the partition count, and N tracked keys
generated once; on the way out every topic of the run is deleted and its
directory removed. One :func:`prefill_group` per measured variant: its own
topic prefix and app id (= consumer group), the catalog's topics, and the
sequence table's changelog created compacted and prefilled with the keys, each
on the partition the Java partitioner gives it and with the value format the
runtime writes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from streamlake.core.sequence import KeyState, encode_key_state
from streamlake.naming import changelog_topic_for, table_name_for
from streamlake.partitioner import partition_for_key

from .common import RUNS_DIR, broker_settings, delete_topics_with, run_tag
from .throughput import apply_streamlake_catalog, streamlake_env, streamlake_home
from .workload import create_topics, produce_workload

#: ``--stores`` names -> the app's store URL
STORES = {"memory": "memory://", "rocksdb": "rocksdb://"}


def tracked_keys(n: int, partitions: int) -> list[tuple[int, bytes, bytes]]:
    """N changelog records: distinct keys, each with a per-key state as the runtime writes it."""
    out = []
    for i in range(n):
        key = f"o-{i:09d}".encode()
        out.append((partition_for_key(key, partitions), key, encode_key_state(KeyState((i % 97) + 1, (), 0))))
    return out


@dataclass
class PrefilledRun:
    url: str
    tag: str
    run_dir: Path
    bootstrap: str
    home: Path
    partitions: int
    records: list[tuple[int, bytes, bytes]] = field(repr=False)


@dataclass(frozen=True)
class PrefilledGroup:
    env: dict[str, str]  # a worker's environment, without its web port and data dir
    source: str
    output: str
    changelog: str
    prefill_s: float | None  # None: nothing was prefilled


@asynccontextmanager
async def prefilled_run(url: str, keys: int, partitions: int, say: Callable[[str], None]) -> AsyncIterator[PrefilledRun]:
    tag = run_tag()
    run_dir = RUNS_DIR / tag
    run = PrefilledRun(url, tag, run_dir, broker_settings(url).bootstrap_servers, streamlake_home(partitions, run_dir),
                       partitions, tracked_keys(keys, partitions))
    say(f"{keys:,} tracked keys generated")
    try:
        yield run
    finally:
        await delete_topics_with(url, tag)
        shutil.rmtree(run_dir, ignore_errors=True)


async def prefill_group(run: PrefilledRun, name: str, store: str, *, prefill: bool = True,
                        env: dict[str, str] | None = None, datadir: Path | None = None) -> PrefilledGroup:
    """Topics and a prefilled sequence changelog for a group named after the run and *name*."""
    prefix = app_id = f"bench-{run.tag}-{name}"
    worker_env = streamlake_env(dict(os.environ), run.url, prefix, app_id, 0, datadir or run.run_dir, run.home)
    worker_env |= {"STREAMLAKE_STORE": STORES[store], **(env or {})}
    await apply_streamlake_catalog(worker_env)
    source, output = f"{prefix}.sales.orders.raw.v1", f"{prefix}.sales.orders.valid.v1"
    changelog = changelog_topic_for(app_id, table_name_for(source, "seq"))
    await create_topics(run.bootstrap, [changelog], run.partitions, {"cleanup.policy": "compact"})
    took = await produce_workload(run.bootstrap, changelog, run.records) if prefill else None
    return PrefilledGroup(worker_env, source, output, changelog, took)
