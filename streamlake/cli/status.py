"""``streamlake status``: the group, its members and assignments, lag per partition, DLQ depth, stream totals,
the lake."""

from __future__ import annotations

import asyncio

import click

from ..catalog import load_catalog
from ..config import load_settings
from ..kafka.group_status import GroupStatus, read_group_status
from ..topology import discover_streams
from .output import emit, friendly_errors, json_option, table


def _ranges(parts: list[int]) -> str:
    """0,1,2,5 -> '0-2,5'."""
    out: list[str] = []
    for p in sorted(parts):
        if out and "-" not in out[-1].split(",")[-1] and int(out[-1]) == p - 1:
            out[-1] = f"{p - 1}-{p}"
        elif out and "-" in out[-1] and int(out[-1].split("-")[1]) == p - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{p}"
        else:
            out.append(str(p))
    return ",".join(out)


def render_status(status: GroupStatus) -> str:
    """Human text: group line, members, lag table, DLQ depth."""
    lines = [f"group {status.group}: {status.state}, {len(status.members)} member(s), "
             f"protocol {status.protocol or '-'}, total lag {status.total_lag()}"]
    if status.members:
        rows = []
        for m in status.members:
            by_topic: dict[str, list[int]] = {}
            for topic, p in m.assignment:
                by_topic.setdefault(topic, []).append(p)
            owned = "; ".join(f"{t}[{_ranges(ps)}]" for t, ps in sorted(by_topic.items()) if not t.endswith("-changelog"))
            rows.append([m.short_id, m.host, owned or "(nothing)"])
        lines += ["", table(rows, ["member", "host", "assigned (changelogs not shown)"])]
    if status.lags:
        rows = [[p.topic, str(p.partition), "-" if p.committed is None else str(p.committed), str(p.end), str(p.lag),
                 p.owner or "-"]
                for p in status.lags]
        lines += ["", table(rows, ["topic", "partition", "committed", "end", "lag", "owner"])]
    if status.streams:
        rows = [[name, t["records_in"], t["forwarded"], t["dropped"], t["dlq"], t.get("repartitioned", 0)]
                for name, t in sorted(status.streams.items())]
        lines += ["", table(rows, ["stream", "in", "forwarded", "dropped", "dlq", "repartitioned"])]
    if status.dlq:
        lines += ["", table([[d.topic, d.depth, d.partitions] for d in status.dlq], ["dlq topic", "depth", "partitions"])]
    if status.missing_topics:
        lines += ["", "missing on the broker (run `streamlake topics apply`): " + ", ".join(status.missing_topics)]
    return "\n".join(lines)


@click.command("status")
@json_option
@friendly_errors
def status(as_json: bool) -> None:
    """Show the consumer group's state, members and assignments, lag per partition and DLQ depth."""
    settings = load_settings()
    catalog = load_catalog(settings, discover_streams(settings.topologies_dir))
    result = asyncio.run(read_group_status(settings, catalog, with_totals=True))
    from ..lake.status import read_lake_status, render_lake_status  # the lake section (docs/LAKE.md)

    lake = asyncio.run(read_lake_status(settings))
    emit({**result.as_dict(), "lake": lake.as_dict()}, as_json,
         lambda _: render_status(result) + "\n\n" + render_lake_status(lake))
