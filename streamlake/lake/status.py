"""The lake part of ``streamlake status``: landing lag per partition and each table's freshness."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import Settings
from ..errors import StreamLakeError
from .info import PartitionLanding, TableInfo, landing_lag_async, list_tables

__all__ = ["LakeStatus", "read_lake_status", "render_lake_status"]


@dataclass
class LakeStatus:
    tables: list[TableInfo] = field(default_factory=list)
    partitions: list[PartitionLanding] = field(default_factory=list)
    error: str | None = None

    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    def as_dict(self) -> dict[str, Any]:
        return {"tables": [{"name": t.name, "exists": t.exists, "rows": t.rows,
                            "newest_event_time": t.newest_event_time.isoformat() if t.newest_event_time else None,
                            "last_commit": t.last_commit.isoformat() if t.last_commit else None}
                           for t in self.tables],
                "landing_lag": self.total_lag(), "partitions": [p.as_dict() for p in self.partitions],
                "error": self.error}


async def read_lake_status(settings: Settings) -> LakeStatus:
    """Tables and landing lag; a lake that cannot be read is reported, not raised."""
    try:
        return LakeStatus(list_tables(settings), await landing_lag_async(settings))
    except StreamLakeError as exc:
        return LakeStatus(error=str(exc))


def render_lake_status(status: LakeStatus) -> str:
    from ..cli.output import table

    if status.error:
        return f"lake: unavailable ({status.error})"
    lines = [f"lake: {len(status.tables)} table(s), landing lag {status.total_lag()}"]
    lines.append(table([[t.name, "yes" if t.exists else "no", t.rows,
                         t.newest_event_time.isoformat() if t.newest_event_time else "-",
                         t.last_commit.isoformat() if t.last_commit else "-"] for t in status.tables],
                       ["table", "exists", "rows", "freshness (newest event time)", "last commit"]))
    lagging = [p for p in status.partitions if p.lag]
    if lagging:
        lines += ["", table([[p.topic, p.partition, "-" if p.landed is None else p.landed, p.end, p.lag]
                             for p in lagging], ["topic", "partition", "landed", "end", "landing lag"])]
    return "\n".join(lines)
