"""Reading the lake: tables, landed offsets, freshness, row counts, history, landing lag.

These are the library functions the CLI, ``streamlake status``, the Airflow sensors and the
console call. Each takes the project's :class:`~streamlake.config.Settings` (and optionally
:class:`~streamlake.lake.settings.LakeSettings`, read from the same conf/env when omitted)
and a table name in any of three spellings: the identifier (``sales.orders_v1``), the stream
(``sales.orders``) or its valid topic (``sales.orders.valid.v1``, prefix included).

Every figure comes from the table's metadata (snapshot summaries), never from a scan of
the warehouse files: a raw Parquet glob over-counts after compaction.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table

from ..config import Settings
from ..errors import StreamLakeError
from ..kafka.landing import log_offsets
from ..topology import discover_streams
from .settings import LakeSettings, load_lake_settings
from .tables import LakeTarget, event_time_max_of, load_table, open_catalog, table_offsets_of, target_for

__all__ = [
    "lake_targets", "resolve_target", "table_offsets", "newest_event_time", "row_count", "TableInfo",
    "table_info", "list_tables", "SnapshotInfo", "table_history", "PartitionLanding", "landing_lag",
    "LakeSession",
]


def lake_targets(settings: Settings) -> list[LakeTarget]:
    """Every declared stream with its topic and table identifier."""
    return [target_for(s, settings.topic_prefix) for s in discover_streams(settings.topologies_dir)]


def resolve_target(settings: Settings, name: str) -> LakeTarget:
    """The target named by identifier, stream name or topic.

    Raises:
        StreamLakeError: listing the known tables.
    """
    targets = lake_targets(settings)
    for target in targets:
        if name in (target.name, target.stream.name, target.topic, ".".join(target.identifier[-2:])):
            return target
    known = ", ".join(t.name for t in targets) or "none"
    raise StreamLakeError(f"no lake table {name!r}; known tables: {known} (a stream name or its topic works too)")


@dataclass
class LakeSession:
    """An open catalog for several reads (``with LakeSession(settings) as lake: ...``)."""

    settings: Settings
    lake: LakeSettings | None = None
    catalog: Catalog = field(init=False)

    def __post_init__(self) -> None:
        self.lake = self.lake or load_lake_settings(self.settings)
        self.catalog = open_catalog(self.lake)

    def __enter__(self) -> LakeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        engine = getattr(self.catalog, "engine", None)
        if engine is not None:
            engine.dispose()

    def table(self, name: str) -> tuple[LakeTarget, Table]:
        target = resolve_target(self.settings, name)
        return target, load_table(self.catalog, target)


def table_offsets(settings: Settings, name: str, lake: LakeSettings | None = None) -> dict[int, int]:
    """Next offset to land per partition of the table's topic (absent: nothing landed from it).

    This is the completeness measure: every record of partition p below the returned offset
    is in the table (or in the landing DLQ, or a dropped duplicate).
    """
    with LakeSession(settings, lake) as session:
        target, table = session.table(name)
        return {p: o for (t, p), o in table_offsets_of(table).items() if t == target.topic}


def newest_event_time(settings: Settings, name: str, lake: LakeSettings | None = None) -> dt.datetime | None:
    """The newest committed event time (UTC), or None when nothing with an event time landed.

    Streams without ``event_time_field`` have None here; use ``table_info().last_commit``.
    """
    with LakeSession(settings, lake) as session:
        return _micros_to_datetime(event_time_max_of(session.table(name)[1]))


def row_count(settings: Settings, name: str, lake: LakeSettings | None = None) -> int:
    """Rows in the table's current snapshot (0 for an empty table)."""
    with LakeSession(settings, lake) as session:
        return _rows(session.table(name)[1])


@dataclass(frozen=True)
class TableInfo:
    """One table as ``lake tables`` / ``describe`` show it."""

    name: str
    stream: str
    topic: str
    exists: bool
    rows: int = 0
    data_files: int = 0
    size_bytes: int = 0
    snapshots: int = 0
    current_snapshot_id: int | None = None
    last_commit: dt.datetime | None = None
    newest_event_time: dt.datetime | None = None
    offsets: dict[int, int] = field(default_factory=dict)
    location: str = ""
    columns: list[dict[str, Any]] = field(default_factory=list)
    partition_spec: str = ""
    properties: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "stream": self.stream, "topic": self.topic, "exists": self.exists, "rows": self.rows,
            "data_files": self.data_files, "size_bytes": self.size_bytes, "snapshots": self.snapshots,
            "current_snapshot_id": self.current_snapshot_id,
            "last_commit": self.last_commit.isoformat() if self.last_commit else None,
            "newest_event_time": self.newest_event_time.isoformat() if self.newest_event_time else None,
            "offsets": {str(p): o for p, o in sorted(self.offsets.items())}, "location": self.location,
            "columns": self.columns, "partition_spec": self.partition_spec, "properties": self.properties,
        }


def _micros_to_datetime(micros: int | None) -> dt.datetime | None:
    if micros is None:
        return None
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)


def _summary(table: Table) -> dict[str, str]:
    snapshot = table.current_snapshot()
    return dict(snapshot.summary.additional_properties) if snapshot and snapshot.summary else {}


def _rows(table: Table) -> int:
    return int(_summary(table).get("total-records", 0))


def _info(target: LakeTarget, table: Table | None) -> TableInfo:
    if table is None:
        return TableInfo(target.name, target.stream.name, target.topic, exists=False)
    summary = _summary(table)
    snapshot = table.current_snapshot()
    return TableInfo(
        name=target.name, stream=target.stream.name, topic=target.topic, exists=True,
        rows=int(summary.get("total-records", 0)), data_files=int(summary.get("total-data-files", 0)),
        size_bytes=int(summary.get("total-files-size", 0)), snapshots=len(table.snapshots()),
        current_snapshot_id=snapshot.snapshot_id if snapshot else None,
        last_commit=_micros_to_datetime(snapshot.timestamp_ms * 1000) if snapshot else None,
        newest_event_time=_micros_to_datetime(event_time_max_of(table)),
        offsets={p: o for (t, p), o in table_offsets_of(table).items() if t == target.topic},
        location=table.location(),
        columns=[{"id": f.field_id, "name": f.name, "type": str(f.field_type), "required": f.required}
                 for f in table.schema().fields],
        partition_spec=", ".join(f"{f.transform}({table.schema().find_column_name(f.source_id)})"
                                 for f in table.spec().fields),
        properties=dict(table.properties),
    )


def table_info(settings: Settings, name: str, lake: LakeSettings | None = None) -> TableInfo:
    """Everything about one table (``lake describe``); ``exists`` is False before its first lander."""
    with LakeSession(settings, lake) as session:
        target = resolve_target(settings, name)
        try:
            return _info(target, session.catalog.load_table(target.identifier))
        except NoSuchTableError:
            return _info(target, None)


def list_tables(settings: Settings, lake: LakeSettings | None = None) -> list[TableInfo]:
    """One :class:`TableInfo` per declared stream, landed or not."""
    out = []
    with LakeSession(settings, lake) as session:
        for target in lake_targets(settings):
            try:
                out.append(_info(target, session.catalog.load_table(target.identifier)))
            except NoSuchTableError:
                out.append(_info(target, None))
    return out


@dataclass(frozen=True)
class SnapshotInfo:
    snapshot_id: int
    parent_id: int | None
    committed_at: dt.datetime
    operation: str
    added_rows: int
    total_rows: int
    added_files: int
    landed_by: str
    offsets: str

    def as_dict(self) -> dict[str, Any]:
        return {"snapshot_id": self.snapshot_id, "parent_id": self.parent_id,
                "committed_at": self.committed_at.isoformat(), "operation": self.operation,
                "added_rows": self.added_rows, "total_rows": self.total_rows, "added_files": self.added_files,
                "landed_by": self.landed_by, "offsets": self.offsets}


def table_history(settings: Settings, name: str, limit: int = 50, lake: LakeSettings | None = None
                  ) -> list[SnapshotInfo]:
    """The newest *limit* snapshots, newest first."""
    from ..core.lake_progress import LANDED_BY_PROPERTY, OFFSETS_PROPERTY

    with LakeSession(settings, lake) as session:
        _target, table = session.table(name)
        out = []
        for snapshot in sorted(table.snapshots(), key=lambda s: (s.timestamp_ms, s.sequence_number or 0),
                               reverse=True)[:limit]:
            summary = snapshot.summary.additional_properties if snapshot.summary else {}
            operation = snapshot.summary.operation.value if snapshot.summary else ""
            out.append(SnapshotInfo(
                snapshot.snapshot_id, snapshot.parent_snapshot_id, _micros_to_datetime(snapshot.timestamp_ms * 1000)
                or dt.datetime.now(dt.UTC), operation, int(summary.get("added-records", 0)),
                int(summary.get("total-records", 0)), int(summary.get("added-data-files", 0)),
                summary.get(LANDED_BY_PROPERTY, ""), summary.get(OFFSETS_PROPERTY, "")))
        return out


@dataclass(frozen=True)
class PartitionLanding:
    """Landing progress of one topic-partition."""

    table: str
    topic: str
    partition: int
    landed: int | None  # next offset in the table; None: nothing landed yet
    end: int            # the topic's end offset (last stable offset)

    @property
    def lag(self) -> int:
        return max(self.end - (self.landed or 0), 0)

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "topic": self.topic, "partition": self.partition, "landed": self.landed,
                "end": self.end, "lag": self.lag}


async def landing_lag_async(settings: Settings, lake: LakeSettings | None = None) -> list[PartitionLanding]:
    """Landed offset vs end offset for every partition of every declared valid topic."""
    lake = lake or load_lake_settings(settings)
    targets = lake_targets(settings)
    landed: dict[str, dict[int, int]] = {}
    existing: set[str] = set()
    with LakeSession(settings, lake) as session:
        for target in targets:
            try:
                table = session.catalog.load_table(target.identifier)
            except NoSuchTableError:
                continue
            existing.add(target.name)
            landed[target.topic] = {p: o for (t, p), o in table_offsets_of(table).items() if t == target.topic}
    spans = await log_offsets(settings, [t.topic for t in targets])
    names = {t.topic: t.name for t in targets}
    return [PartitionLanding(names[topic], topic, p, landed.get(topic, {}).get(p), end)
            for (topic, p), (_begin, end) in sorted(spans.items())]


def landing_lag(settings: Settings, lake: LakeSettings | None = None) -> list[PartitionLanding]:
    """Synchronous :func:`landing_lag_async` (not from inside a running event loop)."""
    return asyncio.run(landing_lag_async(settings, lake))
