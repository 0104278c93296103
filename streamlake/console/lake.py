"""The console's view of the lake: table freshness, snapshots, row counts and verify, through the lake library.

Lake landing is a separate part of StreamLake (``streamlake.lake``). When it is
not installed in this checkout the console says so and shows everything else;
every function here returns plain JSON-ready dicts.
"""

from __future__ import annotations

from typing import Any

from ..config import Settings

__all__ = ["available", "freshness_by_stream", "lake_overview"]


def available() -> bool:
    """Whether lake landing is part of this installation."""
    return False


def freshness_by_stream(settings: Settings, streams: list[str]) -> dict[str, dict[str, Any]]:
    """Per stream: the newest landed event time and the row count of its table (none without lake landing)."""
    return {}


def lake_overview(settings: Settings, streams: list[str]) -> dict[str, Any]:
    """Tables, snapshots, row counts and verify results (``available: false`` without lake landing)."""
    return {"available": False, "tables": [],
            "why": "lake landing (streamlake.lake) is not part of this installation"}
