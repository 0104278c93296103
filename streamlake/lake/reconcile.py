"""The demo's lake reconciliation: rows landed against records forwarded, duplicates, one SQL answer.

Figures come from the table's metadata and from SQL over it (DuckDB), never from the files.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from ..config import Settings
from ..errors import StreamLakeError
from .info import landing_lag_async, resolve_target, row_count
from .query import query_lake
from .settings import LakeSettings

__all__ = ["LakeReconciliation", "reconcile_lake", "ANSWER_SQL"]

#: The demo's one SQL answer.
ANSWER_SQL = "SELECT currency, count(*) AS orders, sum(amount) AS amount FROM {table} GROUP BY 1 ORDER BY 1"


@dataclass
class LakeReconciliation:
    table: str
    forwarded: int           # records the workers forwarded to the valid topic in this run
    landed: int              # rows the table gained in this run
    rows: int                # rows in the table
    duplicate_rows: int      # rows beyond the first of a (_key, _seq), whole table
    landing_lag: int
    answer_columns: list[str] = field(default_factory=list)
    answer: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.landed == self.forwarded and self.duplicate_rows == 0 and self.landing_lag == 0

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "forwarded": self.forwarded, "landed": self.landed, "rows": self.rows,
                "duplicate_rows": self.duplicate_rows, "landing_lag": self.landing_lag, "ok": self.ok,
                "answer": [dict(zip(self.answer_columns, (str(v) for v in row), strict=True)) for row in self.answer]}


def table_rows(settings: Settings, stream: str, lake: LakeSettings | None = None) -> int:
    """Rows in the stream's table now; 0 before it exists."""
    try:
        return row_count(settings, stream, lake)
    except StreamLakeError:
        return 0


async def reconcile_lake(settings: Settings, stream: str, rows_before: int, forwarded: int, wait_s: float = 120.0,
                         lake: LakeSettings | None = None) -> LakeReconciliation:
    """Wait until the lander has landed what was forwarded (landing lag 0), then reconcile."""
    target = resolve_target(settings, stream)
    deadline = time.monotonic() + wait_s
    while True:
        landed = await asyncio.to_thread(table_rows, settings, stream, lake) - rows_before
        lag = sum(p.lag for p in await landing_lag_async(settings, lake) if p.topic == target.topic)
        if (landed >= forwarded and lag == 0) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    counts = await asyncio.to_thread(
        query_lake, settings, f"SELECT count(*), count(DISTINCT (_key, _seq)) FROM {target.name}", lake)
    rows, distinct = counts.rows[0]
    answer = await asyncio.to_thread(query_lake, settings, ANSWER_SQL.format(table=target.name), lake)
    return LakeReconciliation(target.name, forwarded, landed, rows, rows - distinct, lag, answer.columns, answer.rows)
