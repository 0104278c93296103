"""``lake compact`` and ``lake expire``: fewer files, bounded metadata. Dry runs unless told to execute.

Invariants:
- compaction rewrites one partition at a time with ``overwrite`` filtered to that partition's
  range: the row count is unchanged, and the new snapshot carries the table's offsets and
  newest event time, so landers keep seeking to the right place;
- a concurrent lander commit makes a rewrite fail (``commit.retry.num-retries=0``) rather than
  be re-applied on a newer snapshot: that partition is reported as skipped, to retry later;
- expiry never removes the current snapshot, the newest ``retain_last`` ones, or the newest
  snapshot that carries the offsets (the ancestry walk must still find them);
- an orphan file is removed only when no live snapshot or metadata file references it and it
  is older than the expiry age (a commit in flight has young files);
- both are idempotent: a second run finds nothing to do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform

from ..config import Settings
from ..core.lake_progress import EVENT_TIME_PROPERTY, LANDED_BY_PROPERTY, OFFSETS_PROPERTY, encode_offsets
from .info import LakeSession, lake_targets
from .settings import LakeSettings
from .tables import table_offsets_of

__all__ = ["CompactionPlan", "PartitionRewrite", "compact_tables", "ExpiryPlan", "expire_tables", "expire_snapshots"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass
class PartitionRewrite:
    day: str
    files: int
    rows: int
    done: bool = False
    skipped: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day, "files": self.files, "rows": self.rows, "done": self.done, "skipped": self.skipped}


@dataclass
class CompactionPlan:
    table: str
    executed: bool
    rewrites: list[PartitionRewrite] = field(default_factory=list)
    rows_before: int = 0
    rows_after: int = 0
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "executed": self.executed, "rows_before": self.rows_before,
                "rows_after": self.rows_after, "note": self.note, "rewrites": [r.as_dict() for r in self.rewrites]}


def _targets(settings: Settings, name: str | None) -> list[Any]:
    from .info import resolve_target

    return [resolve_target(settings, name)] if name else lake_targets(settings)


def _carried_properties(table: Table) -> dict[str, str]:
    snapshot = table.current_snapshot()
    summary = snapshot.summary.additional_properties if snapshot and snapshot.summary else {}
    carried = {k: summary[k] for k in (OFFSETS_PROPERTY, EVENT_TIME_PROPERTY) if k in summary}
    if OFFSETS_PROPERTY not in carried:  # the newest snapshot that has them (another tool committed since)
        carried[OFFSETS_PROPERTY] = encode_offsets(table_offsets_of(table))
    carried[LANDED_BY_PROPERTY] = "streamlake lake compact"
    return carried


def _day_files(table: Table) -> tuple[str | None, dict[int, tuple[int, int]]]:
    """The day-partition column and {day number: (files, rows)}; (None, {}) when not partitioned by day."""
    spec = table.spec()
    day_fields = [f for f in spec.fields if isinstance(f.transform, DayTransform)]
    if len(spec.fields) != 1 or not day_fields:
        return None, {}
    pfield = day_fields[0]
    column = table.schema().find_column_name(pfield.source_id)
    files = table.inspect.files() if table.current_snapshot() is not None else None
    per_day: dict[int, tuple[int, int]] = {}
    if files is None:
        return column, per_day
    partitions = files.column("partition").to_pylist()
    counts = files.column("record_count").to_pylist()
    for part, rows in zip(partitions, counts, strict=True):
        day = part[pfield.name]
        if isinstance(day, dt.date):  # pyarrow gives day partitions as dates
            day = (day - _EPOCH.date()).days
        n, r = per_day.get(day, (0, 0))
        per_day[day] = (n + 1, r + rows)
    return column, per_day


def _day_filter(column: str, day: int) -> str:
    start = _EPOCH + dt.timedelta(days=day)
    end = start + dt.timedelta(days=1)
    return f"{column} >= '{start.isoformat()}' AND {column} < '{end.isoformat()}'"


def compact_tables(settings: Settings, name: str | None = None, execute: bool = False, min_files: int = 4,
                   lake: LakeSettings | None = None) -> list[CompactionPlan]:
    """Rewrite each day partition holding at least *min_files* data files as one file per day."""
    plans = []
    with LakeSession(settings, lake) as session:
        for target in _targets(settings, name):
            try:
                table = session.catalog.load_table(target.identifier)
            except Exception:  # not landed yet: nothing to compact
                plans.append(CompactionPlan(target.name, execute, note="no table yet"))
                continue
            plans.append(_compact(table, target.name, execute, min_files))
    return plans


def _rows(table: Table) -> int:
    snapshot = table.current_snapshot()
    return int(snapshot.summary.additional_properties.get("total-records", 0)) if snapshot and snapshot.summary else 0


def _compact(table: Table, name: str, execute: bool, min_files: int) -> CompactionPlan:
    plan = CompactionPlan(name, execute, rows_before=_rows(table))
    column, per_day = _day_files(table)
    if column is None:
        plan.note = "only tables partitioned by day() alone are compacted"
        plan.rows_after = plan.rows_before
        return plan
    for day, (files, rows) in sorted(per_day.items()):
        if day is None or files < min_files:
            continue
        rewrite = PartitionRewrite((_EPOCH + dt.timedelta(days=day)).date().isoformat(), files, rows)
        plan.rewrites.append(rewrite)
        if not execute:
            continue
        row_filter = _day_filter(column, day)
        try:
            table = table.refresh()
            data = table.scan(row_filter=row_filter).to_arrow()
            table.overwrite(data, overwrite_filter=row_filter, snapshot_properties=_carried_properties(table))
            rewrite.done = True
        except CommitFailedException:
            rewrite.skipped = "a lander committed meanwhile; run compact again"
    plan.rows_after = _rows(table.refresh())
    return plan


@dataclass
class ExpiryPlan:
    table: str
    executed: bool
    snapshots: list[int] = field(default_factory=list)
    orphan_files: list[str] = field(default_factory=list)
    orphan_bytes: int = 0
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "executed": self.executed, "snapshots_expired": len(self.snapshots),
                "snapshot_ids": self.snapshots, "orphan_files": len(self.orphan_files),
                "orphan_bytes": self.orphan_bytes, "orphan_sample": self.orphan_files[:10], "note": self.note}


def expire_tables(settings: Settings, name: str | None = None, execute: bool = False,
                  older_than: float | None = None, retain_last: int | None = None,
                  lake: LakeSettings | None = None) -> list[ExpiryPlan]:
    """Expire old snapshots and remove orphan files, per table."""
    plans = []
    with LakeSession(settings, lake) as session:
        assert session.lake is not None
        age = session.lake.expire_older_than if older_than is None else older_than
        keep = session.lake.retain_last if retain_last is None else retain_last
        for target in _targets(settings, name):
            try:
                table = session.catalog.load_table(target.identifier)
            except Exception:
                plans.append(ExpiryPlan(target.name, execute, note="no table yet"))
                continue
            plans.append(_expire(table, target.name, execute, age, keep, session.lake))
    return plans


def _protected(table: Table, keep: int) -> set[int]:
    snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms, reverse=True)
    protected = {s.snapshot_id for s in snapshots[:keep]}
    current = table.current_snapshot()
    if current is not None:
        protected.add(current.snapshot_id)
    for prop in (OFFSETS_PROPERTY, EVENT_TIME_PROPERTY):
        newest = next((s for s in snapshots if s.summary and prop in s.summary.additional_properties), None)
        if newest is not None:
            protected.add(newest.snapshot_id)
    protected.update(ref.snapshot_id for ref in table.metadata.refs.values())
    return protected


def _expirable(table: Table, age: float, keep: int) -> list[int]:
    cutoff_ms = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age)).timestamp() * 1000
    protected = _protected(table, keep)
    return sorted(s.snapshot_id for s in table.snapshots()
                  if s.timestamp_ms < cutoff_ms and s.snapshot_id not in protected)


def expire_snapshots(table: Table, age: float, keep: int) -> int:
    """Expire snapshots older than *age* seconds beyond the newest *keep* (what landers do every
    ``expire_every`` commits); returns how many. A concurrent commit makes it expire nothing."""
    ids = _expirable(table, age, keep)
    if not ids:
        return 0
    try:
        table.maintenance.expire_snapshots().by_ids(ids).commit()
    except CommitFailedException:
        return 0
    return len(ids)


def _expire(table: Table, name: str, execute: bool, age: float, keep: int, lake: LakeSettings) -> ExpiryPlan:
    plan = ExpiryPlan(name, execute)
    cutoff_ms = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age)).timestamp() * 1000
    plan.snapshots = _expirable(table, age, keep)
    live_after = [s for s in table.snapshots() if s.snapshot_id not in set(plan.snapshots)]
    referenced = _referenced_files(table, live_after)
    fs_and_root = _filesystem(table.location(), lake)
    if fs_and_root is None:
        plan.note = f"orphan files are only listed for file:// and s3:// locations, not {table.location()}"
    else:
        fs, root, scheme = fs_and_root
        for info in _walk(fs, root):
            uri = f"{scheme}{info.path}"
            mtime = info.mtime.timestamp() * 1000 if info.mtime else 0
            if uri not in referenced and info.path not in referenced and mtime < cutoff_ms:
                plan.orphan_files.append(uri)
                plan.orphan_bytes += info.size or 0
    if not execute:
        return plan
    if plan.snapshots:
        try:
            table.maintenance.expire_snapshots().by_ids(plan.snapshots).commit()
        except CommitFailedException:
            plan.note = "a lander committed meanwhile; run expire again"
            return plan
    if fs_and_root is not None:
        fs = fs_and_root[0]
        for uri in plan.orphan_files:
            fs.delete_file(uri.removeprefix(fs_and_root[2]))
    return plan


def _referenced_files(table: Table, snapshots: list[Any]) -> set[str]:
    refs: set[str] = {table.metadata_location}
    refs.update(entry.metadata_file for entry in table.metadata.metadata_log)
    io = table.io
    for snapshot in snapshots:
        refs.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(io):
            refs.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=False):
                refs.add(entry.data_file.file_path)
    for stats in table.metadata.statistics:
        refs.add(stats.statistics_path)
    return refs | {r.removeprefix("file://") for r in refs}


def _filesystem(location: str, lake: LakeSettings) -> tuple[pafs.FileSystem, str, str] | None:
    parsed = urlparse(location)
    if parsed.scheme in ("file", ""):
        return pafs.LocalFileSystem(), parsed.path, "file://"
    if parsed.scheme in ("s3", "s3a"):
        props = lake.catalog_properties()
        endpoint = props.get("s3.endpoint")
        fs = pafs.S3FileSystem(access_key=props.get("s3.access-key-id"), secret_key=props.get("s3.secret-access-key"),
                               session_token=props.get("s3.session-token"), region=props.get("s3.region"),
                               endpoint_override=endpoint.split("://", 1)[-1] if endpoint else None,
                               scheme=endpoint.split("://", 1)[0] if endpoint else "https")
        return fs, f"{parsed.netloc}{parsed.path}", f"{parsed.scheme}://"
    return None


def _walk(fs: pafs.FileSystem, root: str) -> Iterator[pafs.FileInfo]:
    try:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    except (OSError, FileNotFoundError):
        return
    yield from (i for i in infos if i.type == pafs.FileType.File)
