"""``lake verify``: the lake against Kafka, record by record.

For each partition of the table's topic, every record in ``[log start, landed offset)``
must be exactly one of: a row (its offset is in the table), a landing DLQ record (a
``<topic>.dlq`` record names its offset), or a dropped duplicate (its ``(key, seq)`` is a
row at another offset). No ``(key, seq)`` may be in the table twice, and no row may sit at
or beyond the offset the table says it landed up to.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..config import Settings
from ..core.records import header_of
from ..kafka.landing import TopicRecord, log_offsets, read_dlq_origins, read_partition_range
from ..naming import dlq_topic_for
from ..topology import Stream
from .info import LakeSession
from .settings import LakeSettings
from .tables import table_offsets_of

__all__ = ["VerifyReport", "verify_table", "verify_table_async"]


@dataclass
class VerifyReport:
    table: str
    topic: str
    rows: int = 0
    records: int = 0            # records of the topic in the verified ranges
    landed: int = 0             # of them, rows in the table
    dlq: int = 0                # of them, in the landing DLQ
    duplicates_dropped: int = 0  # of them, repeats of a (key, seq) landed at another offset
    duplicate_rows: int = 0      # rows beyond the first of a (key, seq): must be 0
    missing: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset) nowhere
    rows_past_offsets: int = 0   # rows at or beyond the table's landed offset: must be 0
    rows_outside_ranges: int = 0  # rows below the log start (retention removed the records): informative
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (not self.missing and self.duplicate_rows == 0 and self.rows_past_offsets == 0
                and self.landed == self.records - self.dlq - self.duplicates_dropped)

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "topic": self.topic, "ok": self.ok, "rows": self.rows, "records": self.records,
                "landed": self.landed, "dlq": self.dlq, "duplicates_dropped": self.duplicates_dropped,
                "duplicate_rows": self.duplicate_rows, "missing": len(self.missing),
                "missing_sample": self.missing[:20], "rows_past_offsets": self.rows_past_offsets,
                "rows_outside_ranges": self.rows_outside_ranges,
                "ranges": {str(p): list(r) for p, r in sorted(self.ranges.items())}}


def _identity(stream: Stream, record: TopicRecord) -> tuple[str, int] | None:
    try:
        key = (record.key or b"").decode()
        if stream.sequence_header:
            raw = header_of(record, stream.sequence_header)  # type: ignore[arg-type]
            seq = int(raw) if raw is not None else None
        else:
            seq = orjson.loads(record.value or b"").get(stream.sequence_field)
        return (key, int(seq)) if seq is not None else None
    except (ValueError, AttributeError, TypeError):
        return None


async def verify_table_async(settings: Settings, name: str, lake: LakeSettings | None = None) -> VerifyReport:
    with LakeSession(settings, lake) as session:
        target, table = session.table(name)
        offsets = {p: o for (t, p), o in table_offsets_of(table).items() if t == target.topic}
        snapshot = table.current_snapshot()
        arrow = (table.scan(selected_fields=("_key", "_seq", "_kafka_partition", "_kafka_offset")).to_arrow()
                 if snapshot is not None else None)
    report = VerifyReport(target.name, target.topic)
    spans = await log_offsets(settings, [target.topic])
    report.ranges = {p: (begin, offsets.get(p, begin)) for (_t, p), (begin, _end) in spans.items()}
    at: dict[tuple[int, int], int] = {}
    pairs: collections.Counter[tuple[str, int]] = collections.Counter()
    if arrow is not None:
        report.rows = arrow.num_rows
        keys, seqs = arrow.column("_key").to_pylist(), arrow.column("_seq").to_pylist()
        parts, offs = arrow.column("_kafka_partition").to_pylist(), arrow.column("_kafka_offset").to_pylist()
        pairs.update(zip(keys, seqs, strict=True))
        for p, o in zip(parts, offs, strict=True):
            at[(p, o)] = at.get((p, o), 0) + 1
            begin, landed = report.ranges.get(p, (0, offsets.get(p, 0)))
            if o >= landed:
                report.rows_past_offsets += 1
            elif o < begin:
                report.rows_outside_ranges += 1
    report.duplicate_rows = sum(n - 1 for n in pairs.values())
    dlq = await read_dlq_origins(settings, dlq_topic_for(target.topic), target.topic)
    for record in await read_partition_range(settings, target.topic, report.ranges):
        report.records += 1
        coords = (record.partition, record.offset)
        if coords in at:
            report.landed += 1
        elif coords in dlq:
            report.dlq += 1
        else:
            identity = _identity(target.stream, record)
            if identity is not None and identity in pairs:
                report.duplicates_dropped += 1
            else:
                report.missing.append(coords)
    return report


def verify_table(settings: Settings, name: str, lake: LakeSettings | None = None) -> VerifyReport:
    """Check the table against its topic; ``report.ok`` says whether it holds every record exactly once."""
    return asyncio.run(verify_table_async(settings, name, lake))
