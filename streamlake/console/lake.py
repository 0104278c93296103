"""The console's view of the lake: freshness, tables, snapshots, row counts and verify, through the lake library.

The same functions as ``streamlake lake tables|history|verify`` and the status
command's freshness (:mod:`streamlake.lake.info`, :mod:`streamlake.lake.verify`).
Figures come from table metadata, never from scanning the warehouse. Each
function is synchronous (pyiceberg is) and the console runs it in a thread.
Verify reads the table's whole valid topic and scans the table, so it runs
only when asked for; the console keeps its last report with the time it ran.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from ..config import Settings
from ..lake.info import list_tables, table_history
from ..lake.verify import verify_table

__all__ = ["available", "freshness_by_stream", "lake_overview", "verify", "SNAPSHOTS_SHOWN"]

SNAPSHOTS_SHOWN = 10


def _iso(when: dt.datetime | str | None) -> str | None:
    """A time as short ISO 8601 UTC (seconds, ``Z``) for the pages."""
    if when is None:
        return None
    moment = dt.datetime.fromisoformat(when) if isinstance(when, str) else when
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def available() -> bool:
    """Whether lake landing is part of this installation (it is)."""
    return True


def freshness_by_stream(settings: Settings) -> dict[str, dict[str, Any]]:
    """Per landed stream: its table, rows, newest landed event time and last commit (ISO 8601)."""
    return {t.stream: {"table": t.name, "rows": t.rows, "newest_event_time": _iso(t.newest_event_time),
                       "last_commit": _iso(t.last_commit)}
            for t in list_tables(settings) if t.exists}


def lake_overview(settings: Settings, verified: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every declared stream's table: rows, files, snapshots (newest first), offsets and its last verify report."""
    tables = []
    for info in list_tables(settings):
        row = {**info.as_dict(), "newest_event_time": _iso(info.newest_event_time), "last_commit": _iso(info.last_commit)}
        history = table_history(settings, info.name, SNAPSHOTS_SHOWN) if info.exists else []
        row["snapshots_shown"] = [{**s.as_dict(), "committed_at": _iso(s.committed_at)} for s in history]
        row["verify"] = verified.get(info.name)
        tables.append(row)
    return {"available": True, "tables": tables}


def verify(settings: Settings, table: str) -> dict[str, Any]:
    """``streamlake lake verify TABLE`` as JSON, with when it ran."""
    return {**verify_table(settings, table).as_dict(), "verified_at": time.time()}
