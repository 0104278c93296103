"""The replay commands' options as specs: one reset scenario, and the plan's export CSV.

Pure apart from the two local files the options name (``--from-file`` is read,
``--export`` written); never Kafka. Shared by ``streamlake replay`` and the Airflow
operators.
"""

from __future__ import annotations

import time
from pathlib import Path

from .replay import (
    ReplayInputError,
    ReplayPlan,
    ResetMode,
    ResetSpec,
    export_plan_csv,
    parse_iso_duration,
    parse_kafka_datetime,
    parse_reset_file,
    timestamp_for_duration,
)

__all__ = ["reset_spec_from_options", "write_plan_csv"]


def reset_spec_from_options(*, group: str, to_datetime: str | None = None, by_duration: str | None = None,
                            to_earliest: bool = False, to_latest: bool = False, to_offset: int | None = None,
                            shift_by: int | None = None, from_file: str | Path | None = None,
                            now_ns: int | None = None) -> ResetSpec:
    """Turn exactly one reset scenario into a :class:`ResetSpec` (datetimes resolved now)."""
    chosen = [name for name, given in (
        ("--to-datetime", to_datetime is not None), ("--by-duration", by_duration is not None),
        ("--to-earliest", to_earliest), ("--to-latest", to_latest), ("--to-offset", to_offset is not None),
        ("--shift-by", shift_by is not None), ("--from-file", from_file is not None),
    ) if given]
    if len(chosen) != 1:
        raise ReplayInputError(
            "give exactly one reset scenario: --to-datetime, --by-duration, --to-earliest, --to-latest, "
            f"--to-offset, --shift-by or --from-file (got {', '.join(chosen) or 'none'})")
    if to_datetime is not None:
        return ResetSpec(ResetMode.TO_DATETIME, timestamp_ms=parse_kafka_datetime(to_datetime), argument=to_datetime)
    if by_duration is not None:
        now = time.time_ns() if now_ns is None else now_ns
        ts = timestamp_for_duration(parse_iso_duration(by_duration), now)
        return ResetSpec(ResetMode.BY_DURATION, timestamp_ms=ts, argument=by_duration)
    if to_earliest:
        return ResetSpec(ResetMode.TO_EARLIEST)
    if to_latest:
        return ResetSpec(ResetMode.TO_LATEST)
    if to_offset is not None:
        return ResetSpec(ResetMode.TO_OFFSET, offset=to_offset)
    if shift_by is not None:
        return ResetSpec(ResetMode.SHIFT_BY, shift=shift_by)
    path = Path(str(from_file))
    try:
        text = path.read_text()
    except OSError as exc:
        raise ReplayInputError(f"cannot read --from-file {path}: {exc.strerror or exc}") from exc
    return ResetSpec(ResetMode.FROM_FILE, file_offsets=parse_reset_file(text, group), argument=str(path))


def write_plan_csv(plan: ReplayPlan, path: str | Path) -> Path:
    """Write Kafka's export CSV (``topic,partition,offset`` lines) to *path*."""
    target = Path(path)
    try:
        target.write_text(export_plan_csv(plan))
    except OSError as exc:
        raise ReplayInputError(f"cannot write --export {target}: {exc.strerror or exc}") from exc
    return target
