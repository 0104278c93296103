"""Checks a worker runs before it joins the group."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from ..catalog import Catalog, TopicRole, TopicSpec
from ..config import Settings
from ..errors import ConfigError, PartitionMismatchError

log = logging.getLogger("streamlake.startup")


async def prepare_worker(settings: Settings, catalog: Catalog, tables: Iterable[Any] = ()) -> None:
    """Create missing catalog topics and table changelogs, then check co-partitioning.

    Faust would otherwise let the broker auto-create source topics with its
    default partition count (and a metadata request for a changelog that does
    not exist yet does the same), and fail only at the first table write.
    """
    from ..kafka.admin import create_topics, topic_partition_counts

    wanted = list(catalog.topics) + [_changelog_spec(table, catalog) for table in tables]
    counts = await topic_partition_counts(settings, [t.name for t in wanted])
    missing = [t for t in wanted if counts[t.name] is None]
    if missing:
        await create_topics(settings, missing)
        log.info("created topics from the catalog: %s", ", ".join(t.name for t in missing))
    sources = [t for t in catalog.topics if t.role in (TopicRole.SOURCE, TopicRole.RETRY, TopicRole.REPARTITION)]
    changelogs = {t.name: t.partitions for t in wanted if t.role is None}
    problems = [
        f"changelog {name} has {counts[name]} partitions, its table {wanted_n}"
        for name, wanted_n in changelogs.items() if counts[name] is not None and counts[name] != wanted_n
    ]
    problems += [
        f"{t.name} has {counts[t.name]} partitions but its sequence table has {t.partitions} (from the catalog)"
        for t in sources if counts.get(t.name) is not None and counts[t.name] != t.partitions
    ]
    if problems:
        raise PartitionMismatchError(
            "source topics and their state tables are not co-partitioned: " + "; ".join(problems)
            + ". Fix the catalog's partition count or the topic (streamlake topics plan) before starting workers."
        )


def _changelog_spec(table: Any, catalog: Catalog) -> Any:
    """A compacted changelog topic for *table*, replicated like the topic it keeps state for.

    Tables are named ``<catalog topic>.<purpose>``; a changelog loses no more on a broker
    failure than that topic does (same replication factor and ``min.insync.replicas``).
    """
    owners = [t for t in catalog.topics if table.name.startswith(f"{t.name}.")]
    owner = max(owners, key=lambda t: len(t.name)) if owners else None
    config = {"cleanup.policy": "compact"}
    if owner is not None and "min.insync.replicas" in owner.config:
        config["min.insync.replicas"] = owner.config["min.insync.replicas"]
    return TopicSpec(
        table.changelog_topic.get_topic_name(), stream="", role=None, partitions=table.partitions,  # type: ignore[arg-type]
        replication_factor=owner.replication_factor if owner else 1, config=config,
    )


DATADIR_LOCK = ".streamlake-worker.lock"


def lock_datadir(datadir: str | Path) -> IO[str]:
    """Hold *datadir* for this worker until it exits; refuse if another worker holds it.

    RocksDB tables lock their databases per partition: a second worker on the
    same data dir would wait for those locks forever. The lock is released by
    the kernel when the process ends, however it ends (kill -9 included).
    """
    path = Path(datadir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    handle = open(path / DATADIR_LOCK, "a+")  # held open for the life of the worker
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(
            f"the data dir {path} is in use by another worker ({holder}); with store rocksdb:// every worker "
            "needs its own: pass --datadir DIR (before the command) or set STREAMLAKE_DATADIR"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle
