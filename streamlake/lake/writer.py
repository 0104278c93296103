"""One table commit of buffered rows with their offsets: the exactly-once step.

A commit is a sequence of named steps (:meth:`TableWriter.commit`):

1. **reload** the table and read the landed offsets from its newest snapshot;
2. **check** each partition's batch against them (:func:`reconcile_start`): a batch that no
   longer starts where the table ends (someone else landed, or the table moved back) is not
   written: the lander seeks that partition to the table's offset and reads it again;
3. **append** the remaining rows with the merged offsets in ``snapshot_properties``;
   tables have ``commit.retry.num-retries=0``, so a concurrent commit makes the append fail
   with ``CommitFailedException`` instead of being re-applied blindly: go back to 1.

Blocking (pyiceberg is synchronous): the lander runs it in a thread.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table
from sqlalchemy.exc import OperationalError

from ..core.lake_progress import (
    EVENT_TIME_PROPERTY,
    LANDED_BY_PROPERTY,
    OFFSETS_PROPERTY,
    StartCheck,
    TopicPartition,
    encode_offsets,
    merge_offsets,
    reconcile_start,
)
from ..core.lake_rows import ColumnBuffer
from .tables import LakeError, event_time_max_of, table_offsets_of

__all__ = ["PartitionBatch", "CommitOutcome", "TableWriter", "MAX_COMMIT_ATTEMPTS"]

MAX_COMMIT_ATTEMPTS = 50


@dataclass
class PartitionBatch:
    """Rows of one topic-partition covering offsets ``[start, end)`` (some records may be DLQ'd or dropped)."""

    start: int
    end: int
    rows: ColumnBuffer


@dataclass
class CommitOutcome:
    """What one commit did."""

    landed: dict[TopicPartition, int] = field(default_factory=dict)  # partition -> next offset now in the table
    rewind: dict[TopicPartition, int] = field(default_factory=dict)  # partition -> table offset to seek to
    rows: int = 0
    files: int = 0
    bytes: int = 0
    attempts: int = 0
    conflicts: int = 0
    seconds: float = 0.0
    snapshot_id: int | None = None


class TableWriter:
    """Commits batches of one table; one per table per lander."""

    def __init__(self, table: Table, arrow_schema: pa.Schema, landed_by: str) -> None:
        self.table = table
        self.arrow_schema = arrow_schema
        self.landed_by = landed_by

    def landed_offsets(self) -> dict[TopicPartition, int]:
        """Reload, then the table's offsets (for seeking on assignment)."""
        self.table = self.table.refresh()
        return table_offsets_of(self.table)

    def commit(self, batches: Mapping[TopicPartition, PartitionBatch]) -> CommitOutcome:
        outcome = CommitOutcome()
        began = time.monotonic()
        pending = dict(batches)
        while True:
            outcome.attempts += 1
            table_offsets = self._reload()
            pending = self._check(pending, table_offsets, outcome)
            if not pending:
                break
            try:
                self._append(pending, table_offsets, outcome)
                break
            except (CommitFailedException, OperationalError) as exc:
                # a concurrent commit (or a busy SQLite catalog): reload and check again
                outcome.conflicts += 1
                if outcome.attempts >= MAX_COMMIT_ATTEMPTS:
                    raise LakeError(f"{self.table.name()}: {outcome.attempts} commit attempts failed; last: "
                                    f"{type(exc).__name__}: {exc}") from exc
                time.sleep(min(0.01 * outcome.attempts, 0.5))
        outcome.seconds = time.monotonic() - began
        return outcome

    # -- the steps ---------------------------------------------------------------------

    def _reload(self) -> dict[TopicPartition, int]:
        self.table = self.table.refresh()
        return table_offsets_of(self.table)

    @staticmethod
    def _check(pending: dict[TopicPartition, PartitionBatch], table_offsets: Mapping[TopicPartition, int],
               outcome: CommitOutcome) -> dict[TopicPartition, PartitionBatch]:
        keep: dict[TopicPartition, PartitionBatch] = {}
        for tp, batch in pending.items():
            table_next = table_offsets.get(tp)
            if reconcile_start(batch.start, batch.end, table_next) is StartCheck.LAND:
                keep[tp] = batch
            else:
                # never trim in place: what the other writer landed is unknown here, so the
                # partition is read again from the table's offset (its window rebuilt first)
                outcome.rewind[tp] = table_next if table_next is not None else batch.start
        return keep

    def _append(self, pending: Mapping[TopicPartition, PartitionBatch], table_offsets: Mapping[TopicPartition, int],
                outcome: CommitOutcome) -> None:
        arrow = pa.concat_tables([pa.Table.from_pydict(b.rows.as_dict(), schema=self.arrow_schema)
                                  for b in pending.values()])
        offsets = merge_offsets(table_offsets, {tp: b.end for tp, b in pending.items()})
        properties = {OFFSETS_PROPERTY: encode_offsets(offsets), LANDED_BY_PROPERTY: self.landed_by}
        newest = [b.rows.event_time_max for b in pending.values() if b.rows.event_time_max is not None]
        previous = event_time_max_of(self.table)
        if previous is not None:
            newest.append(previous)
        if newest:
            properties[EVENT_TIME_PROPERTY] = str(max(newest))
        self.table.append(arrow, snapshot_properties=properties)
        snapshot = self.table.current_snapshot()
        summary = snapshot.summary.additional_properties if snapshot and snapshot.summary else {}
        outcome.snapshot_id = snapshot.snapshot_id if snapshot else None
        outcome.rows = arrow.num_rows
        outcome.files = int(summary.get("added-data-files", 0))
        outcome.bytes = int(summary.get("added-files-size", 0))
        outcome.landed = {tp: b.end for tp, b in pending.items()}
