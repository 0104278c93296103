"""The console's view of the lake: freshness, tables, snapshots, row counts and verify, through the lake library.

Lake landing (``streamlake.lake``) is not part of this installation yet: the
console says so on the lake page and in each overview card, and shows
everything else. The functions keep the shape the lake library will fill.
"""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..errors import StreamLakeError

__all__ = ["available", "freshness_by_stream", "lake_overview", "verify"]

NOT_INSTALLED = "lake landing (streamlake.lake) is not part of this installation"


def available() -> bool:
    """Whether lake landing is part of this installation."""
    return False


def freshness_by_stream(settings: Settings) -> dict[str, dict[str, Any]]:
    """Per stream: its table, rows, newest landed event time and last commit."""
    return {}


def lake_overview(settings: Settings, verified: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every declared stream's table: rows, snapshots, offsets and the last verify result."""
    return {"available": False, "tables": [], "why": NOT_INSTALLED}


def verify(settings: Settings, table: str) -> dict[str, Any]:
    """``streamlake lake verify TABLE``, with when it ran."""
    raise StreamLakeError(NOT_INSTALLED)
